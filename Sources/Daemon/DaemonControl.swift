import FileOutput
import Foundation

// The control surface of a running daemon: what the socket server (module Control), the CLI and
// tests call. Every value that crosses it is Codable so a transport can serialise it as it likes
// (the socket uses JSON lines; `JSONEncoder().keyEncodingStrategy = .convertToSnakeCase` gives the
// protocol's snake_case names). Methods never block the caller's thread on image work: translation
// runs on the daemon's worker threads and `translate` suspends until it is done.

/// What a controller may ask of the daemon. `Daemon` is the real implementation; a fake for
/// transport tests only needs to conform to this.
public protocol DaemonControl: Sendable {
    /// Uptime, queue length per direction, current jobs, training state, memory use.
    func status() async -> DaemonStatus
    /// The models the registry offers, as of the last (re)load.
    func models() async -> [ModelInfo]
    /// Every direction a model offers (one inbox each).
    func directions() async -> [DirectionInfo]
    /// Translates one image ahead of every watch-folder job. Throws `DaemonError`.
    func translate(_ request: TranslateRequest) async throws -> TranslateReply
    /// `translate`, telling `progress` how far it is: 0 once it is queued (which gives its job
    /// id, for `cancel`), then the translator's fractions as it works, monotone, up to 1 when
    /// the result is ready. Called from the daemon's worker threads; it must not block.
    func translate(
        _ request: TranslateRequest, progress: @escaping @Sendable (TranslationProgress) -> Void
    ) async throws -> TranslateReply
    /// Queued and running jobs, interactive first, then in the order they will run.
    func jobs() async -> [JobInfo]
    /// Cancels a queued job (a watch-folder file then goes to failed/ with code `cancelled`);
    /// a running job is flagged: its translation runs to the end (or to the translator's next
    /// checkpoint, if it has any) but its result is not published and it fails as `cancelled`.
    func cancel(id: String) async -> CancelReply
    /// Re-reads the configuration file (when there is one) and rescans the models directory.
    func reload() async throws -> ReloadReply
    /// Stops taking work, lets the current image finish (or leaves it in work/ for the next start
    /// after the configured grace period) and ends `run()`. Returns at once.
    func shutdown() async
    /// A new stream of events (image done, image failed, training progress, directions changed)
    /// from now on. Ends when the daemon stops or when the consumer stops iterating.
    func events() -> AsyncStream<DaemonEvent>
    /// Starts a fine-tune job (one at a time: `busy` while one runs); returns its status.
    func finetune(_ request: FineTuneRequest) async throws -> TrainingJobStatus
    /// status, pause, resume, stop (publishing unless `publish` is false) or publish, by `peer`.
    func training(action: String, publish: Bool, peer: UInt32) async throws -> TrainingJobStatus
    /// Makes an earlier version of a model current; returns the version now served.
    func rollback(model: String, version: Int) async throws -> Int
    /// Keeps one uploaded training image in the model's training-data folder (domain A or B);
    /// returns how many that domain holds.
    func uploadTrainingImage(model: String, domain: String, name: String, bytes: Data, clear: Bool) async throws
        -> Int
}

extension DaemonControl {
    public func finetune(_ request: FineTuneRequest) async throws -> TrainingJobStatus {
        throw DaemonError(.unsupported, "this daemon was started without training support")
    }

    public func training(action: String, publish: Bool, peer: UInt32) async throws -> TrainingJobStatus {
        throw DaemonError(.unsupported, "this daemon was started without training support")
    }

    public func rollback(model: String, version: Int) async throws -> Int {
        throw DaemonError(.unsupported, "this daemon was started without training support")
    }

    public func uploadTrainingImage(model: String, domain: String, name: String, bytes: Data, clear: Bool)
        async throws -> Int
    {
        throw DaemonError(.unsupported, "this daemon was started without training support")
    }
}

extension DaemonControl {
    /// A control surface without progress reports translates and stays silent.
    public func translate(
        _ request: TranslateRequest, progress: @escaping @Sendable (TranslationProgress) -> Void
    ) async throws -> TranslateReply {
        try await translate(request)
    }
}

/// How far an interactive translation is.
public struct TranslationProgress: Codable, Sendable, Equatable {
    public var job: String
    /// 0 to 1.
    public var fraction: Double

    public init(job: String, fraction: Double) {
        self.job = job
        self.fraction = fraction
    }
}

