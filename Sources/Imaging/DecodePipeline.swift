import CVips

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Metadata carried from the input to the output.
struct ImageMetadata: Sendable {
    var exif: [UInt8]?
    var xmp: [UInt8]?
    /// The sRGB profile the pixels were converted to, when the input had a profile.
    var icc: [UInt8]?
    /// Pixels per millimetre, as libvips keeps them.
    var xres = 1.0
    var yres = 1.0
}

/// A lazily evaluated libvips pipeline from a file to upright sRGB pixels:
/// RGB or RGBA, 8 or 16 bits per sample, band-interleaved. Building it reads
/// only the header; the pixels are decoded when the pipeline runs.
struct DecodePipeline {
    let image: VipsImageRef
    let hasAlpha: Bool
    let bitDepth: Int
    /// Output suffix of the input's format ("jpg", "png", ...).
    let inputFormat: String
    let metadata: ImageMetadata

    init(path: String, options: LoadOptions) throws {
        try VipsRuntime.ready(for: path)
        try Self.checkFile(path)
        guard let loaderName = cvips_find_loader(path) else {
            _ = takeVipsError(fallback: "")
            throw ImagingError(.unreadable, path: path, reason: "not an image in a format libvips can read")
        }
        let loader = String(cString: loaderName)
        if !options.allowUntrustedLoaders && cvips_loader_is_untrusted(loader) != 0 {
            // A truncated TIFF (its directory past the end) is refused by libvips' TIFF sniffer
            // and falls through to a catch-all loader: say what the file is, not which loader.
            if let format = Self.claimedFormat(path) {
                throw ImagingError(
                    .corrupt, path: path,
                    reason: "starts like a \(format) file but libvips cannot read it as one: damaged or truncated")
            }
            throw ImagingError(
                .unreadable, path: path,
                reason:
                    "\(loader) is not trusted with untrusted input; convert the file to JPEG, PNG, WebP, TIFF or HEIF, or allow untrusted loaders"
            )
        }
        let strict = options.failOnWarnings || (options.strictJPEG && loader == "jpegload")
        var loaded = try Self.open(path, loader: loader, sequential: true, strict: strict)
        let pixels = loaded.width.multipliedReportingOverflow(by: loaded.height)
        if pixels.overflow || pixels.partialValue > options.pixelLimit {
            throw ImagingError(
                .tooLarge, path: path,
                reason:
                    "\(loaded.width)×\(loaded.height) pixels is over the limit of \(options.pixelLimit) pixels; raise the pixel limit if the image is genuine"
            )
        }
        // Orientations other than 1 (upright) and 2 (mirrored left-right) read
        // rows bottom-up or as columns, which a sequential read cannot do.
        let orientation = loaded.int("orientation", default: 1)
        if orientation > 2 && orientation <= 8 {
            loaded = try Self.open(path, loader: loader, sequential: false, strict: strict)
        }

        let upright = try loaded.derive(path: path, .corrupt, "autorotate") { cvips_autorot($0, $1) }
        let sixteen = upright.format == VIPS_FORMAT_USHORT || upright.format == VIPS_FORMAT_SHORT
        var metadata = ImageMetadata(exif: loaded.blob("exif-data"), xmp: loaded.blob("xmp-data").map(XMP.uprighted))
        metadata.xres = vips_image_get_xres(upright.pointer)
        metadata.yres = vips_image_get_yres(upright.pointer)

        var srgb: VipsImageRef?
        if upright.has("icc-profile-data") {
            // The embedded profile wins; a broken profile falls back to libvips'
            // interpretation-based conversion below.
            srgb = try? upright.derive(path: path, .corrupt, "ICC transform") {
                cvips_icc_to_srgb($0, $1, sixteen ? 16 : 8)
            }
            if let converted = srgb {
                metadata.icc = converted.blob("icc-profile-data")
            } else {
                _ = takeVipsError(fallback: "")
            }
        }
        if srgb == nil {
            let target = sixteen ? VIPS_INTERPRETATION_RGB16 : VIPS_INTERPRETATION_sRGB
            srgb = try upright.derive(path: path, .unreadable, "conversion to sRGB") {
                cvips_colourspace($0, $1, target)
            }
        }
        var rgb = srgb!
        if rgb.bands < 3 {
            throw ImagingError(.unreadable, path: path, reason: "cannot convert its \(rgb.bands)-band layout to RGB")
        }
        if rgb.bands > 4 {
            rgb = try rgb.derive(path: path, .unreadable, "band extraction") { cvips_extract_bands($0, $1, 0, 4) }
        }
        let wanted = sixteen ? VIPS_FORMAT_USHORT : VIPS_FORMAT_UCHAR
        if rgb.format != wanted {
            rgb = try rgb.derive(path: path, .unreadable, "sample conversion") { cvips_cast($0, $1, wanted) }
        }

        image = rgb
        hasAlpha = rgb.bands == 4
        bitDepth = sixteen ? 16 : 8
        inputFormat = SaveFormats.suffix(forLoader: loader, heifCompression: loaded.string("heif-compression"))
        self.metadata = metadata
    }

