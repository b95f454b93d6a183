import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Why the control socket could not be set up, in words that say what to do.
public struct ControlSetupError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The control socket's file, created so that it is never reachable with a wider mode than asked
/// for: bound under a temporary name, given its mode (and group), then renamed into place. A lock
/// file beside it makes a second daemon on the same path refuse to start, and lets a socket left
/// by a crashed daemon be replaced.
final class ListeningSocket: @unchecked Sendable {
    let path: String
    /// The bound socket, handed to NIO (which listens on it and closes it).
    let descriptor: CInt
    private let lockDescriptor: CInt
    private let inode: ino_t

    /// Creates the socket file at `path`, mode 0600 (0660 with `group`).
    init(path: String, group: gid_t?) throws {
        guard path.hasPrefix("/") else {
            throw ControlSetupError("socket path '\(path)' must be absolute")
        }
        let maxPath = MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1
        let directory = (path as NSString).deletingLastPathComponent
        let temporary = directory + "/.cyclegand.\(getpid()).sock.tmp"
        guard temporary.utf8.count <= maxPath, path.utf8.count <= maxPath else {
            throw ControlSetupError(
                "socket path '\(path)' is too long for a Unix socket (at most \(maxPath - 24) bytes here); choose a shorter --socket"
            )
        }
        try Self.checkDirectory(directory)
        self.path = path

        lockDescriptor = try Self.lock(path + ".lock", socketPath: path)
        do {
            try Self.checkExisting(path)
            descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard descriptor >= 0 else { throw ControlSetupError("cannot create a Unix socket: \(Self.errnoText())") }
        } catch {
            close(lockDescriptor)
            throw error
        }
        do {
            unlink(temporary)
            try Self.bind(descriptor, to: temporary)
            if let group, chown(temporary, uid_t.max, group) != 0 {
                let reason = Self.errnoText()
                unlink(temporary)
                throw ControlSetupError(
                    "cannot give the socket to group \(group): \(reason); the daemon's user must be a member of it")
            }
            guard chmod(temporary, group == nil ? 0o600 : 0o660) == 0 else {
                let reason = Self.errnoText()
                unlink(temporary)
                throw ControlSetupError("cannot set the mode of \(temporary): \(reason)")
            }
            guard rename(temporary, path) == 0 else {
                let reason = Self.errnoText()
                unlink(temporary)
                throw ControlSetupError("cannot move the socket into place at \(path): \(reason)")
            }
            var info = stat()
            lstat(path, &info)
            inode = info.st_ino
        } catch {
            close(descriptor)
            close(lockDescriptor)
            throw error
        }
    }

    /// Removes the socket file (if it is still ours) and releases the lock. NIO closes the socket.
    func remove() {
        var info = stat()
        if lstat(path, &info) == 0, info.st_ino == inode { unlink(path) }
        close(lockDescriptor)
    }

    /// The directory must be owned by the daemon's user (or root) and not writable by others, so
    /// nobody else can swap the socket for their own. A missing last component is created 0700.
    static func checkDirectory(_ directory: String) throws {
        var info = stat()
        if lstat(directory, &info) != 0 {
            guard errno == ENOENT, mkdir(directory, 0o700) == 0 || errno == EEXIST, lstat(directory, &info) == 0 else {
                throw ControlSetupError(
                    "socket directory \(directory) does not exist and cannot be created: \(errnoText()); create it (mode 0700) or choose another --socket"
                )
            }
        }
        guard (info.st_mode & S_IFMT) == S_IFDIR else {
            throw ControlSetupError(
                "socket directory \(directory) is not a directory (a symbolic link is not accepted)")
        }
        guard info.st_uid == geteuid() || info.st_uid == 0 else {
            throw ControlSetupError(
                "socket directory \(directory) belongs to uid \(info.st_uid), not to the daemon's user (uid \(geteuid())); use a directory of your own such as $XDG_RUNTIME_DIR"
            )
        }
        guard info.st_mode & 0o022 == 0 else {
            throw ControlSetupError(
                "socket directory \(directory) is writable by group or others (mode \(String(info.st_mode & 0o7777, radix: 8))), so another user could replace the socket; use `chmod go-w \(directory)` or another directory such as $XDG_RUNTIME_DIR"
            )
        }
    }

    private static func lock(_ lockPath: String, socketPath: String) throws -> CInt {
        let descriptor = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard descriptor >= 0 else {
            throw ControlSetupError("cannot open the lock file \(lockPath): \(errnoText())")
        }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            let holder =
                (try? String(contentsOfFile: lockPath, encoding: .utf8))?.trimmingCharacters(
                    in: .whitespacesAndNewlines) ?? ""
            close(descriptor)
            throw ControlSetupError(
                "another cyclegand daemon\(holder.isEmpty ? "" : " (pid \(holder))") is already serving \(socketPath); stop it first or choose another --socket"
            )
        }
        let pid = Array("\(getpid())\n".utf8)
        _ = ftruncate(descriptor, 0)
        _ = pid.withUnsafeBytes { pwrite(descriptor, $0.baseAddress, $0.count, 0) }
        return descriptor
    }

    /// A live socket (someone accepts connections) is never taken over, even without our lock;
    /// anything that is not a socket is never deleted.
    private static func checkExisting(_ path: String) throws {
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        guard (info.st_mode & S_IFMT) == S_IFSOCK else {
            throw ControlSetupError("\(path) exists and is not a socket; remove it or choose another --socket")
        }
        let probe = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        defer { close(probe) }
        if (try? connect(probe, to: path)) != nil {
            throw ControlSetupError("another process is listening on \(path); stop it first or choose another --socket")
        }
    }

    private static func withAddress<R>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.initializeMemory(as: UInt8.self, repeating: 0)
            raw.copyBytes(from: Array(path.utf8))
        }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
    }

    private static func bind(_ descriptor: CInt, to path: String) throws {
        guard withAddress(path, { Glibc.bind(descriptor, $0, $1) }) == 0 else {
            throw ControlSetupError("cannot bind the control socket at \(path): \(errnoText())")
        }
    }

    static func connect(_ descriptor: CInt, to path: String) throws {
        guard withAddress(path, { Glibc.connect(descriptor, $0, $1) }) == 0 else {
            throw ControlSetupError("cannot connect to \(path): \(errnoText())")
        }
    }

    static func errnoText(_ code: Int32 = errno) -> String {
        String(cString: strerror(code))
    }
}
