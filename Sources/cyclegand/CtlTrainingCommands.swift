import ArgumentParser
import Control
import Daemon
import Foundation
import Training

#if canImport(Glibc)
    import Glibc
#endif

// `cyclegand ctl finetune`, `ctl training` and `ctl rollback`: the daemon's fine-tune job.

extension CtlCommand {
    struct Finetune: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Fine-tune a model inside the running daemon, on two folders of images.",
            discussion: """
                Full CycleGAN training (both generators and both discriminators, as `cyclegand train`), \
                run by the daemon as its lowest-priority work: it yields its cores to every image that \
                waits, and continues after a restart from its last checkpoint. A model with training \
                state resumes it; one without starts from its networks. When it ends, the new generators \
                become the model's current version at once (no restart); `ctl rollback` brings back an \
                earlier one.

                The daemon reads the folders itself when it can (same user); when it cannot (a system \
                service, with ProtectHome), or with --upload, this command reads them and sends the \
                images over the socket into the model's own training-data folder.

                Training options take their reference names, as in `cyclegand train` (`cyclegand help \
                train` lists them); the daemon decides the threads. A resumed model keeps its recipe and \
                a model its networks' layout: an option given against them is refused, by name, before \
                the job starts (docs/TRAINING.md lists what a resumed run may change: the schedule, the \
                logs and how the images are prepared).

                Exit codes with --follow: 0 the job ended (schedule done, max_iters, or stopped and \
                published), 1 it failed; and those of `cyclegand ctl`.

                Examples:
                  cyclegand ctl finetune modern2vintage --dataroot ~/photos --n_epochs 5 --n_epochs_decay 5 --follow
                  cyclegand ctl finetune horse2zebra --dir-a ~/horses --dir-b ~/zebras --max_iters 2000
                """)
        @OptionGroup var options: CtlOptions
        @Argument(help: "The model to fine-tune (`cyclegand ctl models` lists them).") var model: String
        @Option(help: "A folder with trainA/ and trainB/.") var dataroot: String?
        @Option(name: [.customLong("dir-a"), .customLong("dir_a")], help: "Domain A's images.") var dirA: String?
        @Option(name: [.customLong("dir-b"), .customLong("dir_b")], help: "Domain B's images.") var dirB: String?
        @Flag(help: "Send the images over the socket even if the daemon could read them.") var upload = false
        @Flag(help: "Stay, showing the progress line, until the job ends.") var follow = false
        @OptionGroup(title: "Networks (a new model's)") var networks: NetworkOptions
        @OptionGroup(title: "Losses and optimisation") var optimisation: OptimisationOptions
        @OptionGroup(title: "Data") var data: DataArguments
        @OptionGroup(title: "Checkpoints, logs and stopping") var schedule: ScheduleOptions

        func validate() throws {
            if (dataroot == nil) == (dirA == nil && dirB == nil) || (dirA == nil) != (dirB == nil) {
                throw ValidationError("give --dataroot DIR, or --dir-a DIR and --dir-b DIR")
            }
        }

        func run() throws {
            try runCtl {
                var fields: [String: JSONValue] = ["model": .string(model), "options": .object(try trainingOptions())]
                let folders = try localFolders()
                if upload {
                    try send(folders)
                    fields["uploaded"] = .bool(true)
                } else if let dataroot {
                    fields["dataroot"] = .string(folders.root ?? absolute(dataroot))
                } else {
                    fields["dir_a"] = .string(folders.a)
                    fields["dir_b"] = .string(folders.b)
                }
                // Subscribed before the job starts, so that no event is missed.
                let follower = follow ? try TrainingFollower(options: options) : nil
                var reply: ControlReply
                do {
                    reply = try options.call("finetune", fields)
                } catch let failure as CtlFailure where !upload && (failure.code == 2 || failure.code == 3) {
                    // The daemon cannot see or read these folders (another user, ProtectHome): send them.
                    FileHandle.standardError.write(
                        Data("the daemon cannot read the folders (\(failure.message)); sending the images\n".utf8))
                    try send(folders)
                    fields = fields.filter { !["dataroot", "dir_a", "dir_b"].contains($0.key) }
                    fields["uploaded"] = .bool(true)
                    reply = try options.call("finetune", fields)
                }
                if options.printRaw(reply) && !follow { return }
                let id = reply.json["training"]?["id"]?.string ?? "?"
                if !options.json { printLine(Data("fine-tune \(id) of \(model) queued".utf8)) }
                try follower?.follow()
            }
        }

        /// The options given on the command line, under their reference names.
        private func trainingOptions() throws -> [String: JSONValue] {
            let (o, given) = try cyclegand.trainingOptions(networks, optimisation, data, schedule)
            guard case .object(let all) = try JSONDecoder().decode(JSONValue.self, from: try JSONEncoder().encode(o))
            else { return [:] }
            return all.filter { given.contains($0.key) }
        }

        private func absolute(_ path: String) -> String {
            let expanded = (path as NSString).expandingTildeInPath
            return expanded.hasPrefix("/") ? expanded : FileManager.default.currentDirectoryPath + "/" + expanded
        }

        private func localFolders() throws -> (root: String?, a: String, b: String) {
            if let dataroot {
                let root = absolute(dataroot)
                return (root, root + "/trainA", root + "/trainB")
            }
            return (nil, absolute(dirA!), absolute(dirB!))
        }

        /// Reads the folders here, as this user, and sends each image; the daemon checks each one.
        private func send(_ folders: (root: String?, a: String, b: String)) throws {
            for (domain, folder) in [("A", folders.a), ("B", folders.b)] {
                let names = try imageNames(in: folder)
                guard !names.isEmpty else { throw CtlFailure(code: 64, message: "\(folder) has no images") }
                var sent = 0
                var refused = 0
                // The daemon empties the domain's folder on the first image it receives (kept or
                // not), so that no earlier upload trains along; a file this user cannot read is
                // never sent and must not take that flag with it.
                var cleared = false
                for name in names {
                    guard let bytes = FileManager.default.contents(atPath: folder + "/" + name) else {
                        FileHandle.standardError.write(Data("skipped \(folder)/\(name): cannot read it\n".utf8))
                        refused += 1
                        continue
                    }
                    let fields: [String: JSONValue] = [
                        "model": .string(model), "domain": .string(domain), "name": .string(name),
                        "clear": .bool(!cleared),
                    ]
                    do {
                        _ = try options.call("training_data", fields, payload: bytes)
                        sent += 1
                    } catch let failure as CtlFailure where failure.message.hasPrefix("unreadable_image") {
                        FileHandle.standardError.write(Data("skipped \(folder)/\(name): \(failure.message)\n".utf8))
                        refused += 1
                    }
                    cleared = true
                }
                FileHandle.standardError.write(
                    Data("sent \(sent) images of domain \(domain)\(refused > 0 ? " (\(refused) skipped)" : "")\n".utf8))
            }
        }

        private func imageNames(in folder: String) throws -> [String] {
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else {
                throw CtlFailure(code: 2, message: "cannot read the folder \(folder)")
            }
            return names.filter { !$0.hasPrefix(".") }.sorted().filter { name in
                var isDirectory: ObjCBool = false
                return FileManager.default.fileExists(atPath: folder + "/" + name, isDirectory: &isDirectory)
                    && !isDirectory.boolValue
            }
        }
    }

    struct Training: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show or steer the daemon's fine-tune job.",
            discussion: """
                status shows it (add --follow to stay with its progress line); pause and resume hold and \
                release it; publish makes its current generators the model's version now while it goes \
                on; stop checkpoints and ends it, publishing what it has unless --no-publish. Only the \
                user that started the job (or the daemon's own) may steer it.
                """)
        enum Action: String, ExpressibleByArgument, CaseIterable {
            case status, pause, resume, stop, publish
        }
        @OptionGroup var options: CtlOptions
        @Argument(help: "status, pause, resume, stop or publish.") var action: Action = .status
        @Flag(help: "With stop: end without publishing.") var noPublish = false
        @Flag(help: "With status: stay, showing the progress line, until the job ends.") var follow = false

        func run() throws {
            try runCtl {
                var fields: [String: JSONValue] = ["action": .string(action.rawValue)]
                if action == .stop { fields["publish"] = .bool(!noPublish) }
                let follower = follow ? try TrainingFollower(options: options) : nil
                let reply = try options.call("training", fields)
                if options.printRaw(reply) && !follow { return }
                let s = try reply.decode(TrainingJobStatus.self, field: "training")
                if !options.json { printLine(Data(TrainingFollower.describe(s).utf8)) }
                if !s.state.ended && s.state != .idle { try follower?.follow() }
            }
        }
    }

    struct Rollback: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make an earlier version of a model the current one (at once, no restart).",
            discussion: "`cyclegand models versions MODEL` lists the versions; a rollback can itself be undone.")
        @OptionGroup var options: CtlOptions
        @Argument(help: "The model.") var model: String
        @Argument(help: "The version to serve.") var version: Int

        func run() throws {
            try runCtl {
                let reply = try options.call(
                    "rollback", ["model": .string(model), "version": .number(Double(version))])
                if options.printRaw(reply) { return }
                print("\(model) now serves version \(Int(reply.json["version"]?.number ?? 0))")
            }
        }
    }
}

