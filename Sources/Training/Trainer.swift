import CycleGAN
import Foundation
import Models
import Tensor

#if canImport(Glibc)
    import Glibc
#endif

/// A CycleGAN training run on a model of the store: set up from a fresh
/// start, from a model's networks, or from its checkpoint, then `run`.
public final class Trainer {
    public let name: String
    public private(set) var options: TrainingOptions
    public let domains: [String]
    /// Networks the run initialised because the model did not have them (empty on a resume).
    public private(set) var initialised: [String] = []
    public private(set) var resumed = false
    let model: CycleGANModel
    private var state: TrainingState
    private let store: ModelStore
    private let dataset: UnalignedDataset
    private let folder: URL
    private let report: TrainingReport
    private let compute: Compute
    private weak var observer: TrainingObserver?
    private let lock: RunLock

    /// The options a run of `request` would train with, checked, without loading any tensor: what
    /// a daemon answers a fine-tune request with before it queues the job.
    public static func options(for request: TrainingRequest) throws -> TrainingOptions {
        let folder = request.store.folder(request.name).appendingPathComponent("training")
        let saved = try TrainingCheckpoint.peekState(in: folder).map { try decodeState($0, model: request.name) }
        return try options(request, checkpoint: saved, manifest: try request.store.manifest(request.name))
    }

    /// A checkpoint's options, but for those a resumed run may change and the user gave; or, for
    /// a model without one, the request's fitted to the model's networks. Every conflict and
    /// unusable value is a `badOptions` naming the option.
    private static func options(_ request: TrainingRequest, checkpoint: TrainingState?, manifest: ModelManifest?)
        throws -> TrainingOptions
    {
        var options = request.options
        if let checkpoint {
            let conflicts = request.options.resumeProblems(
                checkpoint: checkpoint.options, given: request.given, model: request.name)
            if !conflicts.isEmpty { throw TrainingError.badOptions(conflicts) }
            options = checkpoint.options
            for key in request.given.intersection(resumableOptions) {
                options.take(key, from: request.options)
            }
        } else if let manifest {
            let conflicts = options.fit(to: manifest, given: request.given, model: request.name)
            if !conflicts.isEmpty { throw TrainingError.badOptions(conflicts) }
        }
        let problems = options.problems()
        if !problems.isEmpty { throw TrainingError.badOptions(problems) }
        return options
    }

    private static func decodeState(_ data: Data, model: String) throws -> TrainingState {
        let s: TrainingState
        do { s = try JSONDecoder().decode(TrainingState.self, from: data) } catch {
            throw TrainingError.damagedCheckpoint("state.json: \(error)")
        }
        guard s.formatVersion <= TrainingState.formatVersion else {
            throw TrainingError.incompatible(
                "the checkpoint of \(model) was written by a newer cyclegand; upgrade to resume it")
        }
        return s
    }

    /// The layers of a network made fresh: its sibling's shape when the model has one (G_B
    /// mirrors G_A, D_B mirrors D_A, with the plain norms of the reference's `instance`), else
    /// the options'. G_A maps input_nc to output_nc and G_B back; D_A judges B, D_B judges A.
    static func freshArchitecture(_ role: NetworkRole, options: TrainingOptions, beside manifest: ModelManifest?)
        -> [Layer]
    {
        switch role {
        case .generatorA, .generatorB:
            let sibling = role == .generatorA ? NetworkRole.generatorB : .generatorA
            var g = manifest?[sibling]?.architecture.generator ?? options.generatorArchitecture
            g.affine = false
            (g.inputChannels, g.outputChannels) =
                role == .generatorA ? (options.inputNC, options.outputNC) : (options.outputNC, options.inputNC)
            return g.sequential
        case .discriminatorA, .discriminatorB:
            let sibling = role == .discriminatorA ? NetworkRole.discriminatorB : .discriminatorA
            let channels = role == .discriminatorA ? options.outputNC : options.inputNC
            var d =
                manifest?[sibling]?.architecture.discriminator ?? options.discriminatorArchitecture(channels: channels)
            d.affine = false
            d.inputChannels = channels
            return d.sequential
        }
    }

