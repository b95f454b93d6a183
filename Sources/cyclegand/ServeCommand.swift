import ArgumentParser
import Control
import CycleGAN
import Daemon
import FileOutput
import FineTuning
import Foundation
import Imaging
import Logging
import Models
import Translation

#if canImport(Glibc)
    import Glibc
#endif

extension OutputFormat: ExpressibleByArgument {}
extension ConflictPolicy: ExpressibleByArgument {}

/// `cyclegand serve`: the daemon in the foreground (systemd runs exactly this).
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Watch inbox folders and the control socket; translate what arrives.",
        discussion: """
            Images dropped into ROOT/inbox/<direction>/ are translated into ROOT/outbox/<direction>/; \
            failures go to ROOT/failed/<direction>/ with NAME.error.json. Settings come from the \
            configuration file (see examples/cyclegand.toml), flags override them. SIGTERM/SIGINT stop \
            after the images being translated, SIGHUP reloads. See docs/DAEMON.md.
            """)

    @Option(
        help:
            "Configuration file (default: $CONFIGURATION_DIRECTORY or ~/.config/cyclegand/cyclegand.toml, if it exists)."
    )
    var config: String?
    @Option(help: "Spool root holding inbox/, work/, outbox/, failed/, done/.")
    var root: String?
    @Option(
        name: .customLong("models-dir"),
        help: "Folder of models (default: $CYCLEGAND_MODELS or ~/.local/share/cyclegand/models).")
    var modelsDir: String?
    @Option(help: "Control socket path.")
    var socket: String?
    @Option(
        name: .customLong("memory-limit"),
        help: "Memory the images being translated may use together, e.g. 1GiB (0 = no limit).")
    var memoryLimit: String?
    @Option(help: "Threads per image (0 = the cores shared out among the images running).")
    var threads: Int?
    @Option(help: "Most images translated at once (0 = one per core).")
    var workers: Int?
    @Flag(inversion: .prefixedNo, help: "Move originals to done/<direction>/ instead of deleting them.")
    var keepOriginals: Bool?
    @Option(help: "Output format: same, jpeg, png, webp or tiff.")
    var format: OutputFormat?
    @Option(help: "Quality 1...100 for jpeg and webp.")
    var quality: Int?
    @Option(name: .customLong("on-conflict"), help: "When the output name is taken: rename (cat (1).jpg) or overwrite.")
    var onConflict: ConflictPolicy?
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: String?
    @Flag(name: .customLong("no-socket"), help: "Do not open the control socket (watch folders only).")
    var noSocket = false

    func validate() throws {
        if let memoryLimit, DaemonConfig.parseByteSize(memoryLimit) == nil {
            throw ValidationError("--memory-limit \(memoryLimit) is not a size; write e.g. 1GiB or 512MiB")
        }
        if let problem = quality.flatMap(Quality.problem) { throw ValidationError("--\(problem)") }
        if let workers, workers < 0 { throw ValidationError("--workers must be 0 (one per core) or more") }
        if let threads, threads < 0 { throw ValidationError("--threads must be 0 (every core) or more") }
        if let logLevel, Logger.Level(rawValue: logLevel) == nil {
            throw ValidationError(
                "--log-level must be one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))")
        }
    }

    /// Defaults, then the file, then the flags; run again on every reload.
    func loadConfiguration() throws -> DaemonConfig {
        var c = DaemonConfig.defaults()
        let defaultFile = DaemonConfig.defaultFile()
        if let file = config ?? (FileManager.default.fileExists(atPath: defaultFile) ? defaultFile : nil) {
            c = try c.applying(file: file)
        }
        let cwd = FileManager.default.currentDirectoryPath
        if let root { c.root = Self.absolute(root, cwd) }
        if let modelsDir { c.modelsDir = Self.absolute(modelsDir, cwd) }
        if let socket { c.socket = Self.absolute(socket, cwd) }
        if let memoryLimit, let bytes = DaemonConfig.parseByteSize(memoryLimit) { c.memoryLimit = bytes }
        if let threads { c.threads = threads }
        if let workers { c.workers = workers }
        if let keepOriginals { c.keepOriginals = keepOriginals }
        if let format { c.outputFormat = format }
        if let quality { c.quality = quality }
        if let onConflict { c.onConflict = onConflict }
        if let logLevel, let level = Logger.Level(rawValue: logLevel) { c.logLevel = level }
        return c
    }

    static func absolute(_ path: String, _ cwd: String) -> String {
        path.hasPrefix("/") ? path : URL(fileURLWithPath: cwd).appendingPathComponent(path).standardized.path
    }

    func run() async throws {
        let configuration: DaemonConfig
        do {
            configuration = try loadConfiguration()
        } catch {
            // EX_CONFIG: the units' RestartPreventExitStatus= keeps systemd from retrying in a loop.
            Self.fail("\(error)", status: 78)
        }
        let level = configuration.logLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        var logger = Logger(label: "cyclegand")
        logger.logLevel = level

        let store = ModelStore(root: URL(fileURLWithPath: configuration.modelsDir))
        try? FileManager.default.createDirectory(atPath: configuration.modelsDir, withIntermediateDirectories: true)
        let command = self
        // Images and long jobs share the cores and the memory limit.
        let allotment = Allotment(cores: ProcessInfo.processInfo.activeProcessorCount)
        let daemon = Daemon(
            config: configuration, catalog: StoreCatalog(store: store),
            translator: GeneratorTranslator(
                store: store, threads: configuration.threads == 0 ? nil : configuration.threads, allotment: allotment),
            logger: logger, allotment: allotment, trainer: StoreTrainingEngine(store: store),
            reloadConfig: { try command.loadConfiguration() })
        do {
            try daemon.start()
        } catch {
            Self.fail("\(error)")
        }

        var server: ControlServer?
        if !noSocket {
            do {
                server = try await ControlServer.start(
                    control: daemon, options: try ControlServerOptions(config: configuration), logger: logger)
            } catch {
                // A second daemon on a live socket (or an unsafe socket folder) must not run on
                // silently; --no-socket is the explicit way to run without one.
                Self.fail("\(error) (pass --no-socket to run the watch folders without a control socket)")
            }
        }
        daemon.ready()
        let directions = await daemon.directions().map(\.name)
        let inbox = configuration.root + "/inbox"
        var lines = ["cyclegand \(Daemon.version) is running (Ctrl-C to stop)."]
        if directions.isEmpty {
            lines.append(
                "No model in \(configuration.modelsDir) yet: import one (cyclegand import ... --models-dir \(configuration.modelsDir)); its inbox appears without a restart."
            )
        }
        for direction in directions {
            lines.append(
                "Drop images into \(inbox)/\(direction)/  ->  results in \(configuration.root)/outbox/\(direction)/")
        }
        lines.append("Failures go to \(configuration.root)/failed/<direction>/ with NAME.error.json.")
        if let server { lines.append("Control socket: \(server.socketPath)") }
        // Unbuffered, so that it shows at once even when stdout is a pipe or the journal.
        FileHandle.standardOutput.write(Data((lines.joined(separator: "\n") + "\n").utf8))

        await daemon.waitForStop()
        await server?.stop()
    }

    static func fail(_ message: String, status: Int32 = 1) -> Never {
        FileHandle.standardError.write(Data("cyclegand serve: \(message)\n".utf8))
        Foundation.exit(status)
    }
}
