import Foundation
import Testing

@testable import Daemon

#if canImport(Glibc)
    import Glibc
#endif

/// The real `cyclegand` binary, started as a child process with a tiny real generator (the
/// lead's 2-block fixture imported by `cyclegand import`), on real PNG files.
///
/// Which binary: $CYCLEGAND_BIN when set; else the `cyclegand` built beside this test bundle
/// (same scratch path and configuration, so `swift test` tests what it just built); else the most
/// recently built `.build*/{release,debug}/cyclegand` under the repository root. Without one these
/// tests are skipped and say so.
enum Binary {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    static let path: String? = {
        let fm = FileManager.default
        if let env = ProcessInfo.processInfo.environment["CYCLEGAND_BIN"], !env.isEmpty {
            return fm.isExecutableFile(atPath: env) ? env : nil
        }
        let bundleDir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().path
        if fm.isExecutableFile(atPath: bundleDir + "/cyclegand") { return bundleDir + "/cyclegand" }
        var best: (String, Date)?
        for scratch in FS.list(repo) where scratch.hasPrefix(".build") {
            for configuration in ["release", "debug"] {
                let candidate = repo + "/" + scratch + "/" + configuration + "/cyclegand"
                guard fm.isExecutableFile(atPath: candidate),
                    let date = (try? fm.attributesOfItem(atPath: candidate))?[.modificationDate] as? Date
                else { continue }
                if best == nil || date > best!.1 { best = (candidate, date) }
            }
        }
        return best?.0
    }()

    static let tinyGenerator = repo + "/Tests/Fixtures/generators/reference_generator.pth"

    /// Runs the binary to completion; returns (status, stdout + stderr).
    @discardableResult
    static func run(_ arguments: [String]) throws -> (Int32, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try #require(path))
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, output)
    }

    static let missing = "no cyclegand binary: build one (swift build) or set CYCLEGAND_BIN"
}

/// One `cyclegand serve` child with its own notify socket, so the test knows when it is ready.
final class ServeProcess {
    let process = Process()
    let notify: SystemdNotifierTests.FakeSystemd
    let logPath: String

    init(dir: TempDir, arguments: [String] = [], environment: [String: String] = [:], run: Int) throws {
        let notifyPath = dir.path + "/notify-\(run).sock"
        notify = try SystemdNotifierTests.FakeSystemd(address: notifyPath, abstract: false)
        logPath = dir.path + "/serve-\(run).log"
        FileManager.default.createFile(atPath: logPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: try #require(Binary.path))
        process.arguments =
            [
                "serve", "--root", dir.path + "/spool", "--models-dir", dir.path + "/models", "--socket",
                dir.path + "/ctl.sock",
            ] + arguments
        var env = ProcessInfo.processInfo.environment
        env["NOTIFY_SOCKET"] = notifyPath
        env["CYCLEGAND_MODELS"] = nil
        env.merge(environment) { $1 }
        process.environment = env
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process.standardOutput = log
        process.standardError = log
        try process.run()
    }

    /// A test that stops early (a failed #require) must not leave a daemon behind.
    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    /// Waits for READY=1; other messages are skipped, however many come first (a daemon that
    /// recovers a full work/ sends a STATUS= line per image before it is ready). False after 30 s,
    /// or after 5 s of silence.
    func waitReady() -> Bool { waitFor("READY=1") != nil }

    /// The next notify message that contains `fragment` (others are skipped); nil after 30 s, or
    /// after 5 s of silence.
    func waitFor(_ fragment: String) -> String? {
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            guard let message = notify.receive() else { return nil }
            if message.contains(fragment) { return message }
        }
        return nil
    }

    func kill9() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// SIGTERM and the exit status.
    func terminate() -> Int32 {
        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
        return process.terminationStatus
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }
}

@Suite(.serialized, .enabled(if: Binary.path != nil, "\(Binary.missing)"))
struct IntegrationTests {
    let dir = TempDir("integration")

    /// A models folder with the tiny generator as model `tiny` (direction a2b).
    func importTinyModel(name: String = "tiny", domains: String = "a,b") throws {
        let (status, output) = try Binary.run([
            "import", Binary.tinyGenerator, "--name", name, "--domains", domains, "--models-dir", dir.path + "/models",
        ])
        #expect(status == 0, "\(output)")
    }

    var inbox: String { dir.path + "/spool/inbox/a2b" }