/// Follows the fine-tune job's events until it ends: a live line on a terminal, a plain line every
/// logged iteration otherwise. Subscribes when made.
struct TrainingFollower {
    let options: CtlOptions
    private let client: ControlClient

    init(options: CtlOptions) throws {
        self.options = options
        client = try options.connect()
        do {
            try options.check(try client.call("subscribe"))
        } catch let failure as CtlFailure {
            throw failure
        } catch {
            throw CtlFailure(code: 70, message: "\(error)")
        }
    }

    func follow() throws {
        let terminal = isatty(1) != 0
        do {
            while true {
                let event = try client.readReply()
                guard let kind = event.json["event"]?.string, kind.hasPrefix("training") || kind == "model_published",
                    let s = try? event.decode(TrainingJobStatus.self, field: "training")
                else { continue }
                if options.json {
                    printLine(event.line)
                } else if kind == "model_published" {
                    let text = "published \(s.model ?? "") version \(s.publishedVersion ?? 0)"
                    printLine(Data(((terminal ? "\r\u{1B}[K" : "") + text).utf8))
                } else if kind == "training_progress" {
                    let line = Self.progressLine(s)
                    if terminal {
                        FileHandle.standardOutput.write(Data(("\r\u{1B}[K" + line).utf8))
                    } else {
                        printLine(Data(line.utf8))
                    }
                }
                if kind == "training_done" { return try finish(s) }
            }
        } catch let failure as CtlFailure {
            throw failure
        } catch {
            throw CtlFailure(code: 70, message: "\(error)")
        }
    }

