import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Linux's O_PATH (a descriptor that names a directory without opening it for reading), which
/// Glibc only declares under _GNU_SOURCE.
private let openPathOnly: Int32 = 0o10000000

/// Opens the files a request names as the peer would be allowed to, not as the daemon (which may
/// run as root): every directory on the real path must be searchable by the peer, the input
/// readable by it, the output's directory writable by it. The walk opens one component at a time
/// without following links, so a path swapped for a symbolic link between the check and the use
/// is refused instead of followed. Permission bits and the peer's groups decide; ACLs are not read.
struct PeerFileAccess {
    let peer: PeerCredentials

    /// The input's bytes, read through a descriptor opened on the peer's behalf.
    func readInput(_ path: String, limit: Int) throws(ControlError) -> Data {
        let real = try resolve(path, what: "input")
        let name = (real as NSString).lastPathComponent
        let parent = try walkDirectory((real as NSString).deletingLastPathComponent, original: path)
        defer { close(parent) }
        let descriptor = openat(parent, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        guard descriptor >= 0 else {
            throw errno == ENOENT
                ? ControlError(.notFound, "input \(path) does not exist")
                : ControlError(.forbidden, "cannot open input \(path): \(ListeningSocket.errnoText())")
        }
        defer { close(descriptor) }
        var info = stat()
        fstat(descriptor, &info)
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw ControlError(.badRequest, "input \(path) is not a regular file")
        }
        guard allows(info, read: true) else {
            throw ControlError(.forbidden, "input \(path) is not readable by uid \(peer.uid)")
        }
        guard info.st_size <= limit else {
            throw ControlError(
                .tooLarge, "input \(path) has \(info.st_size) bytes, over the daemon's limit of \(limit) bytes")
        }
        var data = Data(count: Int(info.st_size))
        let count = data.withUnsafeMutableBytes { raw -> Int in
            var done = 0
            while done < raw.count {
                let got = read(descriptor, raw.baseAddress! + done, raw.count - done)
                if got < 0, errno == EINTR { continue }
                if got <= 0 { break }
                done += got
            }
            return done
        }
        guard count == data.count else {
            throw ControlError(.internal, "input \(path) changed size or could not be read while reading it")
        }
        return data
    }

