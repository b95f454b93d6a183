import ArgumentParser
import Control
import Daemon
import FileOutput
import Foundation

/// `cyclegand ctl`: talks to a running daemon over its control socket (docs/PROTOCOL.md).
struct CtlCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ctl",
        abstract: "Talk to a running daemon over its control socket.",
        discussion: """
            Every subcommand connects to the daemon's socket ($XDG_RUNTIME_DIR/cyclegand.sock unless \
            --socket or $CYCLEGAND_SOCKET says otherwise), prints a readable answer, or the raw JSON \
            reply with --json (see docs/PROTOCOL.md).

            Exit codes: 0 done; 1 the daemon answered with an error; 2 not found (direction, job, \
            file); 3 forbidden (permissions); 4 busy, retry later; 64 bad usage; 69 no daemon to \
            talk to; 70 the daemon broke the protocol.

            Examples:
              cyclegand ctl ping
              cyclegand ctl translate cat.jpg cat-vintage.jpg --direction modern2vintage
              cyclegand ctl subscribe --json | jq .
              cyclegand ctl finetune modern2vintage --dataroot ~/photos --max_iters 2000 --follow
            """,
        subcommands: [
            Ping.self, Status.self, Models.self, Directions.self, Translate.self, Jobs.self, Cancel.self,
            Subscribe.self, Reload.self, Shutdown.self, Finetune.self, Training.self, Rollback.self,
        ]
    )
}

extension CtlCommand {
    struct Ping: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Check that the daemon answers, and how fast.")
        @OptionGroup var options: CtlOptions

        func run() throws {
            try runCtl {
                let started = Date()
                let reply = try options.call("ping")
                if options.printRaw(reply) { return }
                print(
                    String(
                        format: "pong from %@ in %.2f ms", options.socketPath, Date().timeIntervalSince(started) * 1000)
                )
            }
        }
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show uptime, queues, the current jobs, training and memory.")
        @OptionGroup var options: CtlOptions