    private func finish(_ s: TrainingJobStatus) throws {
        if !options.json { printLine(Data(((isatty(1) != 0 ? "\r\u{1B}[K" : "") + Self.describe(s)).utf8)) }
        if s.state == .failed { throw CtlFailure(code: 1, message: "the fine-tune failed: \(s.message ?? "")") }
    }

    /// "epoch 3/10 120/400 | D_A 0.21 G_A 0.48 ... | 0.15 it/s ETA 12m03s"
    static func progressLine(_ s: TrainingJobStatus) -> String {
        let losses = Losses.names.compactMap { name in s.losses?[name].map { "\(name) \(String(format: "%.3f", $0))" } }
        let eta = s.etaSeconds.map { " ETA \(humanDuration($0))" } ?? ""
        return "epoch \(s.epoch ?? 0)/\(s.lastEpoch ?? 0) \(s.iters ?? 0)/\(s.epochSize ?? 0) | "
            + losses.joined(separator: " ") + " | " + String(format: "%.2f it/s", s.itersPerSecond ?? 0) + eta
    }

    static func describe(_ s: TrainingJobStatus) -> String {
        guard s.state != .idle else { return "no fine-tune job" }
        var lines = ["fine-tune \(s.id ?? "?") of \(s.model ?? "?"): \(s.state.rawValue)"]
        if let i = s.iterations {
            lines.append("iteration \(i)\(s.plannedIterations.map { " of \($0)" } ?? ""), \(progressLine(s))")
        }
        if let v = s.servedVersion { lines.append("serving version \(v)") }
        if let skipped = s.skipped, skipped > 0 {
            lines.append("\(skipped) training image\(skipped == 1 ? "" : "s") skipped as unreadable")
        }
        if let m = s.message { lines.append(m) }
        return lines.joined(separator: "\n")
    }
}

extension TrainingJobStatus.State {
    var ended: Bool { self == .done || self == .failed }
}