/// An error with a stable machine-readable code and a message a person can act on.
public struct DaemonError: Error, Codable, Sendable, Equatable, CustomStringConvertible {
    /// Stable codes. The first group matches docs/PROTOCOL.md; the second says why an image failed
    /// (they also appear in failed/NAME.error.json).
    public enum Code: String, Codable, Sendable {
        case badRequest = "bad_request"
        case notFound = "not_found"
        case forbidden = "forbidden"
        case busy = "busy"
        case tooLarge = "too_large"
        case `internal` = "internal"
        case unsupported = "unsupported"
        // Image failures.
        case noModel = "no_model"
        case unreadableImage = "unreadable_image"
        case writeFailed = "write_failed"
        case cancelled = "cancelled"
        case shuttingDown = "shutting_down"
        case translationFailed = "translation_failed"
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }
}

public struct DaemonStatus: Codable, Sendable {
    public var version: String
    public var pid: Int32
    public var uptimeSeconds: Double
    /// Spool root (inbox/, work/, outbox/, failed/ live under it).
    public var root: String
    /// Watch-folder jobs waiting, per direction (every known direction appears, with 0 when idle).
    public var queues: [String: Int]
    /// Interactive (socket) requests waiting.
    public var interactiveQueue: Int
    /// Jobs being translated right now (at most `workers`).
    public var current: [JobInfo]
    public var workers: Int
    public var training: TrainingJobStatus
    public var memory: MemoryUse
    /// Images written / failed since start.
    public var processed: Int
    public var failed: Int
    /// True once shutdown has begun.
    public var stopping: Bool

    public init(
        version: String, pid: Int32, uptimeSeconds: Double, root: String, queues: [String: Int],
        interactiveQueue: Int, current: [JobInfo], workers: Int, training: TrainingJobStatus,
        memory: MemoryUse, processed: Int, failed: Int, stopping: Bool
    ) {
        self.version = version
        self.pid = pid
        self.uptimeSeconds = uptimeSeconds
        self.root = root
        self.queues = queues
        self.interactiveQueue = interactiveQueue
        self.current = current
        self.workers = workers
        self.training = training
        self.memory = memory
        self.processed = processed
        self.failed = failed
        self.stopping = stopping
    }
}

public struct MemoryUse: Codable, Sendable {
    /// Resident set size of the daemon process (from /proc/self/status), bytes.
    public var residentBytes: UInt64
    /// Peak resident set size, bytes.
    public var peakResidentBytes: UInt64
    /// The configured per-image memory budget, bytes (0 = unlimited).
    public var limitBytes: UInt64

    public init(residentBytes: UInt64, peakResidentBytes: UInt64, limitBytes: UInt64) {
        self.residentBytes = residentBytes
        self.peakResidentBytes = peakResidentBytes
        self.limitBytes = limitBytes
    }
}

public struct ModelInfo: Codable, Sendable, Equatable {
    /// Folder name in the models directory.
    public var name: String
    /// The directions it offers (e.g. `horse2zebra`, `zebra2horse`).
    public var directions: [String]
    public var path: String
    /// The model's current version (what translations use), when the catalog knows it.
    public var version: Int?

    public init(name: String, directions: [String], path: String, version: Int? = nil) {
        self.name = name
        self.directions = directions
        self.path = path
        self.version = version
    }
}

public struct DirectionInfo: Codable, Sendable, Equatable, Hashable {
    /// The inbox name, e.g. `modern2vintage`.
    public var name: String
    /// The model that provides it.
    public var model: String
    /// Source and target domain names when the model says them.
    public var from: String?
    public var to: String?

    public init(name: String, model: String, from: String? = nil, to: String? = nil) {
        self.name = name
        self.model = model
        self.from = from
        self.to = to
    }
}

/// One interactive translation: an encoded image in, the encoded result back. (The socket
/// reads and writes the peer's files itself, with the peer's rights: docs/PROTOCOL.md.)
public struct TranslateRequest: Codable, Sendable {
    public var direction: String
    public var inputBytes: Data
    /// File name hint for the input (its extension tells the format for `same`), e.g. `x.png`.
    public var inputName: String?
    public var format: OutputFormat?
    /// 1...100 for lossy formats.
    public var quality: Int?
    /// This image's memory budget in bytes; it may only lower the daemon's (`MemoryBudget`).
    public var memoryLimit: UInt64?

