import FileOutput
import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A whole file mapped read-only into memory (private, copy-on-write), so that
/// tensors can be views into it without copying. The mapping lives as long as
/// this object: tensors that borrow from it keep it alive as their owner.
public final class MappedFile: @unchecked Sendable {
    public let url: URL
    public let size: Int
    /// Start of the mapping; nil for an empty file (mmap refuses length 0).
    let base: UnsafeMutableRawPointer?

    public init(url: URL) throws {
        self.url = url
        let fd = open(url.path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FileError.cannotOpen(url, errno: errno) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw FileError.cannotOpen(url, errno: errno) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw FileError.notARegularFile(url) }
        size = Int(st.st_size)
        if size == 0 {
            base = nil
            return
        }
        // PROT_WRITE with MAP_PRIVATE: a caller that writes into a borrowed
        // tensor gets its own copy of that page; the file is never changed.
        let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0)
        guard let p, p != MAP_FAILED else { throw FileError.cannotMap(url, errno: errno) }
        base = p
    }

    deinit {
        if let base { munmap(base, size) }
    }

    /// The sha256 of the whole file, as lowercase hex.
    public func sha256() -> String {
        withExtendedLifetime(self) { SHA256.hex(bytes) }
    }

    /// The mapped bytes (empty for an empty file).
    public var bytes: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base, count: size)
    }
}

/// Errors about files as files (not about their content).
public enum FileError: Error, CustomStringConvertible {
    case cannotOpen(URL, errno: Int32)
    case notARegularFile(URL)
    case cannotMap(URL, errno: Int32)
    case cannotWrite(URL, errno: Int32)

    public var description: String {
        switch self {
        case .cannotOpen(let url, let e):
            return "cannot open \(url.path): \(String(cString: strerror(e)))"
        case .notARegularFile(let url): return "\(url.path) is not a regular file"
        case .cannotMap(let url, let e):
            return "cannot map \(url.path) into memory: \(String(cString: strerror(e)))"
        case .cannotWrite(let url, let e):
            return "cannot write \(url.path): \(String(cString: strerror(e)))"
        }
    }
}

/// Model files written atomically, through the project's one writer (`DurableFile`: a hidden
/// temporary file beside the target, fsync, rename, fsync of the folder), with a buffered sink.
public enum AtomicFile {
    /// Writes whatever `body` emits to `url` atomically. `body` receives a
    /// sink that appends bytes to the temporary file.
    public static func write(to url: URL, _ body: (inout FileSink) throws -> Void) throws {
        do {
            try DurableFile.write(to: url.path) { fd in
                var sink = FileSink(fd: fd, url: url)
                try body(&sink)
                try sink.flush()
            }
        } catch let failure as DurableFile.Failure {
            throw FileError.cannotWrite(url, errno: failure.errno)
        }
    }

    /// Writes `data` to `url` atomically.
    public static func write(_ data: some DataProtocol, to url: URL) throws {
        try write(to: url) { sink in
            for region in data.regions {
                try region.withUnsafeBytes { try sink.append($0) }
            }
        }
    }

    /// fsyncs a folder, so that the renames and creations in it survive a crash.
    public static func syncDirectory(_ dir: URL) throws {
        do { try DurableFile.syncFolder(dir.path) } catch let failure as DurableFile.Failure {
            throw FileError.cannotWrite(dir, errno: failure.errno)
        }
    }
}

/// A buffered appender to an open file descriptor.
public struct FileSink {
    fileprivate let fd: Int32
    let url: URL
    private var pending: [UInt8] = []
    /// Bytes appended so far.
    public private(set) var offset = 0

    fileprivate init(fd: Int32, url: URL) {
        self.fd = fd
        self.url = url
        pending.reserveCapacity(1 << 20)
    }

    public mutating func append(_ bytes: UnsafeRawBufferPointer) throws {
        offset += bytes.count
        if pending.count + bytes.count <= 1 << 20 {
            pending.append(contentsOf: bytes)
            return
        }
        try flush()
        try writeAll(bytes)
    }

    public mutating func append(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try append($0) }
    }

    mutating func flush() throws {
        guard !pending.isEmpty else { return }
        try pending.withUnsafeBytes { try writeAll($0) }
        pending.removeAll(keepingCapacity: true)
    }

    private func writeAll(_ bytes: UnsafeRawBufferPointer) throws {
        do {
            try DurableFile.writeAll(bytes, to: fd, path: url.path)
        } catch let failure as DurableFile.Failure {
            throw FileError.cannotWrite(url, errno: failure.errno)
        }
    }
}
