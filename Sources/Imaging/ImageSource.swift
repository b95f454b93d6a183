import CVips
import Foundation

/// What the output needs from the input: size, depth, format, alpha and
/// metadata. Holding a template keeps the input's spooled alpha alive.
public final class ImageTemplate: Sendable {
    /// The input file this came from (for messages).
    public let path: String
    public let width: Int
    public let height: Int
    /// 8 or 16: bits per sample of the decoded input.
    public let bitDepth: Int
    public let hasAlpha: Bool
    /// The input's format as a file suffix ("jpg", "png", ...): the default output format.
    public let inputFormat: String
    let metadata: ImageMetadata
    /// The decoded input (RGB + alpha, interleaved) whose last band is the alpha.
    let alphaSource: MappedSpool?

    init(source: ImageSource, alphaSource: MappedSpool?) {
        path = source.path
        width = source.width
        height = source.height
        bitDepth = source.bitDepth
        hasAlpha = source.hasAlpha
        inputFormat = source.inputFormat
        metadata = source.metadata
        self.alphaSource = alphaSource
    }

    /// The alpha band as a libvips image at `bitDepth` bits.
    func alphaImage(bitDepth outputDepth: Int, path output: String) throws -> VipsImageRef? {
        guard let spool = alphaSource else { return nil }
        let format = bitDepth == 16 ? VIPS_FORMAT_USHORT : VIPS_FORMAT_UCHAR
        guard
            let rgba = cvips_image_from_memory(
                spool.base, spool.byteCount, Int32(width), Int32(height), 4, format, VIPS_INTERPRETATION_MULTIBAND)
        else {
            throw ImagingError(
                .writeFailed, path: output,
                reason: "cannot wrap the input's alpha: \(takeVipsError(fallback: "no reason given"))")
        }
        let all = VipsImageRef(rgba, keepAlive: [spool])
        var alpha = try all.derive(path: output, .writeFailed, "alpha extraction") { cvips_extract_bands($0, $1, 3, 1) }
        if bitDepth == 16 && outputDepth == 8 {
            alpha = try alpha.derive(path: output, .writeFailed, "alpha conversion") { cvips_ushort_to_uchar($0, $1) }
        }
        return alpha
    }
}

/// An input image read row by row without holding it whole in memory.
///
/// Opening reads and validates the header and sets up the libvips pipeline
/// (autorotate, colour conversion to sRGB). The first `readRows` runs that
/// pipeline once, sequentially where the orientation allows, into an unlinked
/// temporary file under the temporary directory, which is then memory-mapped:
/// rows can be read any number of times, in any order, in several passes,
/// while resident memory stays what the kernel chooses to cache.
public final class ImageSource: @unchecked Sendable {
    public let path: String
    /// Upright size (after EXIF orientation).
    public let width: Int
    public let height: Int
    public let hasAlpha: Bool
    /// 8 or 16 bits per sample.
    public let bitDepth: Int
    /// The input's format as a file suffix ("jpg", "png", ...).
    public let inputFormat: String
    let metadata: ImageMetadata

    private var pipeline: VipsImageRef
    private let options: LoadOptions
    private let temporaryDirectory: String
    private let lock = NSLock()
    private var spool: MappedSpool?

    public init(path: String, options: LoadOptions = LoadOptions()) throws {
        let decoded: DecodePipeline
        do {
            // Header reads are short; all of them go under the error lock (see VipsErrors).
            decoded = try VipsErrors.fresh { try DecodePipeline(path: path, options: options) }
        } catch let error where Self.isHarmlessJPEGWarning(error, options) {
            decoded = try DecodePipeline(path: path, options: options.lenientJPEG)
        }
        self.path = path
        self.options = options
        pipeline = decoded.image
        width = decoded.image.width
        height = decoded.image.height
        hasAlpha = decoded.hasAlpha
        bitDepth = decoded.bitDepth
        inputFormat = decoded.inputFormat
        metadata = decoded.metadata
        temporaryDirectory = Imaging.temporaryDirectory(options.temporaryDirectory)
    }

    private var bands: Int { hasAlpha ? 4 : 3 }
    private var bytesPerSample: Int { bitDepth == 16 ? 2 : 1 }

    /// Decodes the whole input into the spool now (otherwise the first `readRows` does).
    /// Corrupt or truncated data is reported here.
    public func decode() throws {
        _ = try decodedSpool()
    }

    private func decodedSpool() throws -> MappedSpool {
        lock.lock()
        defer { lock.unlock() }
        if let spool { return spool }
        let made: MappedSpool
        do {
            if inputFormat == "jpg" {
                made = try VipsErrors.fresh {
                    try MappedSpool.decode(pipeline, directory: temporaryDirectory, path: path)
                }
            } else {
                made = try MappedSpool.decode(pipeline, directory: temporaryDirectory, path: path)
            }
        } catch let error where Self.isHarmlessJPEGWarning(error, options) {
            pipeline = try DecodePipeline(path: path, options: options.lenientJPEG).image
            made = try MappedSpool.decode(pipeline, directory: temporaryDirectory, path: path)
        }
        spool = made
        return made
    }

    /// A strict JPEG load (`LoadOptions.strictJPEG`) that failed only because of stray bytes
    /// between markers, which some cameras and editors write into sound files. JPEG loads run
    /// under `VipsErrors.lock`, so the JPEG messages in the reason are this file's; another
    /// format's failure may stand beside them and is ignored.
    static func isHarmlessJPEGWarning(_ error: any Error, _ options: LoadOptions) -> Bool {
        guard options.strictJPEG, !options.failOnWarnings, let e = error as? ImagingError, e.kind == .corrupt else {
            return false
        }
        let jpeg = e.reason.components(separatedBy: "; ").filter { $0.contains("JPEG") }
        return !jpeg.isEmpty && jpeg.allSatisfy { $0.contains("extraneous bytes before marker") }
    }

    /// Reads rows `y ..< y + count` as planar RGB floats [3][count][width] in [-1, 1].
    public func readRows(y: Int, count: Int, into output: UnsafeMutablePointer<Float>) throws {
        guard y >= 0, count >= 0, y + count <= height else {
            throw ImagingError(
                .invalidArgument, path: path, reason: "rows \(y)..<\(y + count) are outside the image's \(height) rows")
        }
        let spool = try decodedSpool()
        let rowBytes = width * bands * bytesPerSample
        PixelCodec.decode(
            spool.base + y * rowBytes, bands: bands, bitDepth: bitDepth, width: width, count: count, into: output)
    }

    /// What an `ImageSink` needs to write the output like this input.
    public func template() throws -> ImageTemplate {
        ImageTemplate(source: self, alphaSource: hasAlpha ? try decodedSpool() : nil)
    }
}
