import FileOutput
import Foundation
import Logging

/// What to do when the output name is already taken in the outbox.
public enum ConflictPolicy: String, Codable, Sendable, CaseIterable {
    /// `cat.jpg` → `cat (1).jpg`, `cat (2).jpg`, ...
    case rename
    /// Replace the existing file (atomically).
    case overwrite
}

/// The daemon's settings. Sources, later ones win: built-in defaults, the configuration file
/// (TOML subset, see docs/DAEMON.md and examples/cyclegand.toml), command-line flags.
public struct DaemonConfig: Sendable, Equatable {
    /// Spool root: inbox/, work/, outbox/, failed/, done/ live under it.
    public var root: String
    /// Folder of models (one sub-folder per model).
    public var modelsDir: String
    /// Memory budget in bytes of the images being translated: one image alone may use all of it
    /// (a larger one is translated in bands); images run side by side only while their sum fits.
    /// 0 = no limit.
    public var memoryLimit: UInt64
    /// Threads for the network per image; 0 = the cores shared out among the images running.
    public var threads: Int
    /// Most images translated at once; 0 = one per core.
    public var workers: Int
    /// Move originals to done/<direction>/ instead of deleting them.
    public var keepOriginals: Bool
    public var outputFormat: OutputFormat
    /// 1...100, for JPEG and WebP.
    public var quality: Int
    /// Images with more pixels than this fail with `too_large` before they are decoded.
    public var maxPixels: Int
    public var socket: String
    /// Group allowed on the socket (mode 0660) besides the daemon's own user; nil = owner only.
    public var socketGroup: String?
    public var logLevel: Logger.Level
    public var onConflict: ConflictPolicy
    /// Seconds a stopping daemon waits for the current image before leaving it in work/ for the
    /// next start.
    public var stopTimeout: Double

    public init(
        root: String, modelsDir: String, memoryLimit: UInt64 = 1 << 30, threads: Int = 0,
        workers: Int = 0, keepOriginals: Bool = false, outputFormat: OutputFormat = .same,
        quality: Int = 92, maxPixels: Int = 100_000_000, socket: String, socketGroup: String? = nil,
        logLevel: Logger.Level = .info, onConflict: ConflictPolicy = .rename, stopTimeout: Double = 30
    ) {
        self.root = root
        self.modelsDir = modelsDir
        self.memoryLimit = memoryLimit
        self.threads = threads
        self.workers = workers
        self.keepOriginals = keepOriginals
        self.outputFormat = outputFormat
        self.quality = quality
        self.maxPixels = maxPixels
        self.socket = socket
        self.socketGroup = socketGroup
        self.logLevel = logLevel
        self.onConflict = onConflict
        self.stopTimeout = stopTimeout
    }

    /// Defaults that follow where the daemon runs: systemd's StateDirectory/RuntimeDirectory
    /// when set (system unit), the XDG directories otherwise (user unit, terminal).
    public static func defaults(environment env: [String: String] = ProcessInfo.processInfo.environment)
        -> DaemonConfig
    {
        let home = env["HOME"] ?? NSHomeDirectory()
        let state: String
        if let dir = env["STATE_DIRECTORY"]?.split(separator: ":").first {
            state = String(dir)
        } else {
            state = (env["XDG_DATA_HOME"] ?? home + "/.local/share") + "/cyclegand"
        }
        let runtime: String
        if let dir = env["RUNTIME_DIRECTORY"]?.split(separator: ":").first {
            runtime = String(dir)
        } else if let xdg = env["XDG_RUNTIME_DIR"] {
            runtime = xdg
        } else {
            runtime = state
        }
        // CYCLEGAND_MODELS is the models folder every command honours (docs/MODELS.md).
        let models = env["CYCLEGAND_MODELS"].flatMap { $0.isEmpty ? nil : $0 } ?? state + "/models"
        return DaemonConfig(root: state + "/spool", modelsDir: models, socket: runtime + "/cyclegand.sock")
    }

    /// The default configuration file: $CONFIGURATION_DIRECTORY (systemd), else
    /// $XDG_CONFIG_HOME/cyclegand/cyclegand.toml. Used only when it exists.
    public static func defaultFile(environment env: [String: String] = ProcessInfo.processInfo.environment)
        -> String
    {
        if let dir = env["CONFIGURATION_DIRECTORY"]?.split(separator: ":").first {
            return String(dir) + "/cyclegand.toml"
        }
        let home = env["HOME"] ?? NSHomeDirectory()
        return (env["XDG_CONFIG_HOME"] ?? home + "/.config") + "/cyclegand/cyclegand.toml"
    }

