import Control
import Daemon
import Foundation
import Logging
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Who may connect, with which socket mode, and which paths a peer may name.
@Suite struct SecurityTests {
    @Test func socketIsOwnerOnly() throws {
        let daemon = try DaemonProcess()
        var info = stat()
        #expect(lstat(daemon.socketPath, &info) == 0)
        #expect(info.st_mode & S_IFMT == S_IFSOCK)
        #expect(info.st_mode & 0o7777 == 0o600)
        #expect(info.st_uid == geteuid())
    }

    @Test(.enabled(if: geteuid() == 0, "needs root to run a client as nobody"))
    func otherUserIsRefused() throws {
        let daemon = try DaemonProcess()
        let binary = try #require(cyclegandBinary)
        let asNobody = ["-u", "nobody", "--", binary, "ctl", "ping", "--json", "--socket", daemon.socketPath]

        // The socket's folder and mode keep nobody out at connect().
        let denied = try runProcess("/usr/sbin/runuser", asNobody)
        #expect(denied.status == 69, "\(denied.error)")

        // Even with the file system opened up, SO_PEERCRED refuses the peer.
        chmod(daemon.folder.path, 0o755)
        chmod(daemon.socketPath, 0o666)
        let refused = try runProcess("/usr/sbin/runuser", asNobody)
        #expect(refused.status == 3, "\(refused.error)")
        #expect(refused.output.contains(#""code":"forbidden""#))
        #expect(try daemon.client().call("ping").ok, "the owner is still served")
    }

    @Test(.enabled(if: geteuid() == 0, "needs root to run a client as nobody"))
    func pathsAreCheckedAgainstThePeer() throws {
        let daemon = try DaemonProcess(config: "socket_group = \"nogroup\"\n", socketFolderMode: 0o755)
        let binary = try #require(cyclegandBinary)
        var info = stat()
        lstat(daemon.socketPath, &info)
        #expect(info.st_mode & 0o7777 == 0o660)
        #expect(info.st_gid == 65534)

        let files = TempDir("peer", mode: 0o755)
        let readable = try testPNG(width: 16, height: 16, in: files, name: "readable.png")
        chmod(readable, 0o644)
        let secret = try testPNG(width: 16, height: 16, in: files, name: "secret.png")
        chmod(secret, 0o600)
        let closed = TempDir("closed", mode: 0o700)
        let hidden = try testPNG(width: 16, height: 16, in: closed, name: "hidden.png")
        chmod(hidden, 0o644)
        let mine = TempDir("nobody", mode: 0o755)
        chown(mine.path, 65534, 65534)
        symlink(secret, mine.file("link.png"))
        lchown(mine.file("link.png"), 65534, 65534)

        func translate(_ input: String, _ output: String) throws -> (status: Int32, output: String) {
            let result = try runProcess(
                "/usr/sbin/runuser",
                [
                    "-u", "nobody", "--", binary, "ctl", "translate", input, output, "--direction", tinyDirection,
                    "--json", "--socket", daemon.socketPath,
                ])
            return (result.status, result.output)
        }
        let forbidden = #""code":"forbidden""#
        // Served through the group; a readable input into the peer's own folder works, and
        // the file is the peer's.
        let allowed = try translate(readable, mine.file("ok.png"))
        #expect(allowed.status == 0, "\(allowed.output)")
        lstat(mine.file("ok.png"), &info)
        #expect(info.st_uid == 65534)

        let unreadable = try translate(secret, mine.file("a.png"))
        #expect(unreadable.status == 3 && unreadable.output.contains(forbidden))
        let unreachable = try translate(hidden, mine.file("b.png"))
        #expect(unreachable.status == 3 && unreachable.output.contains(forbidden))
        let throughLink = try translate(mine.file("link.png"), mine.file("c.png"))
        #expect(throughLink.status == 3 && throughLink.output.contains(forbidden))
        let notWritable = try translate(readable, files.file("d.png"))
        #expect(notWritable.status == 3 && notWritable.output.contains(forbidden))
        for name in ["a.png", "b.png", "c.png"] {
            #expect(!FileManager.default.fileExists(atPath: mine.file(name)))
        }
        #expect(!FileManager.default.fileExists(atPath: files.file("d.png")))
    }

