import Foundation

// The fine-tune job as the daemon sees it: what a client asks for, what the job reports, and the
// engine that trains (module FineTuning plugs the real one in; this module knows no networks).

/// One option value of a fine-tune request, as JSON gave it.
public enum OptionValue: Codable, Sendable, Equatable, CustomStringConvertible {
    case bool(Bool)
    case number(Double)
    case string(String)

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let b = try? c.decode(Bool.self) {
            self = .bool(b)
        } else if let n = try? c.decode(Double.self) {
            self = .number(n)
        } else if let s = try? c.decode(String.self) {
            self = .string(s)
        } else {
            throw DecodingError.dataCorruptedError(in: c, debugDescription: "an option is a boolean, number or string")
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .bool(let b): try c.encode(b)
        case .number(let n): try c.encode(n)
        case .string(let s): try c.encode(s)
        }
    }

    public var description: String {
        switch self {
        case .bool(let b): "\(b)"
        case .number(let n): n == n.rounded() && abs(n) < 1e15 ? "\(Int(n))" : "\(n)"
        case .string(let s): "\"\(s)\""
        }
    }
}

/// A fine-tune job: train `model` on two folders of images. Kept in the model's folder while it
/// runs, so that a restarted daemon finds it and continues it.
public struct FineTuneRequest: Codable, Sendable, Equatable {
    /// Where the images are, as the daemon can read them.
    public enum Data: Codable, Sendable, Equatable {
        /// A folder with trainA/ and trainB/.
        case dataroot(String)
        /// The two domains' folders.
        case folders(a: String, b: String)
        /// The model's own training-data folder, filled by `training_data` uploads.
        case uploaded
    }

    public var model: String
    public var data: Data
    /// Training options under the reference's names (`n_epochs`, `crop_size`, `lr`, ...).
    public var options: [String: OptionValue]
    /// The uid that started the job: it (or the daemon's own) may pause, stop or publish it.
    public var owner: UInt32

    public init(model: String, data: Data, options: [String: OptionValue] = [:], owner: UInt32) {
        self.model = model
        self.data = data
        self.options = options
        self.owner = owner
    }
}

/// What a fine-tune job is doing, for `status`, `training` and events.
public struct TrainingJobStatus: Codable, Sendable, Equatable {
    public enum State: String, Codable, Sendable {
        case idle, queued, running, yielding, paused, stopping, done, failed
    }

    public var state: State
    public var id: String?
    public var model: String?
    /// The epoch, and the last one of the schedule.
    public var epoch: Int?
    public var lastEpoch: Int?
    /// Images done in this epoch (the reference's `iters`) and the epoch's size.
    public var iters: Int?
    public var epochSize: Int?
    /// Images done since the model's training began (the reference's `total_iters`).
    public var totalIters: Int?
    /// Iterations done, and where this job ends (its `max_iters`, or the schedule's end).
    public var iterations: Int?
    public var plannedIterations: Int?
    /// The latest losses under the reference's names (`D_A`, `G_A`, ..., `idt_B`).
    public var losses: [String: Double]?
    public var itersPerSecond: Double?
    public var etaSeconds: Double?
    /// Training images skipped as unreadable.
    public var skipped: Int?
    /// The model version that translations use now, and the one this job published last.
    public var servedVersion: Int?
    public var publishedVersion: Int?
    /// Why it failed, or how it ended.
    public var message: String?
    public var owner: UInt32?

    public init(state: State = .idle) {
        self.state = state
    }

    public static let idle = TrainingJobStatus()
}

/// What a running job does next; the engine asks before every iteration.
public enum TrainingJobCommand: Sendable, Equatable {
    case proceed
    /// Publish the generators now, then go on.
    case publish
    /// Checkpoint and end; publish first when `publish`.
    case stop(publish: Bool)
}

/// The trainer behind `finetune`. Errors are `DaemonError`s with messages that name the field.
public protocol TrainingEngine: Sendable {
    /// Checks a request before anything starts (options, the model, the folders and their images)
    /// and returns the memory the job will hold, in bytes.
    func check(_ request: FineTuneRequest) throws -> Int
    /// Trains in `slot` until the job ends, asking `control` before every iteration and telling it
    /// the progress. Returns how it ended.
    func run(_ request: FineTuneRequest, id: String, slot: LongJobSlot, control: TrainingJobControl) throws -> String
    /// The jobs the last run of the daemon left unfinished (found in the models' folders).
    func unfinishedJobs() -> [(id: String, request: FineTuneRequest)]
    /// Marks a job finished in its model's folder (it is not continued after a restart).
    func finish(model: String)
    /// Makes an earlier version the model's current one; returns it.
    func rollback(model: String, version: Int) throws -> Int
    /// Checks one uploaded training image and keeps it in the model's training-data folder
    /// (`clear` empties that folder first); returns the images the domain's folder holds.
    func storeUpload(model: String, domain: String, name: String, bytes: Foundation.Data, clear: Bool) throws -> Int
}

/// The daemon's side of one running job: the commands the clients give (pause, resume, stop,
/// publish) and the progress the engine reports. The engine's training thread calls `next()`
/// before every iteration; a paused job waits there.
public final class TrainingJobControl: @unchecked Sendable {
    private let condition = NSCondition()
    private let onChange: @Sendable (TrainingJobStatus, DaemonEvent.Kind?) -> Void
    // Guarded by `condition`.
    private var status: TrainingJobStatus
    private var paused = false
    private var publishWanted = false
    private var stopWanted: Bool?  // publish when stopping
    private var cancelled: CancellationFlag?

    init(status: TrainingJobStatus, onChange: @escaping @Sendable (TrainingJobStatus, DaemonEvent.Kind?) -> Void) {
        self.status = status
        self.onChange = onChange
    }

    var snapshot: TrainingJobStatus { condition.withLock { status } }

    /// The engine's question before every iteration. Blocks while paused; a cancelled job (the
    /// daemon stopping, or `cancel`) stops without publishing.
    public func next() -> TrainingJobCommand {
        condition.lock()
        defer { condition.unlock() }
        while true {
            if cancelled?.isCancelled == true { return .stop(publish: false) }
            if let publish = stopWanted { return .stop(publish: publish) }
            if publishWanted {
                publishWanted = false
                return .publish
            }
            if !paused { return .proceed }
            // Woken by resume/stop; the timeout notices a cancel flag set elsewhere.
            _ = condition.wait(until: Date().addingTimeInterval(0.2))
        }
    }

    /// The engine's report of the latest iteration (its fields other than state and id).
    public func progress(_ update: (inout TrainingJobStatus) -> Void, event: DaemonEvent.Kind? = nil) {
        let s = condition.withLock {
            update(&status)
            return status
        }
        onChange(s, event)
    }

    func started(cancel: CancellationFlag) {
        set(.running) { $0.cancelled = cancel }
    }

    func pause() { set(.paused) { $0.paused = true } }

    func resume() { set(.running) { $0.paused = false } }

    func publish() { condition.withLock { publishWanted = true } }

    func stop(publish: Bool) { set(.stopping) { $0.stopWanted = publish } }

    func ended(_ state: TrainingJobStatus.State, message: String) {
        let s = condition.withLock {
            status.state = state
            status.message = message
            status.etaSeconds = nil
            return status
        }
        onChange(s, .trainingDone)
    }

    private func set(_ state: TrainingJobStatus.State, _ change: (TrainingJobControl) -> Void) {
        let s = condition.withLock {
            change(self)
            if status.state != .stopping { status.state = state }
            condition.broadcast()
            return status
        }
        onChange(s, nil)
    }
}
