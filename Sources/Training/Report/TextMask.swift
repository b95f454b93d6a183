import CVips

/// A line of text rendered by libvips (Pango, with the system's fonts) as
/// 8-bit coverage, sized to its ink, ready to be painted in any colour.
struct TextMask {
    let width: Int
    let height: Int
    /// [height][width], 0 (no ink) to 255.
    let coverage: [UInt8]

    /// `text` (plain, not markup) at `size` pixels in the sans-serif font
    /// fontconfig chooses (DejaVu Sans on Debian); bold when asked.
    init(_ text: String, size: Int, bold: Bool = false) throws {
        guard !text.isEmpty else {
            // libvips refuses to render nothing.
            self.init(width: 0, height: 0, coverage: [])
            return
        }
        try ReportVips.start()
        let font = "sans\(bold ? " bold" : "") \(size)"
        var out: UnsafeMutablePointer<VipsImage>?
        // At 72 dpi a point is a pixel.
        guard cvips_text(Self.markupEscaped(text), font, 72, &out) == 0, let out else {
            throw ReportVips.failure("cannot render the text '\(text)'")
        }
        defer { g_object_unref(out) }
        var length = 0
        guard let memory = vips_image_write_to_memory(out, &length) else {
            throw ReportVips.failure("cannot render the text '\(text)'")
        }
        defer { g_free(memory) }
        let width = Int(vips_image_get_width(out))
        let height = Int(vips_image_get_height(out))
        self.init(
            width: width, height: height,
            coverage: Array(UnsafeRawBufferPointer(start: memory, count: min(length, width * height))))
    }

    private init(width: Int, height: Int, coverage: [UInt8]) {
        self.width = width
        self.height = height
        self.coverage = coverage
    }

    /// The mask turned a quarter turn anticlockwise (for a vertical axis title).
    func rotatedAnticlockwise() -> TextMask {
        var turned = [UInt8](repeating: 0, count: coverage.count)
        for y in 0..<height {
            for x in 0..<width { turned[(width - 1 - x) * height + y] = coverage[y * width + x] }
        }
        return TextMask(width: height, height: width, coverage: turned)
    }

    /// vips_text reads Pango markup, in which &, < and > are syntax.
    static func markupEscaped(_ text: String) -> String {
        var escaped = ""
        for character in text {
            switch character {
            case "&": escaped += "&amp;"
            case "<": escaped += "&lt;"
            case ">": escaped += "&gt;"
            default: escaped.append(character)
            }
        }
        return escaped
    }
}