    // The socket file's set-up, with a stand-in for the daemon behind it.

    @Test func staleSocketIsReplaced() async throws {
        let folder = TempDir("stale", mode: 0o700)
        let path = folder.file("s.sock")
        // A socket file nobody listens on, as a crashed daemon leaves it.
        let stale = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        try bindSocket(stale, path)
        close(stale)

        let server = try await ControlServer.start(
            control: StandInDaemon(), options: ControlServerOptions(socketPath: path), logger: quiet)
        #expect(try await onThread { try ControlClient(socketPath: path).call("ping").ok })
        await server.stop()
        #expect(!FileManager.default.fileExists(atPath: path))
    }

    @Test func liveSocketIsNeverTakenOver() async throws {
        let folder = TempDir("live", mode: 0o700)
        let path = folder.file("s.sock")
        let first = try await ControlServer.start(
            control: StandInDaemon(), options: ControlServerOptions(socketPath: path), logger: quiet)
        await #expect(throws: ControlSetupError.self) {
            _ = try await ControlServer.start(
                control: StandInDaemon(), options: ControlServerOptions(socketPath: path), logger: quiet)
        }
        #expect(
            try await onThread { try ControlClient(socketPath: path).call("ping").ok },
            "the first server still owns the socket")
        await first.stop()

        // Another program listening there (without our lock) is not displaced either.
        let other = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(other) }
        try bindSocket(other, path)
        listen(other, 1)
        await #expect(throws: ControlSetupError.self) {
            _ = try await ControlServer.start(
                control: StandInDaemon(), options: ControlServerOptions(socketPath: path), logger: quiet)
        }
    }

    @Test func unsafePlacesAreRefused() async throws {
        let open = TempDir("open", mode: 0o777)
        await #expect(throws: ControlSetupError.self) {
            _ = try await ControlServer.start(
                control: StandInDaemon(), options: ControlServerOptions(socketPath: open.file("s.sock")), logger: quiet)
        }
        #expect(!FileManager.default.fileExists(atPath: open.file("s.sock")))

        let folder = TempDir("file", mode: 0o700)
        let path = folder.file("s.sock")
        try Data("keep me".utf8).write(to: URL(fileURLWithPath: path))
        await #expect(throws: ControlSetupError.self) {
            _ = try await ControlServer.start(
                control: StandInDaemon(), options: ControlServerOptions(socketPath: path), logger: quiet)
        }
        #expect(FileManager.default.contents(atPath: path) == Data("keep me".utf8))
    }
}

private let quiet = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }

private func bindSocket(_ descriptor: CInt, _ path: String) throws {
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
    let result = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
        }
    }
    try #require(result == 0)
}

/// Answers the socket set-up tests' pings; no images, no models.
struct StandInDaemon: DaemonControl {
    func status() async -> DaemonStatus {
        DaemonStatus(
            version: "test", pid: getpid(), uptimeSeconds: 0, root: "/", queues: [:], interactiveQueue: 0, current: [],
            workers: 1,
            training: .idle, memory: MemoryUse(residentBytes: 0, peakResidentBytes: 0, limitBytes: 0), processed: 0,
            failed: 0,
            stopping: false)
    }
    func models() async -> [ModelInfo] { [] }
    func directions() async -> [DirectionInfo] { [] }
    func translate(_ request: TranslateRequest) async throws -> TranslateReply {
        throw DaemonError(.notFound, "no models")
    }
    func jobs() async -> [JobInfo] { [] }
    func cancel(id: String) async -> CancelReply { CancelReply(id: id, outcome: .notFound) }
    func reload() async throws -> ReloadReply { ReloadReply(directions: [], added: [], removed: []) }
    func shutdown() async {}
    func events() -> AsyncStream<DaemonEvent> { AsyncStream { $0.finish() } }
}
