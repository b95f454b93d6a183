/// Why the training data cannot be used, as one line a user can act on.
public struct DataError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// A domain folder is missing or is not a folder.
        case missingFolder
        /// A domain folder holds no image files.
        case noImages
        /// Every image file of a domain failed to load.
        case allUnreadable
        /// The options contradict each other.
        case invalidOptions
    }

    public let kind: Kind
    /// The folder concerned (empty for options).
    public let folder: String
    public let description: String

    init(_ kind: Kind, folder: String, _ description: String) {
        self.kind = kind
        self.folder = folder
        self.description = description
    }
}
