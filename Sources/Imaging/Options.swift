import Foundation

/// How images are read.
public struct LoadOptions: Sendable {
    /// Largest width × height accepted, checked from the header before decoding.
    public var pixelLimit: Int
    /// libvips flags some loaders as unsafe for untrusted input (ImageMagick,
    /// PDF, SVG, JPEG 2000, JPEG XL, PPM, FITS, ...). The daemon reads files
    /// that anyone with access to a watch folder drops, so they are refused
    /// unless this is set.
    public var allowUntrustedLoaders: Bool
    /// Decoding always fails on errors (truncation, bad checksums, broken
    /// headers). Set this to fail on every format's warnings too, at the price
    /// of refusing files with harmless ones (PNG's "known incorrect sRGB profile").
    public var failOnWarnings: Bool
    /// JPEG has no checksums: damage inside the compressed data is only a
    /// libjpeg *warning* ("Corrupt JPEG data: premature end of data segment"),
    /// after which the rest of the image decodes grey. With this set (the
    /// default), such a JPEG fails as corrupt; the one harmless warning seen in
    /// real files, stray bytes between markers, is still accepted.
    public var strictJPEG: Bool
    /// Where decoded pixels are spooled (`nil`: `$TMPDIR`, else `/tmp`).
    public var temporaryDirectory: String?

    public static let defaultPixelLimit = 100_000_000

    public init(
        pixelLimit: Int = LoadOptions.defaultPixelLimit, allowUntrustedLoaders: Bool = false,
        failOnWarnings: Bool = false, strictJPEG: Bool = true,
        temporaryDirectory: String? = nil
    ) {
        self.pixelLimit = pixelLimit
        self.allowUntrustedLoaders = allowUntrustedLoaders
        self.failOnWarnings = failOnWarnings
        self.strictJPEG = strictJPEG
        self.temporaryDirectory = temporaryDirectory
    }
}

/// How images are written.
public struct SaveOptions: Sendable {
    /// Output format as a file suffix ("jpg", "png", "webp", "tif", "avif", ...);
    /// `nil`: the destination's extension, else the input's format.
    public var format: String?
    /// Encoder quality 1...100 for lossy formats (`nil`: libvips' default).
    public var quality: Int?
    /// Where output rows are spooled before encoding (`nil`: `$TMPDIR`, else `/tmp`).
    public var temporaryDirectory: String?

    public init(format: String? = nil, quality: Int? = nil, temporaryDirectory: String? = nil) {
        self.format = format
        self.quality = quality
        self.temporaryDirectory = temporaryDirectory
    }
}

/// The output format rules: suffix ↔ capabilities.
enum SaveFormats {
    /// Formats whose libvips saver keeps an alpha channel.
    static let withAlpha: Set<String> = [
        "png", "webp", "tif", "tiff", "gif", "heic", "heif", "avif", "jxl", "jp2", "j2k",
    ]
    /// Formats written with 16 bits per sample when the input had 16.
    static let with16Bit: Set<String> = ["png", "tif", "tiff"]

    /// The suffix (no dot, lowercased) for a loader nickname, used to write the
    /// output in the input's format. Loaders without a matching saver give PNG.
    static func suffix(forLoader loader: String, heifCompression: String?) -> String {
        switch loader.replacingOccurrences(of: "_source", with: "") {
        case "jpegload": return "jpg"
        case "pngload": return "png"
        case "gifload": return "gif"
        case "webpload": return "webp"
        case "tiffload": return "tif"
        case "heifload": return heifCompression == "av1" ? "avif" : "heic"
        case "jxlload": return "jxl"
        case "jp2kload": return "jp2"
        default: return "png"
        }
    }

    static func normalised(_ format: String) -> String {
        var f = format.lowercased()
        if f.hasPrefix(".") { f.removeFirst() }
        return f
    }

    /// The lowercased extension of a path, or nil.
    static func pathExtension(_ path: String) -> String? {
        let ext = (path as NSString).pathExtension
        return ext.isEmpty ? nil : ext.lowercased()
    }
}

/// The temporary directory to use: the configured one, `$TMPDIR`, or `/tmp`.
func temporaryDirectory(_ configured: String?) -> String {
    if let configured, !configured.isEmpty { return configured }
    if let env = ProcessInfo.processInfo.environment["TMPDIR"], !env.isEmpty { return env }
    return "/tmp"
}

extension LoadOptions {
    /// These options with JPEG warnings tolerated.
    var lenientJPEG: LoadOptions {
        var o = self
        o.strictJPEG = false
        return o
    }
}