        func run() throws {
            try runCtl {
                let reply = try options.call("status")
                if options.printRaw(reply) { return }
                let s = try reply.decode(DaemonStatus.self, field: "status")
                var lines = [
                    "cyclegand \(s.version) (pid \(s.pid)), up \(humanDuration(s.uptimeSeconds))\(s.stopping ? ", stopping" : "")",
                    "spool       \(s.root)",
                    "images      \(s.processed) done, \(s.failed) failed; \(s.workers) worker(s)",
                    "memory      \(humanBytes(s.memory.residentBytes)) resident (peak \(humanBytes(s.memory.peakResidentBytes))), per-image limit \(s.memory.limitBytes == 0 ? "none" : humanBytes(s.memory.limitBytes))",
                    "training    "
                        + TrainingFollower.describe(s.training).replacingOccurrences(of: "\n", with: "\n            "),
                    "interactive \(s.interactiveQueue) waiting",
                    "",
                    table(
                        ["DIRECTION", "WAITING"], s.queues.sorted { $0.key < $1.key }.map { [$0.key, "\($0.value)"] }),
                ]
                if !s.current.isEmpty {
                    lines += [
                        "",
                        table(
                            ["RUNNING", "KIND", "DIRECTION", "INPUT"],
                            s.current.map { [$0.id, $0.kind.rawValue, $0.direction, $0.input] }),
                    ]
                }
                print(lines.joined(separator: "\n"))
            }
        }
    }

    struct Models: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the models the daemon has loaded.")
        @OptionGroup var options: CtlOptions

        func run() throws {
            try options.list(
                "models", field: "models", as: ModelInfo.self,
                empty: "no models; import one with `cyclegand import` into the daemon's models folder",
                headers: ["MODEL", "VERSION", "DIRECTIONS", "PATH"]
            ) { [$0.name, $0.version.map(String.init) ?? "-", $0.directions.joined(separator: ", "), $0.path] }
        }
    }

    struct Directions: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the directions (inbox names) the daemon offers.")
        @OptionGroup var options: CtlOptions

        func run() throws {
            try options.list(
                "directions", field: "directions", as: DirectionInfo.self,
                headers: ["DIRECTION", "MODEL", "FROM", "TO"]
            ) { [$0.name, $0.model, $0.from ?? "-", $0.to ?? "-"] }
        }
    }

    struct Translate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Translate one image now, ahead of the watch folders.",
            discussion: """
                The daemon reads INPUT and writes OUTPUT itself, with your permissions checked: INPUT \
                must be readable by you, OUTPUT must not exist and its folder must be writable by you. \
                With --inline the image travels through the socket instead (for a daemon that cannot \
                see your files, e.g. in a container).
                """
        )
        @OptionGroup var options: CtlOptions
        @Argument(help: "The image to translate.") var input: String
        @Argument(help: "Where to write the result (a new file; its extension picks the format).") var output: String
        @Option(help: "The direction, e.g. modern2vintage (`cyclegand ctl directions` lists them).") var direction:
            String
        @Option(help: "Output format: same, jpeg, png, webp, tiff (default: OUTPUT's extension).") var format: String?
        @Option(help: "Quality 1-100 for JPEG and WebP.") var quality: Int?
        @Option(help: "Per-image memory budget in bytes (large images go in bands under it).") var memoryLimit: UInt64?
        @Flag(help: "Replace OUTPUT if it exists.") var overwrite = false
        @Flag(help: "Send the image through the socket and write OUTPUT here, not in the daemon.") var inline = false

        func run() throws {
            try runCtl {
                let cwd = FileManager.default.currentDirectoryPath
                let inputPath = input.hasPrefix("/") ? input : cwd + "/" + input
                let outputPath = output.hasPrefix("/") ? output : cwd + "/" + output
                var fields: [String: JSONValue] = ["direction": .string(direction)]
                if let format { fields["format"] = .string(format) }
                if let quality { fields["quality"] = .number(Double(quality)) }
                if let memoryLimit { fields["memory_limit"] = .number(Double(memoryLimit)) }
                var payload: Data?
                if inline {
                    if !overwrite, FileManager.default.fileExists(atPath: outputPath) {
                        throw CtlFailure(
                            code: 1, message: "\(outputPath) already exists; choose a new name or pass --overwrite")
                    }
                    guard let bytes = FileManager.default.contents(atPath: inputPath) else {
                        throw CtlFailure(code: 2, message: "cannot read \(inputPath)")
                    }
                    payload = bytes
                    fields["name"] = .string((inputPath as NSString).lastPathComponent)
                    if format == nil, let byName = (outputPath as NSString).pathExtension.nonEmpty {
                        // An extension that names no format goes as it is: the daemon says so.
                        fields["format"] = .string(OutputFormat(fileExtension: byName)?.rawValue ?? byName.lowercased())
                    }
                } else {
                    fields["input"] = .string(inputPath)
                    fields["output"] = .string(outputPath)
                    if overwrite { fields["overwrite"] = .bool(true) }
                }
                // A live line on a terminal; a pipe or a log gets the one line it always got.
                let bar = TerminalProgress(label: "translating \(input) (\(direction))", enabled: !options.json)
                if bar.isTerminal {
                    fields["progress"] = .bool(true)
                    bar.show(0)
                } else if !options.json {
                    FileHandle.standardError.write(Data("translating \(input) (\(direction)) …\n".utf8))
                }
                let reply: ControlReply
                do {
                    defer { bar.end() }
                    reply = try options.call("translate", fields, payload: payload) { line in
                        bar.show(line.json["progress"]?.number ?? 0)
                    }
                }
                if inline, let bytes = reply.payload {
                    guard FileManager.default.createFile(atPath: outputPath, contents: bytes) else {
                        throw CtlFailure(code: 1, message: "cannot write \(outputPath)")
                    }
                }
                if options.printRaw(reply) { return }
                let width = Int(reply.json["width"]?.number ?? 0)
                let height = Int(reply.json["height"]?.number ?? 0)
                let ms = reply.json["ms"]?.number ?? 0
                print(
                    "\(outputPath): \(width)×\(height), \(String(format: "%.0f", ms)) ms (job \(reply.json["job"]?.string ?? "?"))"
                )
            }
        }
    }

    struct Jobs: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List queued and running jobs, in the order they will run.")
        @OptionGroup var options: CtlOptions

        func run() throws {
            try options.list(
                "jobs", field: "jobs", as: JobInfo.self, empty: "no jobs",
                headers: ["JOB", "KIND", "STATE", "DIRECTION", "INPUT"]
            ) { [$0.id, $0.kind.rawValue, $0.state.rawValue, $0.direction, $0.input] }
        }
    }

    struct Cancel: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Cancel a job: a queued one leaves the queue, a running one publishes nothing.")
        @OptionGroup var options: CtlOptions
        @Argument(help: "The job id, as `cyclegand ctl jobs` shows it.") var job: String

        func run() throws {
            try runCtl {
                let reply = try options.call("cancel", ["job": .string(job)])
                if options.printRaw(reply) { return }
                print("\(job): \(reply.json["outcome"]?.string ?? "?")")
            }
        }
    }

    struct Subscribe: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Follow the daemon's events (images done or failed, training) until interrupted.")
        @OptionGroup var options: CtlOptions

        func run() throws {
            try runCtl {
                let client = try options.connect()
                do {
                    try options.check(try client.call("subscribe"))
                    if !options.json {
                        FileHandle.standardError.write(Data("following \(options.socketPath); Ctrl-C to stop\n".utf8))
                    }
                    while true {
                        let event = try client.readReply()
                        // One line per event, flushed at once (stdout may be a pipe).
                        printLine(options.json ? event.line : Data(Self.describe(event.json).utf8))
                    }
                } catch let failure as CtlFailure {
                    throw failure
                } catch {
                    throw CtlFailure(code: 70, message: "\(error)")
                }
            }
        }

        static func describe(_ event: JSONValue) -> String {
            let time = (event["time"]?.string ?? "").split(separator: "T").last.map { String($0.prefix(8)) } ?? ""
            let kind = event["event"]?.string ?? "?"
            let direction = event["direction"]?.string ?? ""
            let input = event["input"]?.string ?? ""
            switch kind {
            case "image_done":
                let size = "\(Int(event["width"]?.number ?? 0))×\(Int(event["height"]?.number ?? 0))"
                let ms = String(format: "%.0f ms", event["ms"]?.number ?? 0)
                return "\(time)  done    \(direction)  \(input)  \(size)  \(ms)  → \(event["output"]?.string ?? "")"
            case "image_failed":
                let error = event["error"]
                return
                    "\(time)  failed  \(direction)  \(input)  \(error?["code"]?.string ?? ""): \(error?["message"]?.string ?? "")"
            case "training_progress", "training_done", "model_published":
                let t = event["training"]
                let what =
                    kind == "model_published"
                    ? "published version \(Int(t?["published_version"]?.number ?? 0))"
                    : "\(t?["state"]?.string ?? "")  epoch \(Int(t?["epoch"]?.number ?? 0))  iteration \(Int(t?["iterations"]?.number ?? 0))"
                return "\(time)  training  \(t?["model"]?.string ?? "")  \(what)"
            case "directions_changed":
                let names =
                    event["directions"].flatMap { value -> [String]? in
                        if case .array(let items) = value { return items.compactMap(\.string) } else { return nil }
                    } ?? []
                return "\(time)  directions now: \(names.joined(separator: ", "))"
            default:
                return "\(time)  \(kind)"
            }
        }
    }

    struct Reload: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Re-read the configuration and rescan the models folder (like SIGHUP).")
        @OptionGroup var options: CtlOptions

        func run() throws {
            try runCtl {
                let reply = try options.call("reload")
                if options.printRaw(reply) { return }
                let result = try reply.decode(ReloadReply.self)
                print("directions: \(result.directions.joined(separator: ", "))")
                if !result.added.isEmpty { print("added: \(result.added.joined(separator: ", "))") }
                if !result.removed.isEmpty { print("removed: \(result.removed.joined(separator: ", "))") }
            }
        }
    }

    struct Shutdown: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Stop the daemon (it finishes or requeues the current image).")
        @OptionGroup var options: CtlOptions

        func run() throws {
            try runCtl {
                let reply = try options.call("shutdown")
                if options.printRaw(reply) { return }
                print("the daemon is stopping")
            }
        }
    }
}
