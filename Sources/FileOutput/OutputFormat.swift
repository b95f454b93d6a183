/// The formats the daemon, its socket and the CLI write. `same` keeps the input's format (by its
/// file name's extension). The one map between these formats and file name extensions.
public enum OutputFormat: String, Codable, Sendable, CaseIterable {
    case same, jpeg, png, webp, tiff

    /// File name extension for a concrete format; nil for `same`.
    public var fileExtension: String? {
        switch self {
        case .same: nil
        case .jpeg: "jpg"
        case .png: "png"
        case .webp: "webp"
        case .tiff: "tif"
        }
    }

    /// The format an extension names (any case, no dot); nil for one none of these writes.
    public init?(fileExtension: String) {
        switch fileExtension.lowercased() {
        case "jpg", "jpeg", "jpe": self = .jpeg
        case "png": self = .png
        case "webp": self = .webp
        case "tif", "tiff": self = .tiff
        default: return nil
        }
    }

    /// The format a file name's extension names; nil when it names none of these.
    public init?(fileName: String) {
        guard let dot = fileName.lastIndex(of: "."), !fileName[dot...].contains("/") else { return nil }
        self.init(fileExtension: String(fileName[fileName.index(after: dot)...]))
    }
}

/// Encoder quality for the lossy formats (JPEG, WebP): one range, one message.
public enum Quality {
    public static let range = 1...100

    /// Why `quality` cannot be used, or nil when it can.
    public static func problem(_ quality: Int) -> String? {
        range.contains(quality) ? nil : "quality must be within 1...100, not \(quality)"
    }
}