    /// Applies the keys of a configuration file on top of `self`. Relative paths in the file are
    /// taken relative to the file's folder. Unknown keys are errors (a typo must not pass silently).
    public func applying(file path: String) throws(ConfigError) -> DaemonConfig {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigError(file: path, message: "cannot read it (\(error.localizedDescription))")
        }
        let values: [String: TOMLValue]
        do {
            values = try TOMLSubset.parse(text)
        } catch {
            throw ConfigError(file: path, message: error.description)
        }
        let base = (path as NSString).deletingLastPathComponent
        return try applying(values, relativeTo: base.isEmpty ? "." : base, source: path)
    }

    public func applying(_ values: [String: TOMLValue], relativeTo base: String, source: String)
        throws(ConfigError) -> DaemonConfig
    {
        var c = self
        for (key, value) in values.sorted(by: { $0.key < $1.key }) {
            let r = ConfigReader(key: key, value: value, source: source)
            switch key.replacingOccurrences(of: "-", with: "_") {
            case "root": c.root = Self.absolute(try r.string(), base: base)
            case "models_dir": c.modelsDir = Self.absolute(try r.string(), base: base)
            case "memory_limit": c.memoryLimit = try r.byteSize()
            case "threads": c.threads = try r.integer(in: 0...1024)
            case "workers": c.workers = try r.integer(in: 0...64)
            case "keep_originals": c.keepOriginals = try r.bool()
            case "output_format": c.outputFormat = try r.choice(OutputFormat.self)
            case "quality": c.quality = try r.integer(in: Quality.range)
            case "max_pixels": c.maxPixels = try r.integer(in: 1...Int(Int32.max) * 16)
            case "socket": c.socket = Self.absolute(try r.string(), base: base)
            case "socket_group":
                let group = try r.string()
                c.socketGroup = group.isEmpty ? nil : group
            case "log_level": c.logLevel = try r.choice(Logger.Level.self)
            case "on_conflict": c.onConflict = try r.choice(ConflictPolicy.self)
            case "stop_timeout": c.stopTimeout = try r.seconds()
            default:
                throw ConfigError(
                    file: source,
                    message: "unknown key `\(key)`; known keys: \(Self.keys.joined(separator: ", "))")
            }
        }
        return c
    }

    public static let keys = [
        "root", "models_dir", "memory_limit", "threads", "workers", "keep_originals", "output_format",
        "quality", "max_pixels", "socket", "socket_group", "log_level", "on_conflict", "stop_timeout",
    ]

    static func absolute(_ path: String, base: String) -> String {
        var p = path
        if p == "~" || p.hasPrefix("~/") {
            p = NSHomeDirectory() + p.dropFirst()
        }
        if p.hasPrefix("/") { return p }
        return URL(fileURLWithPath: base).appendingPathComponent(p).standardized.path
    }

    /// Parses sizes such as `2GiB`, `512 MiB`, `1500000000`, `3G` (powers of 1024 either way).
    public static func parseByteSize(_ text: String) -> UInt64? {
        let t = text.trimmingCharacters(in: .whitespaces).lowercased()
        let number = t.prefix(while: { $0.isNumber || $0 == "." })
        let unit = t.dropFirst(number.count).trimmingCharacters(in: .whitespaces)
        guard let value = Double(number), value >= 0 else { return nil }
        let multiplier: Double
        switch unit {
        case "", "b": multiplier = 1
        case "k", "kb", "kib": multiplier = 1024
        case "m", "mb", "mib": multiplier = 1024 * 1024
        case "g", "gb", "gib": multiplier = 1024 * 1024 * 1024
        case "t", "tb", "tib": multiplier = 1024 * 1024 * 1024 * 1024
        default: return nil
        }
        let bytes = value * multiplier
        guard bytes < Double(UInt64.max) else { return nil }
        return UInt64(bytes)
    }
}

public struct ConfigError: Error, CustomStringConvertible, Equatable {
    public var file: String
    public var message: String
    public init(file: String, message: String) {
        self.file = file
        self.message = message
    }
    public var description: String { "configuration \(file): \(message)" }
}

/// Reads one key's value with the type the key needs, and says what was expected when it doesn't fit.
private struct ConfigReader {
    var key: String
    var value: TOMLValue
    var source: String

    func fail(_ expected: String) -> ConfigError {
        ConfigError(file: source, message: "`\(key)` must be \(expected), not \(value.typeName)")
    }

    func string() throws(ConfigError) -> String {
        guard case .string(let s) = value else { throw fail("a string in quotes") }
        return s
    }

    func bool() throws(ConfigError) -> Bool {
        guard case .bool(let b) = value else { throw fail("true or false") }
        return b
    }

    func integer(in range: ClosedRange<Int>) throws(ConfigError) -> Int {
        guard case .integer(let i) = value, let n = Int(exactly: i), range.contains(n) else {
            throw fail("an integer in \(range.lowerBound)...\(range.upperBound)")
        }
        return n
    }

    func seconds() throws(ConfigError) -> Double {
        switch value {
        case .integer(let i) where i >= 0: return Double(i)
        case .float(let f) where f >= 0: return f
        default: throw fail("a number of seconds")
        }
    }

    func byteSize() throws(ConfigError) -> UInt64 {
        switch value {
        case .integer(let i) where i >= 0: return UInt64(i)
        case .string(let s):
            guard let bytes = DaemonConfig.parseByteSize(s) else {
                throw ConfigError(
                    file: source, message: "`\(key)` = \"\(s)\" is not a size; write e.g. \"2GiB\" or \"512MiB\"")
            }
            return bytes
        default: throw fail("a size such as \"2GiB\" or a number of bytes")
        }
    }

    func choice<T: RawRepresentable & CaseIterable>(_: T.Type) throws(ConfigError) -> T
    where T.RawValue == String {
        let names = T.allCases.map(\.rawValue)
        guard case .string(let s) = value, let v = T(rawValue: s) else {
            throw ConfigError(file: source, message: "`\(key)` must be one of \(names.joined(separator: ", "))")
        }
        return v
    }
}

extension DaemonConfig {
    /// `workers`, with 0 resolved to one per core.
    public var workerCount: Int {
        workers > 0 ? workers : max(1, ProcessInfo.processInfo.activeProcessorCount)
    }
}