    /// - Parameter compute: the threads the kernels use (the daemon passes its long-job share, which
    ///   yields to images inside a layer); nil: `--threads`.
    public init(_ request: TrainingRequest, observer: TrainingObserver?, compute: Compute? = nil) throws {
        try ModelImporter.checkName(request.name, what: "model name")
        if let d = request.domains {
            try ModelImporter.checkName(d.a, what: "domain name")
            try ModelImporter.checkName(d.b, what: "domain name")
        }
        name = request.name
        store = request.store
        self.observer = observer
        folder = store.folder(request.name).appendingPathComponent("training")
        let manifest = try store.manifest(request.name)
        // One run per model: a second would clean up the first one's checkpoint writes.
        lock = try RunLock(store: store, model: request.name)
        let checkpoint = try TrainingCheckpoint.load(in: folder)
        if !request.continueTrain && (manifest != nil || checkpoint != nil) {
            throw TrainingError.modelExists(
                "a model named \(request.name) already exists in \(store.root.path): add --continue_train to "
                    + "resume or fine-tune it, or choose another --name (nothing was changed)")
        }
        if request.continueTrain && manifest == nil && checkpoint == nil {
            throw TrainingError.noSuchModel(
                "--continue_train: there is no model named \(request.name) in \(store.root.path) "
                    + "(cyclegand models lists them; without --continue_train a new model is created)")
        }

        let saved = try checkpoint.map { try Self.decodeState($0.state, model: request.name) }
        let options = try Self.options(request, checkpoint: saved, manifest: manifest)
        self.options = options
        self.compute = compute ?? Compute(threads: options.threads)

        // The data first: an empty or missing folder is an error before anything else happens.
        let warn: @Sendable (String) -> Void = { [weak observer] text in observer?.message("warning: \(text)") }
        switch request.data {
        case .dataroot(let root):
            dataset = try UnalignedDataset(dataroot: root, options: options.data, onWarning: warn)
        case .folders(let a, let b):
            dataset = try UnalignedDataset(folderA: a, folderB: b, options: options.data, onWarning: warn)
        }

        let domains =
            saved?.domains ?? manifest.map { [$0.domains.a, $0.domains.b] }
            ?? [request.domains?.a ?? "A", request.domains?.b ?? "B"]
        self.domains = domains

        // The four networks: from the checkpoint, from the model, or fresh.
        var random = SplitMix64(seed: options.seed).derived(0x1417)
        var initialised: [String] = []
        let algorithm: Conv2D.Algorithm = options.exactConv ? .exact : .automatic
        func network(_ role: NetworkRole, generator: Bool) throws -> TrainableNetwork {
            if let saved {
                let layers =
                    switch role {
                    case .generatorA: saved.generatorA.sequential
                    case .generatorB: saved.generatorB.sequential
                    case .discriminatorA: saved.discriminatorA.sequential
                    case .discriminatorB: saved.discriminatorB.sequential
                    }
                // Values come from the checkpoint's tensors below.
                let zeros = Layer.parameterShapes(of: layers).map { ($0.name, Tensor(shape: $0.shape)) }
                return TrainableNetwork(
                    layers: layers, weights: Dictionary(uniqueKeysWithValues: zeros), algorithm: algorithm)
            }
            if let entry = manifest?[role] {
                let weights = try request.store.weights(model: request.name, role: role)
                if generator, let arch = entry.architecture.generator {
                    return TrainableNetwork(layers: arch.sequential, weights: weights, algorithm: algorithm)
                }
                if !generator, let arch = entry.architecture.discriminator {
                    return TrainableNetwork(layers: arch.sequential, weights: weights, algorithm: algorithm)
                }
            }
            initialised.append(role.rawValue)
            let layers = Self.freshArchitecture(role, options: options, beside: manifest)
            var stream = random.derived(UInt64(NetworkRole.allCases.firstIndex(of: role)!))
            _ = random.next()
            return TrainableNetwork(
                layers: layers, weights: options.initType.weights(for: layers, gain: options.initGain, random: &stream),
                algorithm: algorithm)
        }
        let gA = try network(.generatorA, generator: true)
        let gB = try network(.generatorB, generator: true)
        let dA = try network(.discriminatorA, generator: false)
        let dB = try network(.discriminatorB, generator: false)
        self.initialised = initialised
        let pools = SplitMix64(seed: options.seed).derived(0x9001)
        var weights = LossWeights()
        weights.ganMode = options.ganMode
        weights.lambdaA = options.lambdaA
        weights.lambdaB = options.lambdaB
        weights.lambdaIdentity = options.lambdaIdentity
        model = CycleGANModel(
            gA: gA, gB: gB, dA: dA, dB: dB,
            optimizerG: AdamOptimizer(lr: options.lr, beta1: options.beta1),
            optimizerD: AdamOptimizer(lr: options.lr, beta1: options.beta1),
            poolA: ImagePool(size: options.poolSize, random: pools.derived(1)),
            poolB: ImagePool(size: options.poolSize, random: pools.derived(2)), weights: weights)

        func architecture(_ net: TrainableNetwork) -> (GeneratorArchitecture?, DiscriminatorArchitecture?) {
            let shapes = Dictionary(uniqueKeysWithValues: net.parameters.map { ($0.name, $0.value.shape) })
            return (try? GeneratorArchitecture.infer(from: shapes), try? DiscriminatorArchitecture.infer(from: shapes))
        }
        if let saved, let checkpoint {
            try model.restore(checkpoint.tensors, state: saved)
            state = saved
            state.options = options
            resumed = true
        } else {
            state = TrainingState(
                options: options, domains: domains, generatorA: architecture(gA).0!, generatorB: architecture(gB).0!,
                discriminatorA: architecture(dA).1!, discriminatorB: architecture(dB).1!, epoch: options.epochCount,
                batchesDone: 0, epochIter: 0, totalIters: 0, iterations: 0, adamStepsG: 0, adamStepsD: 0,
                poolA: .init(size: options.poolSize, count: 0, random: model.poolA.random),
                poolB: .init(size: options.poolSize, count: 0, random: model.poolB.random), skipped: 0)
        }
        report = try TrainingReport(
            folder: folder, modelName: request.name, datasetSize: dataset.count, options: options.dictionary)
        // A resumed run's log reads as the uninterrupted run's: records past the checkpoint go.
        try report.resume(atTotalIters: state.totalIters)
    }

