import CVips
import Foundation
import Imaging
import Models

/// A colour as 8-bit sRGB.
public struct RGB8: Equatable, Sendable {
    public var r: UInt8
    public var g: UInt8
    public var b: UInt8

    public init(_ r: UInt8, _ g: UInt8, _ b: UInt8) {
        self.r = r
        self.g = g
        self.b = b
    }

    public static let white = RGB8(255, 255, 255)

    /// This colour moved `fraction` of the way towards `other`.
    func mixed(with other: RGB8, _ fraction: Double) -> RGB8 {
        func mix(_ a: UInt8, _ b: UInt8) -> UInt8 { UInt8((Double(a) + (Double(b) - Double(a)) * fraction).rounded()) }
        return RGB8(mix(r, other.r), mix(g, other.g), mix(b, other.b))
    }
}

/// An 8-bit RGB raster, band-interleaved, that the report's pictures are drawn on.
public struct RGB8Image: Equatable, Sendable {
    public let width: Int
    public let height: Int
    /// [height][width][3].
    public var pixels: [UInt8]

    public init(width: Int, height: Int, background: RGB8 = .white) {
        precondition(width > 0 && height > 0, "a \(width)×\(height) image")
        self.width = width
        self.height = height
        pixels = [UInt8](repeating: 0, count: width * height * 3)
        fill(x: 0, y: 0, width: width, height: height, background)
    }

    public subscript(x: Int, y: Int) -> RGB8 {
        let i = (y * width + x) * 3
        return RGB8(pixels[i], pixels[i + 1], pixels[i + 2])
    }

    /// Fills the rectangle, clipped to the image.
    mutating func fill(x: Int, y: Int, width w: Int, height h: Int, _ colour: RGB8) {
        let x0 = max(x, 0)
        let x1 = min(x + w, width)
        let y0 = max(y, 0)
        let y1 = min(y + h, height)
        guard x0 < x1 else { return }
        for row in y0..<y1 {
            for column in x0..<x1 {
                let i = (row * width + column) * 3
                pixels[i] = colour.r
                pixels[i + 1] = colour.g
                pixels[i + 2] = colour.b
            }
        }
    }

    /// Mixes `colour` into pixel (x, y) with coverage `alpha` in [0, 1]; outside the image, nothing.
    @inline(__always)
    mutating func blend(x: Int, y: Int, _ colour: RGB8, alpha: Float) {
        guard x >= 0, x < width, y >= 0, y < height, alpha > 0 else { return }
        let i = (y * width + x) * 3
        let a = min(alpha, 1)
        pixels[i] = UInt8((Float(pixels[i]) * (1 - a) + Float(colour.r) * a).rounded())
        pixels[i + 1] = UInt8((Float(pixels[i + 1]) * (1 - a) + Float(colour.g) * a).rounded())
        pixels[i + 2] = UInt8((Float(pixels[i + 2]) * (1 - a) + Float(colour.b) * a).rounded())
    }

    /// An anti-aliased segment `thickness` pixels wide between pixel-centre
    /// coordinates (x0, y0) and (x1, y1), with round ends: each pixel near it
    /// is covered by how far its centre lies inside the stroke.
    mutating func line(_ x0: Double, _ y0: Double, _ x1: Double, _ y1: Double, _ colour: RGB8, thickness: Double) {
        let half = thickness / 2
        let reach = half + 0.5
        let dx = x1 - x0
        let dy = y1 - y0
        let lengthSquared = dx * dx + dy * dy
        let left = max(Int((min(x0, x1) - reach).rounded(.down)), 0)
        let right = min(Int((max(x0, x1) + reach).rounded(.up)), width - 1)
        let top = max(Int((min(y0, y1) - reach).rounded(.down)), 0)
        let bottom = min(Int((max(y0, y1) + reach).rounded(.up)), height - 1)
        guard left <= right, top <= bottom else { return }
        for py in top...bottom {
            for px in left...right {
                // Distance from the pixel centre to the nearest point of the segment.
                let ex = Double(px) - x0
                let ey = Double(py) - y0
                let t = lengthSquared > 0 ? min(max((ex * dx + ey * dy) / lengthSquared, 0), 1) : 0
                let nx = ex - t * dx
                let ny = ey - t * dy
                let distance = (nx * nx + ny * ny).squareRoot()
                blend(x: px, y: py, colour, alpha: Float(reach - distance))
            }
        }
    }

    /// Paints `colour` through a coverage mask whose top-left corner goes at (x, y).
    mutating func draw(_ mask: TextMask, x: Int, y: Int, _ colour: RGB8) {
        for row in 0..<mask.height {
            for column in 0..<mask.width {
                let coverage = mask.coverage[row * mask.width + column]
                if coverage > 0 { blend(x: x + column, y: y + row, colour, alpha: Float(coverage) / 255) }
            }
        }
    }

    /// The image as PNG bytes, encoded by libvips.
    func pngData() throws -> Data {
        try ReportVips.start()
        return try pixels.withUnsafeBytes { raw in
            guard
                let image = cvips_image_from_memory(
                    raw.baseAddress, raw.count, Int32(width), Int32(height), 3, VIPS_FORMAT_UCHAR,
                    VIPS_INTERPRETATION_sRGB)
            else { throw ReportVips.failure("cannot wrap the pixels as an image") }
            defer { g_object_unref(image) }
            var buffer: UnsafeMutableRawPointer?
            var length = 0
            guard cvips_save_to_buffer(image, ".png", &buffer, &length) == 0, let buffer else {
                throw ReportVips.failure("cannot encode a PNG")
            }
            defer { g_free(buffer) }
            return Data(bytes: buffer, count: length)
        }
    }

    /// Writes the image as a PNG at `url` atomically (temporary file, fsync, rename).
    public func writePNG(to url: URL) throws {
        try AtomicFile.write(try pngData(), to: url)
    }
}

/// What the report needs from libvips besides its wrappers.
enum ReportVips {
    /// Starts libvips if it is not running. Imaging owns that start-up (once per
    /// process, safe across threads); a second `vips_init` racing it from here
    /// could return before libvips is ready, so the report asks Imaging to open
    /// an empty path, which starts libvips and then fails at once.
    static func start() throws {
        _ = try? ImageSource(path: "")
    }

    /// An error carrying libvips' message (its error buffer is cleared).
    static func failure(_ what: String) -> ReportError {
        var reason = "no reason given"
        if let raw = cvips_error_take() {
            let text = String(cString: raw).split(separator: "\n").joined(separator: "; ")
            if !text.isEmpty { reason = text }
            g_free(raw)
        }
        return ReportError("\(what): \(reason)")
    }
}

/// Why a report (plot, grid, page) could not be made.
public struct ReportError: Error, CustomStringConvertible, Sendable {
    public let description: String
    init(_ description: String) { self.description = description }
}
