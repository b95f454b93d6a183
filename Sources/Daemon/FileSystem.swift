import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Thin, throwing wrappers over the POSIX calls the spool's crash safety rests on. Foundation's
/// FileManager hides fsync and link-without-replace, which are exactly what matters here.
enum FS {
    struct Failure: Error, CustomStringConvertible {
        var operation: String
        var path: String
        var errno: Int32
        var description: String { "\(operation) \(path): \(String(cString: strerror(errno)))" }
    }

    static func fail(_ operation: String, _ path: String) -> Failure {
        Failure(operation: operation, path: path, errno: Glibc.errno)
    }

    static func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    static func isRegularFile(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
    }

    /// (device, inode) of a path, not following symlinks.
    static func identity(_ path: String) -> FileIdentity? {
        var st = stat()
        guard lstat(path, &st) == 0 else { return nil }
        return FileIdentity(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
    }

    static func makeDirectories(_ path: String) throws {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw Failure(operation: "mkdir -p", path: path, errno: EACCES)
        }
    }

    static func fsyncPath(_ path: String, directory: Bool = false) throws {
        let fd = open(path, (directory ? O_DIRECTORY : 0) | O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw fail("open", path) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw fail("fsync", path) }
    }

    static func fsyncParent(of path: String) throws {
        try fsyncPath((path as NSString).deletingLastPathComponent, directory: true)
    }

    /// rename(2). Returns false when the source does not exist (someone else took it).
    @discardableResult
    static func rename(_ from: String, _ to: String) throws -> Bool {
        if Glibc.rename(from, to) == 0 { return true }
        if Glibc.errno == ENOENT && !exists(from) { return false }
        throw fail("rename to \(to) from", from)
    }

    /// Puts `from` at `to` only if `to` is free (link + unlink: atomic, never replaces).
    /// Returns false when `to` is taken. Falls back to check-then-rename on file systems
    /// without hard links.
    static func moveNoReplace(_ from: String, _ to: String) throws -> Bool {
        if link(from, to) == 0 {
            unlink(from)
            return true
        }
        let e = Glibc.errno
        if e == EEXIST { return false }
        if e == EPERM || e == EOPNOTSUPP || e == EMLINK || e == EXDEV {
            if exists(to) { return false }
            try rename(from, to)
            return true
        }
        throw Failure(operation: "link to \(to) from", path: from, errno: e)
    }

    /// Puts the finished, fsynced file `temporary` at `target` durably: renamed over it
    /// (`replace`) or linked only if `target` is free. Returns false when `target` is taken.
    static func place(_ temporary: String, at target: String, replace: Bool) throws -> Bool {
        let placed = replace ? try rename(temporary, target) : try moveNoReplace(temporary, target)
        if placed { try fsyncParent(of: target) }
        return placed
    }

    static func remove(_ path: String) {
        unlink(path)
    }

    /// Entries of a folder (names only), empty when it cannot be read.
    static func list(_ path: String) -> [String] {
        (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
    }
}

struct FileIdentity: Codable, Equatable, Sendable {
    var device: UInt64
    var inode: UInt64
}

/// Names that are not (yet) images to take: hidden files, and the names downloaders and editors
/// use while a file is still being written. They are picked up once renamed to a plain name.
public enum IncomingName {
    static let temporarySuffixes = [".part", ".tmp", ".crdownload", ".partial", ".download", ".swp", "~"]

    public static func isIgnored(_ name: String) -> Bool {
        if name.isEmpty || name.hasPrefix(".") { return true }
        let lower = name.lowercased()
        return temporarySuffixes.contains { lower.hasSuffix($0) } || name.hasSuffix(".error.json")
    }
}