    public init(
        direction: String, inputBytes: Data, inputName: String? = nil, format: OutputFormat? = nil,
        quality: Int? = nil, memoryLimit: UInt64? = nil
    ) {
        self.direction = direction
        self.inputBytes = inputBytes
        self.inputName = inputName
        self.format = format
        self.quality = quality
        self.memoryLimit = memoryLimit
    }
}

public struct TranslateReply: Codable, Sendable {
    public var id: String
    public var direction: String
    /// The encoded result.
    public var outputBytes: Data
    public var format: OutputFormat
    public var width: Int
    public var height: Int
    /// Time spent translating (load + network + save), not waiting in the queue.
    public var milliseconds: Double
    /// The version of the model that served.
    public var modelVersion: Int?

    public init(
        id: String, direction: String, outputBytes: Data, format: OutputFormat, width: Int, height: Int,
        milliseconds: Double, modelVersion: Int? = nil
    ) {
        self.modelVersion = modelVersion
        self.id = id
        self.direction = direction
        self.outputBytes = outputBytes
        self.format = format
        self.width = width
        self.height = height
        self.milliseconds = milliseconds
    }
}

public struct JobInfo: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable { case interactive, watch, training }
    public enum State: String, Codable, Sendable { case queued, running }

    public var id: String
    public var kind: Kind
    public var state: State
    public var direction: String
    /// For watch jobs: the path relative to `inbox/<direction>/` (e.g. `trip/cat.jpg`).
    /// For interactive jobs: the input path, or `<inline>`.
    public var input: String
    public var queuedAt: Date
    public var startedAt: Date?

    public init(
        id: String, kind: Kind, state: State, direction: String, input: String, queuedAt: Date,
        startedAt: Date? = nil
    ) {
        self.id = id
        self.kind = kind
        self.state = state
        self.direction = direction
        self.input = input
        self.queuedAt = queuedAt
        self.startedAt = startedAt
    }
}

public struct CancelReply: Codable, Sendable, Equatable {
    public enum Outcome: String, Codable, Sendable {
        /// Removed from the queue before it started.
        case cancelled
        /// Running; flagged, stops at the translator's next checkpoint (or finishes).
        case cancelRequested = "cancel_requested"
        case notFound = "not_found"
    }
    public var id: String
    public var outcome: Outcome

    public init(id: String, outcome: Outcome) {
        self.id = id
        self.outcome = outcome
    }
}

public struct ReloadReply: Codable, Sendable, Equatable {
    public var directions: [String]
    public var added: [String]
    public var removed: [String]

    public init(directions: [String], added: [String], removed: [String]) {
        self.directions = directions
        self.added = added
        self.removed = removed
    }
}

/// Something that happened, for subscribers. Fields beyond `kind` and `time` depend on the kind.
public struct DaemonEvent: Codable, Sendable {
    public enum Kind: String, Codable, Sendable {
        case imageDone = "image_done"
        case imageFailed = "image_failed"
        case trainingProgress = "training_progress"
        case directionsChanged = "directions_changed"
        case trainingDone = "training_done"
        case modelPublished = "model_published"
    }

    public var kind: Kind
    public var time: Date
    public var jobId: String?
    public var jobKind: JobInfo.Kind?
    public var direction: String?
    public var input: String?
    public var output: String?
    public var width: Int?
    public var height: Int?
    public var milliseconds: Double?
    /// The version of the model that served an image.
    public var modelVersion: Int?
    public var error: DaemonError?
    public var training: TrainingJobStatus?
    public var directions: [String]?

    public init(
        kind: Kind, time: Date = Date(), jobId: String? = nil, jobKind: JobInfo.Kind? = nil,
        direction: String? = nil, input: String? = nil, output: String? = nil, width: Int? = nil,
        height: Int? = nil, milliseconds: Double? = nil, modelVersion: Int? = nil, error: DaemonError? = nil,
        training: TrainingJobStatus? = nil, directions: [String]? = nil
    ) {
        self.kind = kind
        self.time = time
        self.jobId = jobId
        self.jobKind = jobKind
        self.direction = direction
        self.input = input
        self.output = output
        self.width = width
        self.height = height
        self.milliseconds = milliseconds
        self.modelVersion = modelVersion
        self.error = error
        self.training = training
        self.directions = directions
    }
}
