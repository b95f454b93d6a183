import Foundation
import Models

/// What `cyclegand train` (or the daemon's fine-tune job) asks for.
public struct TrainingRequest: Sendable {
    /// A folder with trainA/ and trainB/, or the two folders themselves.
    public enum Data: Sendable {
        case dataroot(String)
        case folders(a: String, b: String)
    }

    public var data: Data
    public var name: String
    /// Domain names of a new model (A and B when not given).
    public var domains: (a: String, b: String)?
    public var store: ModelStore
    public var continueTrain: Bool
    public var options: TrainingOptions
    /// Options the user gave explicitly: a resumed run takes these over its checkpoint's.
    public var given: Set<String>

    public init(
        data: Data, name: String, domains: (a: String, b: String)? = nil, store: ModelStore, continueTrain: Bool,
        options: TrainingOptions, given: Set<String> = []
    ) {
        self.data = data
        self.name = name
        self.domains = domains
        self.store = store
        self.continueTrain = continueTrain
        self.options = options
        self.given = given
    }
}

/// Options a resumed run may change; the rest (networks, losses, data
/// preparation) are the checkpoint's, or the run would not be the same run.
let resumableOptions: Set<String> = [
    "n_epochs", "n_epochs_decay", "max_iters", "print_freq", "display_freq", "save_latest_freq", "save_epoch_freq",
    "threads", "exact_conv",
]

/// How a run ended.
public struct TrainingSummary: Sendable {
    public enum Reason: Sendable { case finished, maxIters, stopped }
    public var reason: Reason
    public var epoch: Int
    public var iterations: Int
    public var totalIters: Int
    public var losses: Losses?
    public var skipped: Int
    /// The model version the generators were published as (nil when nothing was trained).
    public var version: Int?
}

/// Reports a run's progress (a terminal line, log lines, the daemon's status).
/// Called from the training thread, and for warnings from the data thread too.
public protocol TrainingObserver: AnyObject, Sendable {
    func message(_ text: String)
    func progress(_ p: TrainingProgress)
}

public struct TrainingProgress: Sendable {
    public var epoch: Int
    public var lastEpoch: Int
    public var epochIter: Int
    public var epochSize: Int
    public var totalIters: Int
    public var iterations: Int
    public var maxIters: Int?
    public var losses: Losses
    public var iterationsPerSecond: Double
    public var secondsLeft: Double?
    public var skipped: Int
}

extension TrainingOptions {
    /// Copies one option, by its reference name, from `other`.
    mutating func take(_ key: String, from other: TrainingOptions) {
        switch key {
        case "n_epochs": nEpochs = other.nEpochs
        case "n_epochs_decay": nEpochsDecay = other.nEpochsDecay
        case "max_iters": maxIters = other.maxIters
        case "print_freq": printFreq = other.printFreq
        case "display_freq": displayFreq = other.displayFreq
        case "save_latest_freq": saveLatestFreq = other.saveLatestFreq
        case "save_epoch_freq": saveEpochFreq = other.saveEpochFreq
        case "threads": threads = other.threads
        case "exact_conv": exactConv = other.exactConv
        default: break
        }
    }
}
