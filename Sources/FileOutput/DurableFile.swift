import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The project's one atomic file writer (models, images, the spool's journals and sidecars).
///
/// Readers see a file's old content or its complete new one, never a part, even across a crash:
/// the bytes go into a hidden temporary file beside the destination (same folder, so the same
/// file system), which is fsynced and renamed over it; then the folder is fsynced so that the
/// rename itself lasts. On any error the temporary file is removed and the destination is
/// untouched. The hidden name (leading dot) keeps watch folders from taking it.
public enum DurableFile {
    /// A system call that failed, with its path and errno.
    public struct Failure: Error, CustomStringConvertible, Sendable {
        public var operation: String
        public var path: String
        public var errno: Int32

        public var description: String { "cannot \(operation) \(path): \(String(cString: strerror(errno)))" }
    }

    /// Writes what `body` writes to the descriptor it is given.
    public static func write(to destination: String, _ body: (Int32) throws -> Void) throws {
        let slash = destination.lastIndex(of: "/")
        let folder = slash.map { String(destination[..<$0]) } ?? "."
        let name = slash.map { String(destination[destination.index(after: $0)...]) } ?? destination
        guard !name.isEmpty else { throw Failure(operation: "write a file named", path: destination, errno: EISDIR) }
        // Short enough for NAME_MAX whatever the destination's name.
        var stem = ""
        for character in name where stem.utf8.count + character.utf8.count <= 120 { stem.append(character) }
        var template = Array(((folder.isEmpty ? "" : folder) + "/." + stem + ".tmp-XXXXXX").utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw Failure(operation: "create a file in", path: folder, errno: Glibc.errno) }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        let temporary = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        var open = true
        do {
            fchmod(fd, 0o644)
            try body(fd)
            guard fsync(fd) == 0 else {
                throw Failure(operation: "flush to disk", path: destination, errno: Glibc.errno)
            }
            open = false
            guard close(fd) == 0 else { throw Failure(operation: "close", path: destination, errno: Glibc.errno) }
            guard rename(temporary, destination) == 0 else {
                throw Failure(operation: "move into place", path: destination, errno: Glibc.errno)
            }
        } catch {
            if open { close(fd) }
            unlink(temporary)
            throw error
        }
        try syncFolder(folder.isEmpty ? "/" : folder)
    }

    /// fsyncs a folder, so that the renames and creations in it last across a crash.
    public static func syncFolder(_ folder: String) throws {
        let folderDescriptor = Glibc.open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard folderDescriptor >= 0 else { throw Failure(operation: "open", path: folder, errno: Glibc.errno) }
        defer { close(folderDescriptor) }
        guard fsync(folderDescriptor) == 0 else { throw Failure(operation: "flush", path: folder, errno: Glibc.errno) }
    }

    /// Writes `data`.
    public static func write(_ data: some DataProtocol, to destination: String) throws {
        try write(to: destination) { fd in
            for region in data.regions {
                try region.withUnsafeBytes { try writeAll($0, to: fd, path: destination) }
            }
        }
    }

    /// Writes every byte to `fd`, retrying short writes and interruptions.
    public static func writeAll(_ bytes: UnsafeRawBufferPointer, to fd: Int32, path: String) throws {
        var done = 0
        while done < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done)
            if n < 0 {
                if Glibc.errno == EINTR { continue }
                throw Failure(operation: "write", path: path, errno: Glibc.errno)
            }
            done += n
        }
    }
}