    /// The real path of a folder the peer may list and read, after the same walk as an input's.
    func readableFolder(_ path: String, what: String) throws(ControlError) -> String {
        let real = try resolve(path, what: what)
        var info = stat()
        guard stat(real, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR else {
            throw ControlError(.badRequest, "\(what) \(path) is not a folder")
        }
        let descriptor = try walkDirectory(real, original: path)
        defer { close(descriptor) }
        fstat(descriptor, &info)
        guard allows(info, read: true, execute: true) else {
            throw ControlError(.forbidden, "\(what) \(path) is not readable by uid \(peer.uid)")
        }
        return real
    }

    /// Where an output will be created, after the checks; `write` creates it.
    func prepareOutput(_ path: String, overwrite: Bool) throws(ControlError) -> OutputFile {
        guard path.hasPrefix("/") else {
            throw ControlError(.badRequest, "output path '\(path)' must be absolute")
        }
        let name = (path as NSString).lastPathComponent
        guard !name.isEmpty, name != ".", name != "..", !path.hasSuffix("/") else {
            throw ControlError(.badRequest, "output path '\(path)' must name a file")
        }
        let directory = try resolve((path as NSString).deletingLastPathComponent, what: "output directory")
        let descriptor = try walkDirectory(directory, original: path)
        var info = stat()
        fstat(descriptor, &info)
        guard allows(info, write: true, execute: true) else {
            close(descriptor)
            throw ControlError(.forbidden, "uid \(peer.uid) may not create files in \(directory)")
        }
        var existing = stat()
        if fstatat(descriptor, name, &existing, AT_SYMLINK_NOFOLLOW) == 0 {
            guard overwrite else {
                close(descriptor)
                throw ControlError(
                    .badRequest, "output \(path) already exists; choose a new name or set \"overwrite\": true")
            }
            guard (existing.st_mode & S_IFMT) == S_IFREG else {
                close(descriptor)
                throw ControlError(.badRequest, "output \(path) exists and is not a regular file; it is never replaced")
            }
        }
        return OutputFile(directory: descriptor, name: name, path: path, peer: peer, overwrite: overwrite)
    }

    private func resolve(_ path: String, what: String) throws(ControlError) -> String {
        guard path.hasPrefix("/") else {
            throw ControlError(
                .badRequest,
                "\(what) path '\(path)' must be absolute (the daemon does not know the client's working directory)")
        }
        guard let real = realpath(path, nil) else {
            throw errno == ENOENT || errno == ENOTDIR
                ? ControlError(.notFound, "\(what) \(path) does not exist")
                : ControlError(.forbidden, "cannot resolve \(what) \(path): \(ListeningSocket.errnoText())")
        }
        defer { free(real) }
        return String(cString: real)
    }

    /// Opens a resolved directory one component at a time, checking that the peer may search
    /// each; returns an O_PATH descriptor of it.
    private func walkDirectory(_ directory: String, original: String) throws(ControlError) -> CInt {
        var current = open("/", openPathOnly | O_DIRECTORY | O_CLOEXEC)
        for component in directory.split(separator: "/") {
            var info = stat()
            fstat(current, &info)
            guard allows(info, execute: true) else {
                close(current)
                throw ControlError(
                    .forbidden,
                    "uid \(peer.uid) may not reach \(original): a directory on its way is not searchable by it")
            }
            let next = openat(current, String(component), openPathOnly | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            close(current)
            guard next >= 0 else {
                throw ControlError(
                    .forbidden,
                    "\(original) changed while it was being checked (a directory became a link or vanished); refused")
            }
            current = next
        }
        var info = stat()
        fstat(current, &info)
        guard allows(info, execute: true) else {
            close(current)
            throw ControlError(
                .forbidden, "uid \(peer.uid) may not reach \(original): its directory is not searchable by it")
        }
        return current
    }

    /// The kernel's rule for permission bits: the owner class decides for the owner, the group
    /// class for members, the others class for everyone else; root passes.
    func allows(_ info: stat, read: Bool = false, write: Bool = false, execute: Bool = false) -> Bool {
        if peer.uid == 0 { return true }
        let shift: mode_t = info.st_uid == peer.uid ? 6 : peer.groups.contains(info.st_gid) ? 3 : 0
        let bits = (info.st_mode >> shift) & 0o7
        return (!read || bits & 0o4 != 0) && (!write || bits & 0o2 != 0) && (!execute || bits & 0o1 != 0)
    }
}

/// An output file that passed the checks: written under a temporary name in the checked
/// directory, synced, handed to the peer when the daemon is root, then linked into place (or
/// renamed over the old file when `overwrite` was asked for).
final class OutputFile: @unchecked Sendable {
    let path: String
    private let directory: CInt
    private let name: String
    private let peer: PeerCredentials
    private let overwrite: Bool

    init(directory: CInt, name: String, path: String, peer: PeerCredentials, overwrite: Bool) {
        self.directory = directory
        self.name = name
        self.path = path
        self.peer = peer
        self.overwrite = overwrite
    }

    deinit { close(directory) }

    func write(_ data: Data) throws(ControlError) {
        let temporary = ".\(name).\(UInt32.random(in: 0...UInt32.max)).cyclegand.tmp"
        let descriptor = openat(directory, temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            throw ControlError(.internal, "cannot create a file beside \(path): \(ListeningSocket.errnoText())")
        }
        let written = data.withUnsafeBytes { raw -> Int in
            var done = 0
            while done < raw.count {
                let got = Glibc.write(descriptor, raw.baseAddress! + done, raw.count - done)
                if got < 0, errno == EINTR { continue }
                if got <= 0 { break }
                done += got
            }
            return done
        }
        let synced = fsync(descriptor) == 0
        if geteuid() == 0, peer.uid != 0 { _ = fchown(descriptor, peer.uid, peer.gid) }
        close(descriptor)
        guard written == data.count, synced else {
            unlinkat(directory, temporary, 0)
            throw ControlError(.internal, "cannot write \(path): \(ListeningSocket.errnoText())")
        }
        let placed =
            overwrite
            ? renameat(directory, temporary, directory, name) : linkat(directory, temporary, directory, name, 0)
        let reason = errno
        if !overwrite || placed != 0 { unlinkat(directory, temporary, 0) }
        guard placed == 0 else {
            throw reason == EEXIST
                ? ControlError(.badRequest, "output \(path) appeared while translating; nothing was overwritten")
                : ControlError(.internal, "cannot create \(path): \(ListeningSocket.errnoText(reason))")
        }
    }
}
