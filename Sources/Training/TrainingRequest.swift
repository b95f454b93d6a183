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

/// Options a resumed run may change: the schedule, the logs, the threads, and how the images
/// are prepared (a later fine-tune may bring other photos). The rest (networks, losses, the
/// optimiser) are the checkpoint's, or the run would not be the same run; giving one of those
/// with another value is refused (`resumeProblems`), never silently dropped.
let resumableOptions: Set<String> = [
    "n_epochs", "n_epochs_decay", "max_iters", "print_freq", "display_freq", "save_latest_freq", "save_epoch_freq",
    "threads", "exact_conv", "preprocess", "load_size", "crop_size", "no_flip", "serial_batches", "max_dataset_size",
]

extension TrainingOptions {
    /// Options the user gave against a checkpoint's recipe, each with what the checkpoint has.
    func resumeProblems(checkpoint: TrainingOptions, given: Set<String>, model: String) -> [String] {
        let mine = dictionary
        let theirs = checkpoint.dictionary
        return given.subtracting(resumableOptions).sorted().compactMap { key in
            guard let value = mine[key], let kept = theirs[key], value != kept else { return nil }
            return "--\(key) \(value): the training checkpoint of \(model) has \(key) \(kept), and a resumed run "
                + "keeps it (leave --\(key) out; a resumed run may change "
                + resumableOptions.subtracting(["threads"]).sorted().joined(separator: ", ") + ")"
        }
    }

    /// A model's own networks fix the architecture: options the user left out take the model's
    /// values (so that networks made fresh beside them, G_B for a model that has only G_A, have
    /// the same shape), and options given against them are refused.
    mutating func fit(to manifest: ModelManifest, given: Set<String>, model: String) -> [String] {
        var problems: [String] = []
        func fit<T: Equatable>(_ key: String, _ path: WritableKeyPath<TrainingOptions, T>, _ value: T, _ what: String) {
            if !given.contains(key) {
                self[keyPath: path] = value
            } else if self[keyPath: path] != value {
                problems.append(
                    "--\(key) \(self[keyPath: path]): \(model)'s \(what) has \(key) \(value), and a fine-tune keeps "
                        + "the model's networks (leave --\(key) out, or train a new model under another --name)")
            }
        }
        let generators: [(NetworkRole, Bool)] = [(.generatorA, false), (.generatorB, true)]
        if let (role, reversed, g) = generators.lazy.compactMap({ role, reversed in
            manifest[role]?.architecture.generator.map { (role, reversed, $0) }
        }).first {
            let what = role.rawValue
            if g.blocks == 6 || g.blocks == 9 { fit("netG", \.netG, "resnet_\(g.blocks)blocks", what) }
            fit("ngf", \.ngf, g.ngf, what)
            fit("input_nc", \.inputNC, reversed ? g.outputChannels : g.inputChannels, what)
            fit("output_nc", \.outputNC, reversed ? g.inputChannels : g.outputChannels, what)
        }
        let discriminators: [NetworkRole] = [.discriminatorA, .discriminatorB]
        if let (role, d) = discriminators.lazy.compactMap({ role in
            manifest[role]?.architecture.discriminator.map { (role, $0) }
        }).first {
            let what = role.rawValue
            fit("ndf", \.ndf, d.ndf, what)
            let layers = netD == "basic" ? 3 : nLayersD
            if !given.contains("netD") && !given.contains("n_layers_D") {
                if d.layers != 3 { (netD, nLayersD) = ("n_layers", d.layers) }
            } else if layers != d.layers {
                problems.append(
                    "--netD \(netD) --n_layers_D \(nLayersD): \(model)'s \(what) has \(d.layers) layers, and a "
                        + "fine-tune keeps the model's networks (leave --netD and --n_layers_D out)")
            }
        }
        return problems
    }
}

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
        case "preprocess": preprocess = other.preprocess
        case "load_size": loadSize = other.loadSize
        case "crop_size": cropSize = other.cropSize
        case "no_flip": noFlip = other.noFlip
        case "serial_batches": serialBatches = other.serialBatches
        case "max_dataset_size": maxDatasetSize = other.maxDatasetSize
        default: preconditionFailure("\(key) is not a resumable option")
        }
    }
}