    /// Output files (relative paths, hidden ones excluded) and their PNG sizes.
    func outputs() -> [String: (width: Int, height: Int)?] {
        var result: [String: (width: Int, height: Int)?] = [:]
        for rel in dir.files("spool/outbox/a2b") {
            let data = FileManager.default.contents(atPath: dir.path + "/spool/outbox/a2b/" + rel) ?? Data()
            result[rel] = PNG.check(data)
        }
        return result
    }

    func writeSlowly(_ data: Data, to path: String, chunk: Int = 700) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        precondition(fd >= 0)
        var offset = 0
        data.withUnsafeBytes { raw in
            while offset < raw.count {
                let n = min(chunk, raw.count - offset)
                _ = write(fd, raw.baseAddress! + offset, n)
                offset += n
                usleep(1500)
            }
        }
        close(fd)
    }

    @Test func twoHundredImagesInBurstsGiveExactlyTwoHundredOutputs() async throws {
        try importTinyModel()
        let serve = try ServeProcess(dir: dir, run: 0)
        #expect(serve.waitReady(), "\(serve.log)")
        #expect(FS.isDirectory(inbox))
        let staging = dir.path + "/staging"
        try FS.makeDirectories(staging)

        var expected: [String: (Int, Int)] = [:]
        var generator = SystemRandomNumberGenerator()
        func image(_ n: Int) -> (Data, Int, Int) {
            let w = Int.random(in: 9...72, using: &generator)
            let h = Int.random(in: 9...72, using: &generator)
            return (PNG.make(width: w, height: h, seed: n), w, h)
        }
        // 50 written slowly, in small chunks, into five folders that are created as they go.
        var slow: [(Data, String)] = []
        for n in 0..<50 {
            let (data, w, h) = image(n)
            let rel = "slow\(n % 5)/img\(n).png"
            expected[rel] = (w, h)
            slow.append((data, rel))
        }
        let slowWriter = Thread { [inbox, slow] in
            for (data, rel) in slow {
                try? FS.makeDirectories((inbox + "/" + rel as NSString).deletingLastPathComponent)
                self.writeSlowly(data, to: inbox + "/" + rel)
            }
        }
        slowWriter.start()
        // 150 more in bursts of 25: moved in, hidden or temporary names renamed, written in place.
        for burst in 0..<6 {
            for k in 0..<25 {
                let n = 50 + burst * 25 + k
                let (data, w, h) = image(n)
                let name = "img\(n).png"
                switch k % 3 {
                case 0:
                    try data.write(to: URL(fileURLWithPath: staging + "/" + name))
                    #expect(rename(staging + "/" + name, inbox + "/" + name) == 0)
                case 1:
                    let temporary = [".\(name)", "\(name).part", "\(name).tmp", "\(name).crdownload", "\(name)~"][n % 5]
                    writeSlowly(data, to: inbox + "/" + temporary, chunk: 4096)
                    #expect(rename(inbox + "/" + temporary, inbox + "/" + name) == 0)
                default:
                    try data.write(to: URL(fileURLWithPath: inbox + "/" + name))
                }
                expected[name] = (w, h)
            }
            try await Task.sleep(nanoseconds: 150_000_000)
        }
        #expect(expected.count == 200)
        let done = await eventually(150) {
            dir.files("spool/outbox/a2b").count >= 200 && dir.files("spool/inbox").isEmpty
                && dir.files("spool/work", hidden: true).isEmpty
        }
        #expect(
            done,
            "outbox \(dir.files("spool/outbox/a2b").count), inbox \(dir.files("spool/inbox")), failed \(dir.files("spool/failed"))\n\(serve.log.suffix(3000))"
        )
        let produced = outputs()
        #expect(produced.count == 200)
        #expect(Set(produced.keys) == Set(expected.keys))
        for (rel, size) in expected {
            let got = produced[rel] ?? nil
            #expect(
                got?.width == size.0 && got?.height == size.1, "\(rel): \(String(describing: got)) expected \(size)")
        }
        let sidecars = dir.files("spool/failed").filter { $0.hasSuffix(".error.json") }
        #expect(sidecars.isEmpty, "\(sidecars.map { dir.read("spool/failed/" + $0) ?? $0 })")
        #expect(dir.files("spool/inbox").isEmpty && dir.files("spool/work", hidden: true).isEmpty)
        #expect(serve.terminate() == 0)
        // One log line per image: direction, file, pixels, milliseconds.
        let lines = serve.log.split(separator: "\n").filter { $0.contains(" a2b ") && $0.contains(" ms -> ") }
        #expect(lines.count == 200)
    }

    @Test func killNineAtRandomMomentsNeverLosesOrDuplicatesAnImage() async throws {
        try importTinyModel()
        try FS.makeDirectories(inbox)
        var expected: [String: (Int, Int)] = [:]
        for n in 0..<50 {
            let (w, h) = (96 + n % 7 * 8, 80 + n % 5 * 8)
            let rel = n < 10 ? "sub/img\(n).png" : "img\(n).png"
            dir.write("spool/inbox/a2b/" + rel, "")
            try PNG.make(width: w, height: h, seed: n).write(to: URL(fileURLWithPath: inbox + "/" + rel))
            // Old enough that the start-up scan takes them at once (it waits for recent files to settle).
            try FileManager.default.setAttributes(
                [.modificationDate: Date().addingTimeInterval(-60)], ofItemAtPath: inbox + "/" + rel)
            expected[rel] = (w, h)
        }
        // Odd runs are killed a random moment after READY (often during start-up recovery), even
        // runs once a random number of further outputs have appeared (mid-stream, whatever the
        // machine's speed). Each kill must find images still in flight.
        var killedInFlight = 0
        for run in 0..<5 {
            let serve = try ServeProcess(dir: dir, arguments: ["--workers", "2"], run: run)
            #expect(serve.waitReady(), "run \(run) running=\(serve.process.isRunning): \(serve.log)")
            if run % 2 == 1 {
                try await Task.sleep(nanoseconds: UInt64.random(in: 0...60_000_000))
            } else {
                let target = min(49, dir.files("spool/outbox/a2b").count + Int.random(in: 1...6))
                _ = await eventually(60) { dir.files("spool/outbox/a2b").count >= target }
                try await Task.sleep(nanoseconds: UInt64.random(in: 0...5_000_000))
            }
            let before = dir.files("spool/outbox/a2b").count
            serve.kill9()
            if before < 50 { killedInFlight += 1 }
            // Whatever the moment, nothing visible is half-written.
            for (rel, size) in outputs() {
                #expect(size != nil, "run \(run): \(rel) is not a complete PNG")
            }
        }
        #expect(killedInFlight == 5, "the kills came too late to test anything")
        let serve = try ServeProcess(dir: dir, run: 5)
        #expect(serve.waitReady(), "\(serve.log)")
        let done = await eventually(120) {
            dir.files("spool/outbox/a2b").count >= 50 && dir.files("spool/work", hidden: true).isEmpty
        }
        #expect(done, "\(serve.log.suffix(3000))")
        #expect(serve.terminate() == 0)
        let produced = outputs()
        #expect(Set(produced.keys) == Set(expected.keys), "duplicates or losses: \(produced.keys.sorted())")
        for (rel, size) in expected {
            let got = produced[rel] ?? nil
            #expect(got?.width == size.0 && got?.height == size.1, "\(rel)")
        }
        let hidden = dir.files("spool/outbox", hidden: true).filter {
            ($0 as NSString).lastPathComponent.hasPrefix(".")
        }
        #expect(hidden.isEmpty, "temporary files left in the outbox: \(hidden)")
        #expect(dir.files("spool/failed").isEmpty && dir.files("spool/inbox").isEmpty)
        #expect(dir.files("spool/work", hidden: true).isEmpty)
    }

    @Test func badInputsFailWithSidecarsAndTheNextGoodFileIsProcessed() async throws {
        try importTinyModel()
        let serve = try ServeProcess(dir: dir, run: 0)
        #expect(serve.waitReady(), "\(serve.log)")
        let good = PNG.make(width: 40, height: 30, seed: 1)
        var random = [UInt8](repeating: 0, count: 5000)
        for i in random.indices { random[i] = UInt8.random(in: 0...255) }
        let bad: [(String, Data, String)] = [
            ("empty.png", Data(), "unreadable_image"),
            ("truncated.png", good.prefix(good.count / 2), "unreadable_image"),
            ("noise.jpg", Data(random), "unreadable_image"),
            ("text.png", Data("this is not an image\n".utf8), "unreadable_image"),
            ("bomb.png", PNG.bombHeader(width: 100_000, height: 100_000), "too_large"),
        ]
        for (name, data, _) in bad { try data.write(to: URL(fileURLWithPath: inbox + "/" + name)) }
        dir.write("spool/inbox/nomodel/x.png", "")
        try good.write(to: URL(fileURLWithPath: dir.path + "/spool/inbox/nomodel/x.png"))
        try good.write(to: URL(fileURLWithPath: inbox + "/good.png"))

        #expect(await eventually(60) { outputs()["good.png"] != nil }, "\(serve.log.suffix(2000))")
        #expect(outputs()["good.png"]??.width == 40)
        #expect(await eventually(60) { dir.files("spool/failed").count == 12 }, "\(dir.files("spool/failed"))")
        for (name, data, code) in bad {
            #expect(FileManager.default.contents(atPath: dir.path + "/spool/failed/a2b/" + name) == data, "\(name)")
            let sidecar = try Spool.decoder.decode(
                FailureSidecar.self,
                from: try #require(
                    FileManager.default.contents(atPath: dir.path + "/spool/failed/a2b/\(name).error.json")))
            #expect(sidecar.code == code, "\(name): \(sidecar.code) \(sidecar.message)")
            #expect(!sidecar.message.isEmpty && sidecar.direction == "a2b" && sidecar.daemonVersion == Daemon.version)
        }
        let orphan = try Spool.decoder.decode(
            FailureSidecar.self,
            from: try #require(
                FileManager.default.contents(atPath: dir.path + "/spool/failed/nomodel/x.png.error.json")))
        #expect(orphan.code == "no_model" && orphan.direction == "nomodel")
        #expect(serve.terminate() == 0)
    }

    @Test func aModelImportedWhileRunningGetsItsInboxWithoutRestart() async throws {
        try importTinyModel()
        let serve = try ServeProcess(dir: dir, run: 0)
        #expect(serve.waitReady(), "\(serve.log)")
        try importTinyModel(name: "second", domains: "c,d")
        let inboxC = dir.path + "/spool/inbox/c2d"
        #expect(await eventually(30) { FS.isDirectory(inboxC) }, "\(serve.log)")
        try PNG.make(width: 20, height: 20, seed: 3).write(to: URL(fileURLWithPath: inboxC + "/new.png"))
        #expect(await eventually(30) { FS.isRegularFile(dir.path + "/spool/outbox/c2d/new.png") }, "\(serve.log)")
        #expect(serve.terminate() == 0)
        #expect(serve.log.contains("new: c2d"))
    }

    @Test func speaksTheSystemdNotifyProtocolAndReloadsOnSIGHUP() async throws {
        try importTinyModel()
        let serve = try ServeProcess(dir: dir, environment: ["WATCHDOG_USEC": "200000"], run: 0)
        let ready = try #require(serve.waitFor("READY=1"), "\(serve.log)")
        #expect(ready.contains("STATUS=queued: a2b 0"))
        #expect(serve.waitFor("WATCHDOG=1") != nil)
        try PNG.make(width: 20, height: 20, seed: 1).write(to: URL(fileURLWithPath: inbox + "/one.png"))
        #expect(serve.waitFor("done 1") != nil)
        kill(serve.process.processIdentifier, SIGHUP)
        let reloading = try #require(serve.waitFor("RELOADING=1"))
        #expect(reloading.contains("MONOTONIC_USEC="))
        #expect(serve.waitFor("READY=1") != nil)
        kill(serve.process.processIdentifier, SIGTERM)
        #expect(serve.waitFor("STOPPING=1") != nil)
        serve.process.waitUntilExit()
        #expect(serve.process.terminationStatus == 0)
        #expect(serve.log.contains("Drop images into \(dir.path)/spool/inbox/a2b/"))
        #expect(serve.log.contains("SIGHUP: reloading"))
    }

    @Test func configurationErrorsExitWith78AndASecondDaemonOnTheSpoolIsRefused() throws {
        dir.write("bad.toml", "workers = 2\nqualty = 90\n")
        let (status, output) = try Binary.run(["serve", "--config", dir.path + "/bad.toml", "--no-socket"])
        #expect(status == 78)
        #expect(output.contains("unknown key `qualty`"), "\(output)")

        try importTinyModel()
        let first = try ServeProcess(dir: dir, run: 0)
        #expect(first.waitReady(), "\(first.log)")
        let (second, message) = try Binary.run([
            "serve", "--root", dir.path + "/spool", "--models-dir", dir.path + "/models", "--no-socket",
        ])
        #expect(second == 1)
        #expect(message.contains("another cyclegand is already using the spool"), "\(message)")
        #expect(first.terminate() == 0)
    }
}
