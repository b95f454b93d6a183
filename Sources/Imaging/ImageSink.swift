import CVips
import FileOutput

#if canImport(Glibc)
    import Glibc
#endif

/// An output image written row by row in bounded memory.
///
/// Rows arrive in order as planar RGB floats in [-1, 1] and are quantised
/// into an unlinked, memory-mapped temporary file. `finish()` wraps that file
/// as a libvips image, joins the input's alpha, attaches the metadata, and
/// encodes it streaming into a hidden file beside the destination, which is
/// fsynced and renamed into place. Until `finish()` succeeds nothing exists
/// at the destination, and no temporary file outlives the sink.
public final class ImageSink {
    public let destination: String
    public let width: Int
    public let height: Int
    /// Suffix of the format written ("jpg", "png", ...).
    public let format: String
    /// Bits per sample written: 16 when the input had 16 and the format keeps them.
    public let bitDepth: Int
    private let template: ImageTemplate?
    private let quality: Int?
    private let spool: MappedSpool
    private var nextRow = 0
    private var finished = false

    /// Fails early (before any work) on an unknown format or a size that does not match `template`.
    public init(
        destination: String, width: Int, height: Int, template: ImageTemplate? = nil,
        options: SaveOptions = SaveOptions()
    ) throws {
        try VipsRuntime.ready(for: destination)
        guard width > 0, height > 0 else {
            throw ImagingError(.invalidArgument, path: destination, reason: "cannot write a \(width)×\(height) image")
        }
        if let template, template.width != width || template.height != height {
            throw ImagingError(
                .invalidArgument, path: destination,
                reason:
                    "output is \(width)×\(height) but its input \(template.path) is \(template.width)×\(template.height)"
            )
        }
        if let problem = options.quality.flatMap(Quality.problem) {
            throw ImagingError(.invalidArgument, path: destination, reason: problem)
        }
        let format = try Self.resolveFormat(destination: destination, options: options, template: template)
        try Self.checkWritable(destination)
        self.destination = destination
        self.width = width
        self.height = height
        self.format = format
        self.bitDepth = (template?.bitDepth == 16 && SaveFormats.with16Bit.contains(format)) ? 16 : 8
        self.template = template
        self.quality = options.quality
        spool = try MappedSpool.create(
            byteCount: width * height * 3 * (bitDepth / 8), directory: temporaryDirectory(options.temporaryDirectory),
            path: destination)
    }

    /// The format to write: the one asked for, else the destination's extension
    /// when libvips can write it, else the input's format.
    static func resolveFormat(destination: String, options: SaveOptions, template: ImageTemplate?) throws -> String {
        if let asked = options.format {
            let format = SaveFormats.normalised(asked)
            guard cvips_find_saver("." + format) != nil else {
                _ = takeVipsError(fallback: "")
                throw ImagingError(
                    .writeFailed, path: destination, reason: "libvips cannot write the format '\(asked)'")
            }
            return format
        }
        if let ext = SaveFormats.pathExtension(destination), cvips_find_saver("." + ext) != nil { return ext }
        _ = takeVipsError(fallback: "")
        if let template { return template.inputFormat }
        throw ImagingError(
            .writeFailed, path: destination,
            reason: "cannot tell the output format from the name; add an extension such as .png or give a format")
    }

    /// Fails now, rather than after the work, if `destination` cannot be written.
    static func checkWritable(_ destination: String) throws {
        let slash = destination.lastIndex(of: "/")
        let directory = slash.map { String(destination[..<$0]) } ?? "."
        guard slash.map({ destination.index(after: $0) != destination.endIndex }) ?? !destination.isEmpty else {
            throw ImagingError(.writeFailed, path: destination, reason: "the output path names a directory, not a file")
        }
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

    /// Appends rows `y ..< y + count` from planar floats [3][count][width]; `y` must be the next row.
    public func writeRows(y: Int, count: Int, from input: UnsafePointer<Float>) throws {
        guard !finished, y == nextRow, count >= 0, y + count <= height else {
            throw ImagingError(
                .invalidArgument, path: destination,
                reason: finished
                    ? "rows written after finish()"
                    : "rows \(y)..<\(y + count) written when row \(nextRow) of \(height) was next")
        }
        let rowBytes = width * 3 * (bitDepth / 8)
        PixelCodec.encode(input, bitDepth: bitDepth, width: width, count: count, into: spool.base + y * rowBytes)
        nextRow += count
    }

    /// Encodes the output and moves it into place.
    public func finish() throws {
        guard !finished else { return }
        guard nextRow == height else {
            throw ImagingError(
                .invalidArgument, path: destination, reason: "only \(nextRow) of \(height) rows were written")
        }
        let sampleFormat = bitDepth == 16 ? VIPS_FORMAT_USHORT : VIPS_FORMAT_UCHAR
        let space = bitDepth == 16 ? VIPS_INTERPRETATION_RGB16 : VIPS_INTERPRETATION_sRGB
        guard
            let raw = cvips_image_from_memory(
                spool.base, spool.byteCount, Int32(width), Int32(height), 3, sampleFormat, space)
        else {
            throw ImagingError(
                .writeFailed, path: destination,
                reason: "cannot wrap the output rows: \(takeVipsError(fallback: "no reason given"))")
        }
        var image = VipsImageRef(raw, keepAlive: [spool])
        if SaveFormats.withAlpha.contains(format),
            let alpha = try template?.alphaImage(bitDepth: bitDepth, path: destination)
        {
            image = try image.derive(path: destination, .writeFailed, "joining the alpha", alsoKeeping: [alpha]) {
                cvips_bandjoin2($0, alpha.pointer, $1)
            }
        }
        if let metadata = template?.metadata { attach(metadata, to: image) }
        let suffix = "." + format
        let quality = Int32(self.quality ?? 0)
        let path = destination
        do {
            try DurableFile.write(to: destination) { fd in
                guard cvips_save_to_descriptor(image.pointer, fd, suffix, quality) == 0 else {
                    throw ImagingError(
                        .writeFailed, path: path,
                        reason: "cannot encode as \(suffix.dropFirst()): \(takeVipsError(fallback: "no reason given"))")
                }
            }
        } catch let failure as DurableFile.Failure {
            throw ImagingError(.writeFailed, path: destination, reason: failure.description)
        }
        finished = true
    }

    /// EXIF (its orientation reset to upright: the pixels already are), XMP,
    /// the sRGB ICC profile when the input had a profile, and the resolution.
    private func attach(_ metadata: ImageMetadata, to image: VipsImageRef) {
        cvips_set_resolution(image.pointer, metadata.xres, metadata.yres)
        for (name, blob) in [
            ("exif-data", metadata.exif), ("xmp-data", metadata.xmp), ("icc-profile-data", metadata.icc),
        ] {
            guard let blob else { continue }
            blob.withUnsafeBytes { vips_image_set_blob_copy(image.pointer, name, $0.baseAddress, $0.count) }
        }
        vips_image_set_int(image.pointer, "orientation", 1)
    }
}