    private static func open(_ path: String, loader: String, sequential: Bool, strict: Bool) throws -> VipsImageRef {
        guard let image = cvips_open(path, loader, sequential ? 1 : 0, strict ? 1 : 0) else {
            throw ImagingError(
                .corrupt, path: path, reason: "cannot read the header: \(takeVipsError(fallback: "no reason given"))")
        }
        return VipsImageRef(image)
    }

    /// The trusted format a file's first bytes claim, if any.
    private static func claimedFormat(_ path: String) -> String? {
        guard let file = fopen(path, "rb") else { return nil }
        defer { fclose(file) }
        var head = [UInt8](repeating: 0, count: 12)
        let n = fread(&head, 1, head.count, file)
        let signatures: [(String, [UInt8?])] = [
            ("JPEG", [0xFF, 0xD8, 0xFF]),
            ("PNG", [0x89, 0x50, 0x4E, 0x47]),
            ("TIFF", [0x49, 0x49, 0x2A, 0x00]),
            ("TIFF", [0x4D, 0x4D, 0x00, 0x2A]),
            ("GIF", Array("GIF8".utf8)),
            ("WebP", Array("RIFF".utf8) + [nil, nil, nil, nil] + Array("WEBP".utf8)),
        ]
        func matches(_ signature: [UInt8?]) -> Bool {
            signature.count <= n
                && zip(signature, head).allSatisfy { expected, byte in expected.map { $0 == byte } ?? true }
        }
        return signatures.first { matches($0.1) }?.0
    }

    private static func checkFile(_ path: String) throws {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw ImagingError(.unreadable, path: path, reason: "cannot open: \(String(cString: strerror(errno)))")
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw ImagingError(.unreadable, path: path, reason: "not a regular file")
        }
        guard info.st_size > 0 else { throw ImagingError(.unreadable, path: path, reason: "the file is empty") }
    }
}

/// XMP packets may repeat the orientation (`tiff:Orientation`), and some
/// viewers honour it; the pixels are upright, so it is set to 1 like EXIF's.
enum XMP {
    static func uprighted(_ packet: [UInt8]) -> [UInt8] {
        var text = String(decoding: packet, as: UTF8.self)
        guard text.contains("tiff:Orientation") else { return packet }
        let rules = [
            (#"tiff:Orientation\s*=\s*"[0-9]""#, #"tiff:Orientation="1""#),
            (#"<tiff:Orientation>\s*[0-9]\s*</tiff:Orientation>"#, "<tiff:Orientation>1</tiff:Orientation>"),
        ]
        for (pattern, upright) in rules {
            guard let regex = try? Regex(pattern) else { continue }
            text = text.replacing(regex, with: upright)
        }
        return Array(text.utf8)
    }
}
