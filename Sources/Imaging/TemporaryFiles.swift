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

    /// A file in `directory` that has no name (created, then unlinked at once): it goes when its
    /// descriptor is closed, even if the process is killed.
    static func anonymousFile(in directory: String, prefix: String = "cyclegand-spool", path: String) throws -> Int32 {
        var template = Array((directory + "/" + prefix + "-XXXXXX").utf8CString)
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
