import FileOutput
import Foundation

/// How to translate one image. The format is always concrete here (the daemon resolves `same`).
public struct TranslationOptions: Sendable, Equatable {
    public var format: OutputFormat
    public var quality: Int
    /// This image's memory budget in bytes (0 = unlimited); over it the translator streams in
    /// bands. Never above `sharedMemoryLimit` (see `MemoryBudget.share`).
    public var memoryLimit: UInt64
    /// What everything the daemon translates at once may hold together (the daemon's
    /// `memory_limit`, 0 = unlimited): an image starts only once its memory fits beside the others'.
    public var sharedMemoryLimit: UInt64
    /// Refuse (code `too_large`) images with more pixels, before decoding them.
    public var maxPixels: Int

    /// - Parameter sharedMemoryLimit: defaults to `memoryLimit`.
    public init(
        format: OutputFormat, quality: Int, memoryLimit: UInt64, sharedMemoryLimit: UInt64? = nil, maxPixels: Int
    ) {
        self.format = format
        self.quality = quality
        self.memoryLimit = memoryLimit
        self.sharedMemoryLimit = sharedMemoryLimit ?? memoryLimit
        self.maxPixels = maxPixels
    }
}

/// The daemon's memory limit and a request's own. The daemon's `memory_limit` bounds everything
/// it holds at once; a request's `memory_limit` may lower its own share, never lift it (0, or
/// anything above the daemon's, is the daemon's).
public enum MemoryBudget {
    /// The budget of one image: the smaller of the two, where 0 means no limit.
    public static func share(asked: UInt64?, daemon: UInt64) -> UInt64 {
        guard let asked, asked > 0 else { return daemon }
        return daemon == 0 ? asked : min(asked, daemon)
    }

    /// A limit in bytes as the imaging code counts it (0, no limit, is `Int.max`).
    public static func bytes(_ limit: UInt64) -> Int {
        limit == 0 ? Int.max : Int(clamping: limit)
    }
}

public struct TranslationResult: Sendable, Equatable {
    public var width: Int
    public var height: Int
    public var milliseconds: Double
    /// The version of the model whose generator served (nil when the translator does not know).
    public var modelVersion: Int?

    public init(width: Int, height: Int, milliseconds: Double, modelVersion: Int? = nil) {
        self.width = width
        self.height = height
        self.milliseconds = milliseconds
        self.modelVersion = modelVersion
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
    /// `progress` hears how far it is (0 to 1, monotone, from the thread that calls this); a
    /// translator without steps may stay silent.
    func translate(
        input: URL, output: URL, direction: String, options: TranslationOptions, cancel: CancellationFlag,
        progress: @escaping @Sendable (Double) -> Void
    ) throws -> TranslationResult

    /// The set of models may have changed (reload): drop cached generators that are stale.
    func modelsChanged()
}

extension Translator {
    public func modelsChanged() {}

    /// `translate` for a caller that does not follow its progress.
    public func translate(
        input: URL, output: URL, direction: String, options: TranslationOptions, cancel: CancellationFlag
    ) throws -> TranslationResult {
        try translate(
            input: input, output: output, direction: direction, options: options, cancel: cancel, progress: { _ in })
    }
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
