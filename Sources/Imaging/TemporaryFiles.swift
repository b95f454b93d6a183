import CVips

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// An anonymous temporary file mapped into memory: created with mkstemp and
/// unlinked at once, so it disappears when this object goes, even if the
/// process is killed. Used to spool decoded input rows and output rows so that
/// neither is ever held in anonymous memory.
final class MappedSpool: @unchecked Sendable {
    let byteCount: Int
    let base: UnsafeMutableRawPointer
    private let descriptor: Int32

    private init(descriptor: Int32, byteCount: Int, writable: Bool, path: String) throws {
        let protection = writable ? (PROT_READ | PROT_WRITE) : PROT_READ
        guard let base = mmap(nil, byteCount, protection, MAP_SHARED, descriptor, 0), base != MAP_FAILED else {
            let reason = String(cString: strerror(errno))
            close(descriptor)
            throw ImagingError(
                .writeFailed, path: path, reason: "cannot map a \(byteCount)-byte temporary file: \(reason)")
        }
        self.descriptor = descriptor
        self.byteCount = byteCount
        self.base = base
    }

    deinit {
        munmap(base, byteCount)
        close(descriptor)
    }

    /// A zero-filled writable spool of `byteCount` bytes in `directory`.
    static func create(byteCount: Int, directory: String, path: String) throws -> MappedSpool {
        let fd = try anonymousFile(in: directory, path: path)
        guard ftruncate(fd, off_t(byteCount)) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw ImagingError(
                .writeFailed, path: path, reason: "cannot size a temporary file in \(directory): \(reason)")
        }
        return try MappedSpool(descriptor: fd, byteCount: byteCount, writable: true, path: path)
    }

    /// Runs `image`'s pipeline once, writing its pixels band-interleaved to a
    /// spool in `directory`, and maps the result read-only.
    static func decode(_ image: VipsImageRef, directory: String, path: String) throws -> MappedSpool {
        let fd = try anonymousFile(in: directory, path: path)
        let expected = image.width * image.height * image.bands * (image.format == VIPS_FORMAT_USHORT ? 2 : 1)
        guard cvips_rawsave_fd(image.pointer, fd) == 0 else {
            close(fd)
            throw ImagingError(
                .corrupt, path: path,
                reason:
                    "cannot decode (the file is damaged or truncated): \(takeVipsError(fallback: "no reason given"))")
        }
        var info = stat()
        guard fstat(fd, &info) == 0, Int(info.st_size) == expected else {
            close(fd)
            throw ImagingError(
                .writeFailed, path: path,
                reason: "decoded pixels did not fill the temporary file in \(directory) (disk full?)")
        }
        return try MappedSpool(descriptor: fd, byteCount: expected, writable: false, path: path)
    }

    private static func anonymousFile(in directory: String, path: String) throws -> Int32 {
        var template = Array((directory + "/cyclegand-spool-XXXXXX").utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else {
            throw ImagingError(
                .writeFailed, path: path,
                reason: "cannot create a temporary file in \(directory): \(String(cString: strerror(errno)))")
        }
        template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
        return fd
    }
}

/// Writes a file atomically: into a hidden temporary name in the destination's
/// directory, fsync, then rename over the destination. On any error the
/// temporary file is removed and the destination is untouched.
enum AtomicFile {
    /// The destination's directory and file name.
    private static func split(_ destination: String) throws -> (directory: String, name: String) {
        let slash = destination.lastIndex(of: "/")
        let directory = slash.map { String(destination[..<$0]) } ?? "."
        let name = slash.map { String(destination[destination.index(after: $0)...]) } ?? destination
        guard !name.isEmpty else {
            throw ImagingError(.writeFailed, path: destination, reason: "the output path names a directory, not a file")
        }
        return (directory, name)
    }

    /// Fails now, rather than after the work, if `destination` cannot be written.
    static func checkWritable(_ destination: String) throws {
        let (directory, _) = try split(destination)
        let folder = directory.isEmpty ? "/" : directory
        guard access(folder, W_OK | X_OK) == 0 else {
            throw ImagingError(
                .writeFailed, path: destination,
                reason: "cannot write into \(folder): \(String(cString: strerror(errno)))")
        }
        var info = stat()
        if stat(destination, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR {
            throw ImagingError(.writeFailed, path: destination, reason: "a directory of that name is in the way")
        }
    }

    static func write(to destination: String, _ body: (Int32) throws -> Void) throws {
        let (directory, name) = try split(destination)
        // Hidden (leading dot) so that watch folders ignore it; short enough for NAME_MAX.
        var stem = ""
        for character in name where stem.utf8.count + character.utf8.count <= 120 { stem.append(character) }
        var template = Array(((directory.isEmpty ? "" : directory) + "/." + stem + ".tmp-XXXXXX").utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else {
            throw ImagingError(
                .writeFailed, path: destination,
                reason: "cannot create a file in \(directory): \(String(cString: strerror(errno)))")
        }
        let temporary = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        var closed = false
        do {
            fchmod(fd, 0o644)
            try body(fd)
            guard fsync(fd) == 0 else {
                throw ImagingError(
                    .writeFailed, path: destination,
                    reason: "cannot flush the output to disk: \(String(cString: strerror(errno)))")
            }
            closed = true
            guard close(fd) == 0 else {
                throw ImagingError(
                    .writeFailed, path: destination,
                    reason: "cannot close the output: \(String(cString: strerror(errno)))")
            }
            guard rename(temporary, destination) == 0 else {
                throw ImagingError(
                    .writeFailed, path: destination,
                    reason: "cannot move the output into place: \(String(cString: strerror(errno)))")
            }
        } catch {
            if !closed { close(fd) }
            unlink(temporary)
            throw error
        }
        // Make the rename itself durable.
        let directoryDescriptor = open(directory.isEmpty ? "/" : directory, O_RDONLY | O_DIRECTORY)
        if directoryDescriptor >= 0 {
            fsync(directoryDescriptor)
            close(directoryDescriptor)
        }
    }
}
