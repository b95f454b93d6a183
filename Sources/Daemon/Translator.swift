import Foundation

/// How to translate one image. The format is always concrete here (the daemon resolves `same`).
public struct TranslationOptions: Sendable, Equatable {
    public var format: OutputFormat
    public var quality: Int
    /// Per-image memory budget in bytes (0 = unlimited); over it the translator streams in bands.
    public var memoryLimit: UInt64
    /// Refuse (code `too_large`) images with more pixels, before decoding them.
    public var maxPixels: Int

    public init(format: OutputFormat, quality: Int, memoryLimit: UInt64, maxPixels: Int) {
        self.format = format
        self.quality = quality
        self.memoryLimit = memoryLimit
        self.maxPixels = maxPixels
    }
}

public struct TranslationResult: Sendable, Equatable {
    public var width: Int
    public var height: Int
    public var milliseconds: Double

    public init(width: Int, height: Int, milliseconds: Double) {
        self.width = width
        self.height = height
        self.milliseconds = milliseconds
    }
}

/// Set by `cancel`; a translator that works in steps may check it and throw `cancelled`.
public final class CancellationFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false

    public init() {}

    public var isCancelled: Bool { lock.withLock { value } }
    func cancel() { lock.withLock { value = true } }
}

/// Turns one image file into another with a direction's generator. Implementations keep each
/// generator loaded between calls (no per-image model loading) and are called from the daemon's
/// worker threads, possibly several at once. They throw `DaemonError` with a code that says
/// why (`unreadable_image`, `too_large`, `no_model`, `write_failed`, ...); any other error
/// becomes `translation_failed` with its description.
public protocol Translator: Sendable {
    /// Reads `input` and writes the translation to `output` in `options.format` (the file name's
    /// extension matches the format). Must not leave a partial `output` behind on failure.
    func translate(
        input: URL, output: URL, direction: String, options: TranslationOptions, cancel: CancellationFlag
    ) throws -> TranslationResult

    /// The set of models may have changed (reload): drop cached generators that are stale.
    func modelsChanged()
}

extension Translator {
    public func modelsChanged() {}
}

/// The models the daemon can use, read from the models folder.
public protocol ModelCatalog: Sendable {
    /// Folder to watch for new or removed models (nil: nothing to watch).
    var modelsDirectory: URL? { get }
    /// (Re)scans the models folder. A model that cannot be read is left out and reported in
    /// `problems`, so one bad folder does not take the others down.
    func scan() throws -> ModelScan
}

public struct ModelScan: Sendable, Equatable {
    public var models: [ModelInfo]
    public var directions: [DirectionInfo]
    /// One line per model folder that could not be read.
    public var problems: [String]

    public init(models: [ModelInfo], directions: [DirectionInfo], problems: [String] = []) {
        self.models = models
        self.directions = directions
        self.problems = problems
    }
}
