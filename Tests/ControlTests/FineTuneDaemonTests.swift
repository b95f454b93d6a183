import Control
import Foundation
import Testing
import Training

#if canImport(Glibc)
    import Glibc
#endif

/// Fine-tuning inside the real daemon, through its socket: a reference checkpoint set imported as
/// `synth` (resnet_6blocks, ngf 8) trained on the synthetic red/blue task of tools/synthetic_task.py.
@Suite(.serialized) struct FineTuneDaemonTests {
    static let data = repositoryRoot + "/Tests/Fixtures/synthetic"

    /// The recipe both sides run: every random stream in use (pools, crops, flips, shuffled pairs).
    static func options(maxIters: Int, extra: [String: JSONValue] = [:]) -> [String: JSONValue] {
        var o: [String: JSONValue] = [
            "max_iters": .number(Double(maxIters)), "load_size": .number(36), "crop_size": .number(32),
            "pool_size": .number(5), "print_freq": .number(1), "display_freq": .number(40),
            "save_latest_freq": .number(10), "seed": .number(3), "max_dataset_size": .number(40),
        ]
        o.merge(extra) { $1 }
        return o
    }

    /// `cyclegand train` arguments for the same recipe.
    static func trainArguments(models: String, maxIters: Int) -> [String] {
        [
            "train", "--dataroot", data, "--name", "synth", "--models-dir", models, "--continue_train",
            "--max_iters", "\(maxIters)", "--load_size", "36", "--crop_size", "32", "--pool_size", "5",
            "--print_freq", "1", "--display_freq", "40", "--save_latest_freq", "10", "--seed", "3",
            "--max_dataset_size", "40",
        ]
    }

    static func importSynth(into models: String) throws {
        let binary = try #require(cyclegandBinary)
        let result = try runProcess(
            binary,
            [
                "import", repositoryRoot + "/Tests/Fixtures/training/parity_set", "--name", "synth", "--domains",
                "A,B", "--models-dir", models,
            ])
        try #require(result.status == 0, "import failed: \(result.error)")
    }

    static func daemon(config: String = "", socketFolderMode: mode_t = 0o700) throws -> DaemonProcess {
        try DaemonProcess(
            config: "memory_limit = \"8GiB\"\nstop_timeout = 60\n" + config, socketFolderMode: socketFolderMode,
            models: importSynth)
    }

    static func finetune(_ client: ControlClient, options: [String: JSONValue]) throws -> ControlReply {
        try client.call(
            "finetune", ["model": .string("synth"), "dataroot": .string(data), "options": .object(options)])
    }

    static func status(_ client: ControlClient) throws -> JSONValue {
        let reply = try client.call("training", ["action": .string("status")])
        return reply.json["training"] ?? .null
    }

