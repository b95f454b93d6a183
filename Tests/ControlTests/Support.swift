import Control
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The repository root, from this file's path.
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().path

/// The `cyclegand` executable under test: $CYCLEGAND_BIN, else the one built beside this test
/// bundle (`swift test` builds it into the same products folder), else the newest under .build*.
let cyclegandBinary: String? = {
    let fm = FileManager.default
    if let path = ProcessInfo.processInfo.environment["CYCLEGAND_BIN"], fm.isExecutableFile(atPath: path) {
        return path
    }
    let beside = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent(
        "cyclegand"
    ).path
    if fm.isExecutableFile(atPath: beside) { return beside }
    let candidates = ((try? fm.contentsOfDirectory(atPath: repositoryRoot)) ?? []).filter { $0.hasPrefix(".build") }
        .flatMap { build in ["debug", "release"].map { "\(repositoryRoot)/\(build)/\($0)/cyclegand" } }
        .filter { fm.isExecutableFile(atPath: $0) }
    return candidates.max { modified($0) < modified($1) }
}()

private func modified(_ path: String) -> Date {
    ((try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date) ?? .distantPast
}

/// A folder under /tmp, mode 0755 unless asked otherwise, removed with the value.
final class TempDir: @unchecked Sendable {
    let path: String

    init(_ label: String, mode: mode_t = 0o755) {
        path = "/tmp/cgc-\(label)-\(UUID().uuidString.prefix(6))"
        mkdir(path, mode)
        chmod(path, mode)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func file(_ name: String) -> String { path + "/" + name }
}

/// Runs a process to its end; returns its exit status and standard output.
@discardableResult
func runProcess(_ executable: String, _ arguments: [String], input: Data? = nil) throws -> (
    status: Int32, output: String, error: String
) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    let stdin = Pipe()
    process.standardInput = stdin
    try process.run()
    if let input { stdin.fileHandleForWriting.write(input) }
    try stdin.fileHandleForWriting.close()
    let output = out.fileHandleForReading.readDataToEndOfFile()
    let error = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: output, as: UTF8.self), String(decoding: error, as: UTF8.self))
}

/// Imports a tiny random generator (ngf 8, two blocks: milliseconds per image) into `dir` with
/// `cyclegand import`; it offers the direction `photo2test`.
func importTinyModel(into dir: String) throws {
    let binary = try #require(cyclegandBinary, "no cyclegand binary: build it or set CYCLEGAND_BIN")
    let generator = repositoryRoot + "/Tests/Fixtures/generators/reference_generator.pth"
    let result = try runProcess(
        binary, ["import", generator, "--name", "tiny", "--domains", "photo,test", "--as", "G_A", "--models-dir", dir])
    try #require(result.status == 0, "cyclegand import of the tiny test model failed: \(result.error)")
}

let tinyDirection = "photo2test"

/// The real daemon in its own process, with a spool, the tiny model and a socket in a private
/// folder; stopped (SIGTERM) when the value goes away.
final class DaemonProcess: @unchecked Sendable {
    let folder: TempDir
    let socketPath: String
    let modelsPath: String
    private(set) var process = Process()
    private let log: String
    private let configFile: String
    private let user: String?

    /// - Parameters:
    ///   - config: extra TOML lines for the configuration file.
    ///   - models: fills the models folder (default: the tiny model).
    ///   - user: run the daemon as this user (its folders are given to it), not as the test's.
    init(
        config: String = "", socketFolderMode: mode_t = 0o700,
        models: (String) throws -> Void = { try importTinyModel(into: $0) }, user: String? = nil
    ) throws {
        folder = TempDir("daemon", mode: socketFolderMode)
        modelsPath = folder.file("models")
        self.user = user
        try models(modelsPath)
        socketPath = folder.file("cyclegand.sock")
        log = folder.file("daemon.log")
        configFile = folder.file("cyclegand.toml")
        try Data(config.utf8).write(to: URL(fileURLWithPath: configFile))
        FileManager.default.createFile(atPath: log, contents: nil)
        if let user { try runProcess("/bin/chown", ["-R", "\(user):", folder.path]) }
        try launch()
    }

    /// Starts the daemon on the same folders again, after `process` has ended.
    func relaunch() throws {
        process = Process()
        try launch()
    }

    private func launch() throws {
        let binary = try #require(cyclegandBinary, "no cyclegand binary: build it or set CYCLEGAND_BIN")
        process.executableURL = URL(fileURLWithPath: user == nil ? binary : "/usr/bin/setpriv")
        let setpriv =
            user.map { name in
                [
                    "--reuid=\(name)", "--regid=\(getpwnam(name).map { $0.pointee.pw_gid } ?? 65534)", "--init-groups",
                    binary,
                ]
            } ?? []
        process.arguments =
            setpriv + [
                "serve", "--config", configFile, "--root", folder.file("spool"), "--models-dir", modelsPath, "--socket",
                socketPath,
                "--log-level", "warning", "--threads", "1",
            ]
        let output = FileHandle(forWritingAtPath: log)
        output?.seekToEndOfFile()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let deadline = Date().addingTimeInterval(30)
        while (try? ControlClient(socketPath: socketPath)) == nil {
            guard process.isRunning, Date() < deadline else {
                throw ControlSetupError("the daemon did not open its socket; its log:\n\(logText)")
            }
            usleep(20_000)
        }
    }

    deinit {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }

    var logText: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

    func client() throws -> ControlClient { try ControlClient(socketPath: socketPath) }

    /// Resident memory of the daemon process, from /proc.
    var residentBytes: Int { statusKilobytes("VmRSS:") * 1024 }

    /// The most resident memory the daemon process has had, from /proc.
    var peakResidentBytes: Int { statusKilobytes("VmHWM:") * 1024 }

    private func statusKilobytes(_ key: String) -> Int {
        let status = (try? String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix(key) } ?? ""
        return Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
    }
}

/// A PNG of the given size with varied pixels, made by libvips' command-line tool.
func testPNG(width: Int, height: Int, in folder: TempDir, name: String? = nil) throws -> String {
    let path = folder.file(name ?? "in-\(width)x\(height).png")
    let source = repositoryRoot + "/examples/images/chelsea.png"
    let result = try runProcess("/usr/bin/vips", ["crop", source, path, "0", "0", "\(width)", "\(height)"])
    try #require(result.status == 0, "vips crop failed: \(result.error)")
    return path
}

/// Width and height of a PNG, from its IHDR chunk.
func pngSize(_ data: Data) -> (width: Int, height: Int)? {
    guard data.count >= 24, data.prefix(8) == Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) else { return nil }
    func be32(_ offset: Int) -> Int { data[offset..<offset + 4].reduce(0) { $0 << 8 | Int($1) } }
    return (be32(16), be32(20))
}

/// Runs blocking client code on a thread of its own: the cooperative pool (two threads on a
/// two-core machine) must stay free for in-process servers, and concurrent clients must really
/// be concurrent.
func onThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread { continuation.resume(with: Result { try body() }) }
        thread.start()
    }
}
