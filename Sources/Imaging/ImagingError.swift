/// Why an image could not be read or written, as one line a user can act on.
public struct ImagingError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// The file is missing, empty, not an image, or in a format this build refuses.
        case unreadable
        /// The file looks like an image but decoding failed (truncated, corrupt).
        case corrupt
        /// The header claims more pixels than the configured limit.
        case tooLarge
        /// The output could not be written (unknown format, disk, permissions).
        case writeFailed
        /// The caller passed something inconsistent (shape, sizes, options).
        case invalidArgument
        /// The caller asked to stop (a streamed run checks between bands).
        case cancelled
    }

    public let kind: Kind
    public let path: String
    public let reason: String

    public init(_ kind: Kind, path: String, reason: String) {
        self.kind = kind
        self.path = path
        self.reason = reason
    }

    public var description: String { "\(path): \(reason)" }
}