    /// The iteration counter's value when this run ends: at `max_iters`, or where the schedule ends.
    public var plannedIterations: Int {
        let batches = (dataset.count + options.batchSize - 1) / options.batchSize
        let left = max(0, options.lastEpoch - state.epoch + 1) * batches - state.batchesDone
        let end = state.iterations + left
        return options.maxIters.map { min($0, end) } ?? end
    }

    /// Images per epoch (the larger domain's count, as the reference's dataset length).
    public var epochSize: Int { dataset.count }

    /// Trains until the schedule ends, `max_iters` is reached or `next` says stop (it is asked before every
    /// iteration, and may block: a paused job waits there); then checkpoints and, unless told not to,
    /// publishes the networks as the model's current version.
    public func run(next: () -> TrainingCommand = { .proceed }) throws -> TrainingSummary {
        let batches = (dataset.count + options.batchSize - 1) / options.batchSize
        // A checkpoint taken after an epoch's last batch: finish that epoch as the uninterrupted run did.
        if state.batchesDone >= batches { try endEpoch() }
        let prefetcher = Prefetcher(
            dataset: dataset, seed: options.seed, epoch: state.epoch, index: state.batchesDone * options.batchSize)
        defer { prefetcher.stop() }
        if resumed {
            observer?.message(
                "resuming \(name) at epoch \(state.epoch), image \(state.epochIter) of \(dataset.count) "
                    + "(\(state.iterations) iterations done)")
        } else if !initialised.isEmpty {
            observer?.message(
                "\(name): initialised \(initialised.joined(separator: ", ")) (\(options.initType.rawValue), gain \(options.initGain))"
            )
        }
        var last: Losses?
        var reason = TrainingSummary.Reason.finished
        var publishAtEnd = true
        let startIterations = state.iterations
        var rate = RateMeter()
        training: while state.epoch <= options.lastEpoch {
            let lr = options.learningRate(epoch: state.epoch)
            model.optimizerG.lr = lr
            model.optimizerD.lr = lr
            while state.batchesDone < batches {
                // A resumed run already at max_iters has nothing left to do.
                if let m = options.maxIters, state.iterations >= m {
                    reason = .maxIters
                    break training
                }
                if case .stop(let publish) = next() {
                    reason = .stopped
                    publishAtEnd = publish
                    break training
                }
                let size = min(options.batchSize, dataset.count - state.batchesDone * options.batchSize)
                let dataStart = Date()
                let samples = try (0..<size).map { _ in try prefetcher.next() }
                let dataSeconds = Date().timeIntervalSince(dataStart)
                let start = Date()
                // The reference's train.py tests its image counter after adding the batch.
                let display = (state.totalIters + size) % options.displayFreq == 0
                let (losses, visuals) = model.optimize(
                    realA: samples.map(\.a), realB: samples.map(\.b), wantVisuals: display, compute: compute)
                let seconds = Date().timeIntervalSince(start)
                rate.add(seconds + dataSeconds)
                last = losses
                state.batchesDone += 1
                state.epochIter += size
                state.totalIters += size
                state.iterations += 1
                state.skipped = prefetcher.skippedCount

                if state.totalIters % options.printFreq == 0 {
                    try report.record(
                        LossRecord(
                            epoch: state.epoch, iters: state.epochIter, totalIters: state.totalIters, lr: Double(lr),
                            losses: losses.values, secPerIter: seconds / Double(size), dataSec: dataSeconds))
                }
                if display, let visuals {
                    try writeSamples(visuals)
                }
                observer?.progress(progress(losses, rate: rate, batches: batches))
                if state.totalIters % options.saveLatestFreq == 0 {
                    try saveCheckpoint()
                }
                if let m = options.maxIters, state.iterations >= m {
                    reason = .maxIters
                    break training
                }
            }
            try endEpoch()
        }
        try saveCheckpoint()
        try report.refresh()
        let version = state.iterations > startIterations && publishAtEnd ? try publish() : nil
        return TrainingSummary(
            reason: reason, epoch: state.epoch, iterations: state.iterations, totalIters: state.totalIters,
            losses: last, skipped: state.skipped, version: version)
    }