    /// Waits for the job to end (or `until` to hold); returns the last status.
    @discardableResult
    static func wait(_ daemon: DaemonProcess, seconds: Double = 120, until: (JSONValue) -> Bool = { _ in false })
        throws -> JSONValue
    {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            let s = try status(try daemon.client())
            let state = s["state"]?.string ?? ""
            // idle: a daemon restarted after its job had ended.
            if ["done", "failed", "idle"].contains(state) || until(s) { return s }
            usleep(50_000)
        }
        throw ControlSetupError("the fine-tune did not end in \(seconds) s; daemon log:\n\(daemon.logText)")
    }

    static func translate(_ client: ControlClient, _ input: Data, direction: String = "A2B") throws -> (
        bytes: Data, version: Int
    ) {
        let reply = try client.call(
            "translate", ["direction": .string(direction), "name": .string("x.png")], payload: input)
        try #require(reply.ok, "translate failed: \(reply.line)")
        return (reply.payload ?? Data(), Int(reply.json["model_version"]?.number ?? -1))
    }

    static func lossLog(_ models: String) throws -> [LossRecord] {
        try LossLog.records(at: URL(fileURLWithPath: models + "/synth/training/loss_log.jsonl"))
    }

    static func expectSameLosses(_ got: [LossRecord], _ expected: [LossRecord]) {
        #expect(got.count == expected.count)
        for (r, e) in zip(got, expected) {
            #expect(r.totalIters == e.totalIters && r.epoch == e.epoch && r.iters == e.iters)
            for (k, (a, b)) in zip(r.losses, e.losses).enumerated() {
                #expect(abs(a - b) <= 1e-5 * max(abs(b), 1e-6), "\(LossRecord.lossNames[k]) at \(e.totalIters)")
            }
        }
    }

    /// The uninterrupted `cyclegand train` of the recipe on a fresh import.
    static func reference(maxIters: Int) throws -> [LossRecord] {
        let models = TempDir("ref-models")
        try importSynth(into: models.path)
        let run = try runProcess(try #require(cyclegandBinary), trainArguments(models: models.path, maxIters: maxIters))
        try #require(run.status == 0, "cyclegand train failed: \(run.output)\(run.error)")
        return try lossLog(models.path)
    }

    // MARK: Must-show 1: end to end

    @Test(.enabled(if: cyclegandBinary != nil)) func finetuneTrainsPublishesAndRollsBack() throws {
        let daemon = try Self.daemon()
        let client = try daemon.client()
        let input = try Data(contentsOf: URL(fileURLWithPath: Self.data + "/testA/" + firstImage("testA")))
        let before = try Self.translate(client, input)
        #expect(before.version == 1)

        let events = try daemon.client()
        #expect(try events.call("subscribe").ok)
        let started = try Self.finetune(client, options: Self.options(maxIters: 40))
        try #require(started.ok, "\(started.line)")
        let id = try #require(started.json["training"]?["id"]?.string)
        // One job at a time.
        let second = try Self.finetune(try daemon.client(), options: Self.options(maxIters: 40))
        #expect(second.error?.code == "busy")
        #expect(second.error?.message.contains(id) == true)

        let running = try Self.wait(daemon) { ($0["iterations"]?.number ?? 0) >= 5 }
        #expect(["running", "yielding"].contains(running["state"]?.string ?? ""))
        #expect(running["losses"]?["cycle_A"]?.number != nil)
        #expect(running["planned_iterations"]?.number == 40)
        let done = try Self.wait(daemon)
        #expect(done["state"]?.string == "done", "\(done)")
        #expect(done["iterations"]?.number == 40)
        #expect(done["published_version"]?.number == 2)
        #expect(done["served_version"]?.number == 2)

        // Its progress came as events: one per logged iteration, then the publish and the end.
        var kinds: [String] = []
        while !kinds.contains("training_done") {
            let event = try events.readReply()
            if let kind = event.json["event"]?.string { kinds.append(kind) }
        }
        #expect(kinds.filter { $0 == "training_progress" }.count == 40)
        #expect(kinds.contains("model_published"))

        // The same run as `cyclegand train` with the same recipe: the same losses, so the same model.
        Self.expectSameLosses(try Self.lossLog(daemon.modelsPath), try Self.reference(maxIters: 40))

        // The direction's outputs changed without a restart; the old version is kept.
        let after = try Self.translate(client, input)
        #expect(after.version == 2)
        #expect(after.bytes != before.bytes)
        #expect(FileManager.default.fileExists(atPath: daemon.modelsPath + "/synth/versions/1"))
        let models = try client.call("models")
        #expect(
            models.json["models"].flatMap { if case .array(let m) = $0 { m.first } else { nil } }?["version"]
                == .number(2))

        // A rollback brings the old outputs back, bit for bit.
        let rolled = try client.call("rollback", ["model": .string("synth"), "version": .number(1)])
        #expect(rolled.ok, "\(rolled.line)")
        let back = try Self.translate(client, input)
        #expect(back.version == 1)
        #expect(back.bytes == before.bytes)
    }

    // MARK: Must-show 4: restarts

    @Test(.enabled(if: cyclegandBinary != nil)) func jobSurvivesSigtermAndKills() throws {
        let total = 100
        let daemon = try Self.daemon()
        #expect(try Self.finetune(try daemon.client(), options: Self.options(maxIters: total)).ok)
        let training = daemon.modelsPath + "/synth/training"
        var random = SplitMix64(seed: 7)
        // SIGTERM once: the job checkpoints and the daemon exits in its stop timeout.
        try Self.wait(daemon) { ($0["iterations"]?.number ?? 0) >= 8 }
        let stopStarted = Date()
        daemon.process.terminate()
        daemon.process.waitUntilExit()
        #expect(Date().timeIntervalSince(stopStarted) < 60)
        // Then kill -9: once during a checkpoint write, once at a random moment.
        var killedInWrite = false
        for round in 0..<2 {
            try daemon.relaunch()
            let deadline = Date().addingTimeInterval(round == 0 ? 30 : 0.3 + random.uniform())
            while Date() < deadline {
                if round == 0, writingCheckpoint(training) {
                    killedInWrite = true
                    break
                }
                usleep(200)
            }
            kill(daemon.process.processIdentifier, SIGKILL)
            daemon.process.waitUntilExit()
        }
        try daemon.relaunch()
        let done = try Self.wait(daemon)
        #expect(["done", "idle"].contains(done["state"]?.string ?? ""), "\(done)")
        #expect(killedInWrite, "no checkpoint write was caught")
        Self.expectSameLosses(try Self.lossLog(daemon.modelsPath), try Self.reference(maxIters: total))
    }

    // MARK: Must-show 3: hot swap under load

    @Test(.enabled(if: cyclegandBinary != nil)) func publishesSwapWithoutLosingATranslation() throws {
        let daemon = try Self.daemon()
        let inputs = try (0..<4).map { i in
            try Data(contentsOf: URL(fileURLWithPath: Self.data + "/testA/" + allImages("testA")[i]))
        }
        let client = try daemon.client()
        let events = try daemon.client()
        #expect(try events.call("subscribe").ok)
        #expect(try Self.finetune(client, options: Self.options(maxIters: 100_000)).ok)
        try Self.wait(daemon) { ($0["iterations"]?.number ?? 0) >= 2 }

        let results = Results()
        let inbox = daemon.folder.file("spool/inbox/A2B")
        // 100 through the socket from two clients, 100 into the inbox, two publishes meanwhile.
        try concurrentlyRun(3) { worker in
            if worker == 2 {
                let steer = try daemon.client()
                for i in 0..<100 {
                    let name = "in-\(i)-\(i % 4).png"
                    try inputs[i % 4].write(to: URL(fileURLWithPath: inbox + "/.\(name).part"))
                    rename(inbox + "/.\(name).part", inbox + "/" + name)
                    if i == 30 || i == 70 {
                        #expect(try steer.call("training", ["action": .string("publish")]).ok)
                    }
                    usleep(20_000)
                }
                return
            }
            let mine = try daemon.client()
            for i in 0..<50 {
                let k = (i + worker) % 4
                let (bytes, version) = try Self.translate(mine, inputs[k])
                results.add(input: k, version: version, bytes: bytes)
            }
        }
        // The inbox files, with the version each was served by (from the events).
        var seen = 0
        while seen < 100 {
            let event = try events.readReply()
            guard event.json["event"]?.string == "image_done", let output = event.json["output"]?.string else {
                #expect(event.json["event"]?.string != "image_failed", "\(event.line)")
                continue
            }
            let k = Int(String(output.split(separator: "-").last!.prefix(1)))!
            let bytes = try Data(contentsOf: URL(fileURLWithPath: output))
            results.add(input: k, version: Int(event.json["model_version"]?.number ?? -1), bytes: bytes)
            seen += 1
        }
        #expect(try client.call("training", ["action": .string("stop"), "publish": .bool(false)]).ok)
        try Self.wait(daemon)
        let failed =
            (try? FileManager.default.contentsOfDirectory(atPath: daemon.folder.file("spool/failed/A2B"))) ?? []
        #expect(failed.isEmpty)

        // Each output is exactly what its version's generator gives.
        let served = results.all
        #expect(served.count == 200)
        let versions = Set(served.map(\.version))
        #expect(versions.isSubset(of: [1, 2, 3]) && versions.count >= 2, "versions served: \(versions)")
        for version in versions.sorted() {
            #expect(try client.call("rollback", ["model": .string("synth"), "version": .number(Double(version))]).ok)
            for k in 0..<4 {
                let truth = try Self.translate(client, inputs[k])
                #expect(truth.version == version)
                for r in served where r.version == version && r.input == k {
                    #expect(r.bytes == truth.bytes, "input \(k) on version \(version)")
                }
            }
        }
    }

    // MARK: Must-show 5: bad input and other users

    @Test(.enabled(if: cyclegandBinary != nil)) func malformedRequestsLeaveTheJobAlone() throws {
        let daemon = try Self.daemon()
        let client = try daemon.client()
        #expect(try Self.finetune(client, options: Self.options(maxIters: 100_000)).ok)
        try Self.wait(daemon) { ($0["iterations"]?.number ?? 0) >= 2 }
        let file = daemon.folder.file("cyclegand.toml")
        let cases: [(String, [String: JSONValue], String, String)] = [
            ("finetune", ["dataroot": .string(Self.data)], "bad_request", "'model'"),
            ("finetune", ["model": .string("nope"), "dataroot": .string(Self.data)], "", ""),
            ("finetune", ["model": .string("synth")], "bad_request", "dataroot"),
            ("finetune", ["model": .string("synth"), "dataroot": .string("")], "bad_request", "'dataroot'"),
            ("finetune", ["model": .string("synth"), "dataroot": .string(file)], "bad_request", "not a folder"),
            ("finetune", ["model": .string("synth"), "dataroot": .string("/no/such")], "not_found", "dataroot"),
            ("finetune", ["model": .number(3), "dataroot": .string(Self.data)], "bad_request", "'model'"),
            (
                "finetune", ["model": .string("synth"), "dataroot": .string(Self.data), "n_epochs": .number(1)],
                "bad_request", "'n_epochs'"
            ),
            ("training", ["action": .string("explode")], "bad_request", "action"),
            ("training", ["action": .number(1)], "bad_request", "'action'"),
            ("rollback", ["model": .string("synth"), "version": .number(-2)], "bad_request", "'version'"),
            ("rollback", ["model": .string("synth"), "version": .number(99)], "not_found", "version 99"),
            (
                "training_data", ["model": .string("synth"), "domain": .string("C"), "name": .string("a.png")],
                "bad_request", "'domain'"
            ),
        ]
        // Options are checked before anything starts, against a second daemon with no job running.
        let idle = try Self.daemon()
        let optionCases: [([String: JSONValue], String)] = [
            (["n_epoch": .number(3)], "unknown option 'n_epoch'"),
            (["crop_size": .string("big")], "'crop_size'"),
            (["crop_size": .number(-5)], "crop_size"),
            (["lr": .number(1e9)], "lr"),
            (["n_epochs": .number(2.5)], "'n_epochs'"),
            (["crop_size": .number(1e7)], "crop_size"),
            (["threads": .number(8)], "threads"),
            // Against the model's own networks (its G_A is not 5 wide, nor made for grey images).
            (["ngf": .number(5)], "option ngf 5: synth's G_A has ngf"),
            (["input_nc": .number(1)], "option input_nc 1: synth's G_A has input_nc 3"),
        ]
        for (options, words) in optionCases {
            let reply = try Self.finetune(try idle.client(), options: options)
            let line = String(decoding: reply.line, as: UTF8.self)
            #expect(reply.error?.code == "bad_request", "\(options): \(line)")
            #expect(reply.error?.message.contains(words) == true, "\(options): \(line)")
        }
        let noModel = try idle.client().call(
            "finetune", ["model": .string("nope"), "dataroot": .string(Self.data)])
        #expect(noModel.error?.code == "not_found")
        #expect(noModel.error?.message.contains("'model'") == true)

        let rssBefore = daemon.residentBytes
        let iterationsBefore = try Self.status(client)["iterations"]?.number ?? 0
        for i in 0..<1000 {
            let (command, fields, code, words) = cases[i % cases.count]
            let reply = try client.call(command, fields)
            #expect(!reply.ok, "\(command) \(fields) was accepted")
            if !code.isEmpty {
                let line = String(decoding: reply.line, as: UTF8.self)
                #expect(reply.error?.code == code, "\(command) \(fields): \(line)")
                #expect(reply.error?.message.contains(words) == true, "\(command) \(fields): \(line)")
            }
        }
        #expect(daemon.process.isRunning)
        #expect(daemon.residentBytes < rssBefore + (64 << 20), "RSS grew from \(rssBefore) to \(daemon.residentBytes)")
        let after = try Self.wait(daemon, seconds: 30) { ($0["iterations"]?.number ?? 0) > iterationsBefore + 2 }
        #expect(after["state"]?.string == "running" || after["state"]?.string == "yielding", "\(after)")
        #expect(try client.call("training", ["action": .string("stop")]).ok)
        #expect(try Self.wait(daemon)["state"]?.string == "done")
    }

    @Test(.enabled(if: geteuid() == 0 && cyclegandBinary != nil, "needs root to run clients as nobody"))
    func otherUsersAndUnreadableFolders() throws {
        let daemon = try Self.daemon(config: "socket_group = \"nogroup\"\n", socketFolderMode: 0o755)
        let binary = try #require(cyclegandBinary)
        func asNobody(_ arguments: [String]) throws -> (status: Int32, output: String, error: String) {
            try runProcess(
                "/usr/sbin/runuser",
                ["-u", "nobody", "--", binary, "ctl"] + arguments + ["--socket", daemon.socketPath])
        }
        // A folder nobody cannot read is refused with forbidden, before anything starts.
        let closed = TempDir("closed-data", mode: 0o700)
        try FileManager.default.copyItem(atPath: Self.data + "/trainA", toPath: closed.file("trainA"))
        try FileManager.default.copyItem(atPath: Self.data + "/trainB", toPath: closed.file("trainB"))
        let refused = try asNobody(["finetune", "synth", "--dataroot", closed.path, "--max_iters", "5", "--json"])
        #expect(refused.output.contains(#""code":"forbidden""#), "\(refused)")

        // A job started by root: nobody may not steer it.
        #expect(try Self.finetune(try daemon.client(), options: Self.options(maxIters: 100_000)).ok)
        try Self.wait(daemon) { ($0["iterations"]?.number ?? 0) >= 1 }
        let stranger = try asNobody(["training", "stop", "--json"])
        #expect(stranger.status == 3, "\(stranger)")
        #expect(stranger.output.contains(#""code":"forbidden""#))
        #expect(try Self.status(try daemon.client())["state"]?.string == "running")
        #expect(try daemon.client().call("training", ["action": .string("stop"), "publish": .bool(false)]).ok)
        try Self.wait(daemon)

        // nobody's own folder, which the daemon's uid is not asked to read: sent through the upload form.
        let mine = TempDir("nobody-data", mode: 0o700)
        for domain in ["trainA", "trainB"] {
            try FileManager.default.copyItem(atPath: Self.data + "/" + domain, toPath: mine.file(domain))
        }
        _ = try runProcess("/bin/chown", ["-R", "nobody:nogroup", mine.path])
        let started = try asNobody([
            "finetune", "synth", "--dataroot", mine.path, "--upload", "--max_iters", "200000", "--crop_size", "32",
            "--load_size", "36",
        ])
        #expect(started.status == 0, "\(started.output)\(started.error)")
        let uploaded = try FileManager.default.contentsOfDirectory(
            atPath: daemon.modelsPath + "/synth/training/data/trainA")
        #expect(uploaded.count == (try FileManager.default.contentsOfDirectory(atPath: Self.data + "/trainA")).count)
        try Self.wait(daemon) { ($0["iterations"]?.number ?? 0) >= 1 }

        // Only its owner (or the daemon's uid) may steer it: root here is the daemon's own uid.
        let byOwner = try asNobody(["training", "pause", "--json"])
        #expect(byOwner.status == 0, "\(byOwner)")
        #expect(try Self.status(try daemon.client())["state"]?.string == "paused")
        #expect(try daemon.client().call("training", ["action": .string("resume")]).ok, "the daemon's uid may")
        #expect(try Self.status(try daemon.client())["owner"]?.number == 65534)
        try Self.wait(daemon) { ($0["state"]?.string ?? "") == "running" }
        #expect(try daemon.client().call("training", ["action": .string("stop"), "publish": .bool(false)]).ok)
        try Self.wait(daemon)

        // A second upload replaces the first, even when the files that sort first are one nobody
        // cannot read and one that is not an image: both are skipped with a word, and only this
        // upload's images train.
        let second = TempDir("nobody-second", mode: 0o700)
        for domain in ["trainA", "trainB"] {
            try FileManager.default.createDirectory(atPath: second.file(domain), withIntermediateDirectories: true)
            for name in try allImages(domain).prefix(2) {
                try FileManager.default.copyItem(
                    atPath: Self.data + "/" + domain + "/" + name, toPath: second.file(domain + "/" + name))
            }
            try FileManager.default.copyItem(
                atPath: Self.data + "/" + domain + "/" + (try firstImage(domain)),
                toPath: second.file(domain + "/0-closed.png"))
            try Data("not an image\n".utf8).write(to: URL(fileURLWithPath: second.file(domain + "/1-notes.txt")))
        }
        _ = try runProcess("/bin/chown", ["-R", "nobody:nogroup", second.path])
        #expect(chmod(second.file("trainA/0-closed.png"), 0) == 0 && chmod(second.file("trainB/0-closed.png"), 0) == 0)
        let replaced = try asNobody([
            "finetune", "synth", "--dataroot", second.path, "--upload", "--max_iters", "1", "--crop_size", "32",
            "--load_size", "36",
        ])
        #expect(replaced.status == 0, "\(replaced.output)\(replaced.error)")
        #expect(replaced.error.contains("0-closed.png: cannot read it"), "\(replaced.error)")
        #expect(replaced.error.contains("1-notes.txt: unreadable_image"), "\(replaced.error)")
        for domain in ["trainA", "trainB"] {
            let kept = try FileManager.default.contentsOfDirectory(
                atPath: daemon.modelsPath + "/synth/training/data/" + domain)
            #expect(Set(kept) == Set(try allImages(domain).prefix(2)), "\(domain): \(kept.sorted())")
        }
        try Self.wait(daemon)
    }

    /// A daemon whose own user cannot read the client's folder (as a system service with
    /// ProtectHome cannot read the users' homes): `ctl finetune` hears forbidden and sends the images.
    @Test(.enabled(if: geteuid() == 0 && cyclegandBinary != nil, "needs root to run the daemon as nobody"))
    func aFolderTheDaemonCannotReadGoesThroughTheUploadForm() throws {
        let daemon = try DaemonProcess(
            config: "memory_limit = \"8GiB\"\n", models: Self.importSynth, user: "nobody")
        let home = TempDir("home", mode: 0o700)
        for domain in ["trainA", "trainB"] {
            try FileManager.default.copyItem(atPath: Self.data + "/" + domain, toPath: home.file(domain))
        }
        let direct = try daemon.client().call(
            "finetune", ["model": .string("synth"), "dataroot": .string(home.path), "options": .object([:])])
        #expect(direct.error?.code == "forbidden", "\(String(decoding: direct.line, as: UTF8.self))")
        #expect(direct.error?.message.contains("cannot") == true)

        let binary = try #require(cyclegandBinary)
        let run = try runProcess(
            binary,
            [
                "ctl", "finetune", "synth", "--dataroot", home.path, "--max_iters", "5", "--load_size", "36",
                "--crop_size", "32", "--follow", "--socket", daemon.socketPath,
            ])
        #expect(run.status == 0, "\(run.output)\(run.error)")
        #expect(run.error.contains("sending the images"), "\(run.error)")
        #expect(run.output.contains("done"), "\(run.output)")
        #expect(try Self.status(try daemon.client())["published_version"]?.number == 2)
        let kept = try FileManager.default.contentsOfDirectory(
            atPath: daemon.modelsPath + "/synth/training/data/trainB")
        #expect(kept.count == (try FileManager.default.contentsOfDirectory(atPath: Self.data + "/trainB")).count)
    }

    func writingCheckpoint(_ folder: String) -> Bool {
        ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).contains {
            $0.hasPrefix(".checkpoint.incoming")
        }
    }

    func allImages(_ domain: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: Self.data + "/" + domain).sorted()
    }

    func firstImage(_ domain: String) throws -> String { try allImages(domain)[0] }
}

/// Translations and the version that served each, from several threads.
private final class Results: @unchecked Sendable {
    struct Served {
        var input: Int
        var version: Int
        var bytes: Data
    }
    private let lock = NSLock()
    private var items: [Served] = []

    func add(input: Int, version: Int, bytes: Data) {
        lock.withLock { items.append(Served(input: input, version: version, bytes: bytes)) }
    }

    var all: [Served] { lock.withLock { items } }
}

/// Runs `body(0..<count)` on threads of their own and waits for all; rethrows the first error.
private func concurrentlyRun(_ count: Int, _ body: @escaping @Sendable (Int) throws -> Void) throws {
    let group = DispatchGroup()
    let failure = NSLock()
    nonisolated(unsafe) var first: Error?
    for i in 0..<count {
        group.enter()
        Thread {
            do { try body(i) } catch { failure.withLock { first = first ?? error } }
            group.leave()
        }.start()
    }
    group.wait()
    if let first { throw first }
}