    private func progress(_ losses: Losses, rate: RateMeter, batches: Int) -> TrainingProgress {
        let perSecond = rate.perSecond
        var left = (options.lastEpoch - state.epoch) * batches + (batches - state.batchesDone)
        if let m = options.maxIters { left = min(left, max(0, m - state.iterations)) }
        return TrainingProgress(
            epoch: state.epoch, lastEpoch: options.lastEpoch, epochIter: state.epochIter, epochSize: dataset.count,
            totalIters: state.totalIters, iterations: state.iterations, maxIters: options.maxIters, losses: losses,
            iterationsPerSecond: perSecond, secondsLeft: perSecond > 0 ? Double(left) / perSecond : nil,
            skipped: state.skipped)
    }

    /// The reference's end of an epoch: a checkpoint every `save_epoch_freq` epochs, then the next.
    private func endEpoch() throws {
        state.batchesDone = 0
        state.epochIter = 0
        let finished = state.epoch
        state.epoch += 1
        if finished % options.saveEpochFreq == 0 { try saveCheckpoint() }
        observer?.message("end of epoch \(finished) of \(options.lastEpoch)")
    }

    /// Everything a resumed run needs, swapped in atomically.
    public func saveCheckpoint() throws {
        state.adamStepsG = model.optimizerG.step
        state.adamStepsD = model.optimizerD.step
        state.poolA = .init(size: model.poolA.size, count: model.poolA.images.count, random: model.poolA.random)
        state.poolB = .init(size: model.poolB.size, count: model.poolB.images.count, random: model.poolB.random)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try TrainingCheckpoint(tensors: model.checkpointTensors(), state: try encoder.encode(state)).write(in: folder)
    }

    /// Makes the four networks the model's current version (the one before stays under versions/).
    @discardableResult
    public func publish() throws -> Int {
        if try store.manifest(name) == nil {
            try store.createModel(name: name, domains: ModelManifest.Domains(a: domains[0], b: domains[1]))
        }
        return try store.publish(
            model: name,
            networks: [
                .generatorA: (model.gA.weights, NetworkArchitecture(state.generatorA, dropout: false)),
                .generatorB: (model.gB.weights, NetworkArchitecture(state.generatorB, dropout: false)),
                .discriminatorA: (model.dA.weights, NetworkArchitecture(state.discriminatorA)),
                .discriminatorB: (model.dB.weights, NetworkArchitecture(state.discriminatorB)),
            ],
            provenance: nil,
            training: ModelManifest.Training(epoch: state.epoch, iterations: state.iterations))
    }

    private func writeSamples(_ v: Visuals) throws {
        try report.addSamples(
            rows: [[v.realA, v.fakeB, v.recA, v.idtB], [v.realB, v.fakeA, v.recB, v.idtA]],
            labels: [["real_A", "fake_B", "rec_A", "idt_B"], ["real_B", "fake_A", "rec_B", "idt_A"]],
            epoch: state.epoch, iters: state.epochIter)
    }
}

/// What a run does next, asked before every iteration.
public enum TrainingCommand: Sendable {
    case proceed
    /// Checkpoint and end; publish the generators too when `publish`.
    case stop(publish: Bool)
}

/// `flock` on `<models-dir>/.training-<name>.lock`, held from the trainer's start to its end (the
/// descriptor closes in deinit). Beside the model rather than in it, so that a run refused before it
/// starts leaves no folder behind.
private final class RunLock {
    private let fd: Int32

    init(store: ModelStore, model: String) throws {
        try FileManager.default.createDirectory(at: store.root, withIntermediateDirectories: true)
        let path = store.root.appendingPathComponent(".training-\(model).lock").path
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw TrainingError.incompatible("cannot open \(path): \(String(cString: strerror(errno)))")
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            throw TrainingError.modelExists(
                "another training run of \(model) is going on (it holds \(path)); stop it first or wait for it")
        }
    }

    deinit { close(fd) }
}

/// Iterations per second over the last few dozen iterations.
private struct RateMeter {
    private var recent: [Double] = []

    mutating func add(_ seconds: Double) {
        recent.append(seconds)
        if recent.count > 50 { recent.removeFirst() }
    }

    var perSecond: Double {
        let total = recent.reduce(0, +)
        return total > 0 ? Double(recent.count) / total : 0
    }
}
