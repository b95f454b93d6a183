import ArgumentParser
import Foundation
import Models
import Training

#if canImport(Glibc)
    import Glibc
#endif

struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a CycleGAN (both generators and both discriminators) on two folders of images.",
        discussion: """
            The reference CycleGAN (pytorch-CycleGAN-and-pix2pix) in Swift, with its option names (the \
            kebab-case spellings work too) and defaults. --dataroot holds trainA/ and trainB/: images of the \
            two domains, unpaired. A new --name creates a model (domains A and B unless --domains names them); \
            an existing one needs --continue_train, which resumes the model's training exactly where its \
            checkpoint left it, or, for a model that has none (an imported checkpoint set, the default \
            modern2vintage), starts from its networks and initialises the missing ones in their shape. A \
            resumed run may change the schedule, the logs, the threads and how the images are prepared; \
            any other option given with a value other than the checkpoint's (or against the model's \
            networks) is refused by name.

            While it runs: a progress line (losses, it/s, ETA); in <models-dir>/<name>/training/ the loss log \
            (loss_log.jsonl), losses.png, sample grids in samples/ and index.html (open it in a browser). \
            Checkpoints go to training/checkpoint/ every --save_latest_freq images, every --save_epoch_freq \
            epochs, at --max_iters and on Ctrl-C or SIGTERM. When training stops, the generators become the \
            model's current version (translate, serve and export use it); the one before stays in versions/.

            Examples:
              cyclegand train --dataroot horse2zebra --name horse2zebra \\
                --domains horse,zebra
              cyclegand train --dataroot my_photos --name modern2vintage \\
                --continue_train --n_epochs 5 --n_epochs_decay 5
              cyclegand train --dataroot synth --name test --netG resnet_6blocks \\
                --ngf 16 --ndf 16 --preprocess none --crop_size 32 --max_iters 1000

            docs/TRAINING.md is the guide: fine-tuning the default model, every option, time and memory.
            """)

    @Option(help: "A folder with trainA/ and trainB/.") var dataroot: String
    @Option(help: "The model to create or continue.") var name: String
    @Option(help: ArgumentHelp("Domain names of a new model (default A,B).", valueName: "A,B")) var domains: String?
    @Flag(
        name: [.customLong("continue_train"), .customLong("continue-train")],
        help: "Resume or fine-tune an existing model.")
    var continueTrain = false
    @OptionGroup var location: ModelsDirOption
    @OptionGroup(title: "Networks") var networks: NetworkOptions
    @OptionGroup(title: "Losses and optimisation") var optimisation: OptimisationOptions
    @OptionGroup(title: "Data") var data: DataArguments
    @OptionGroup(title: "Checkpoints, logs and stopping") var schedule: ScheduleOptions

    func run() throws {
        let (options, given) = try trainingOptions(networks, optimisation, data, schedule)
        var parsedDomains: (String, String)?
        if let domains {
            let parts = domains.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            guard parts.count == 2, parts.allSatisfy({ !$0.isEmpty }) else {
                throw ValidationError("--domains wants two names separated by a comma, e.g. horse,zebra")
            }
            parsedDomains = (parts[0], parts[1])
        }
        let request = TrainingRequest(
            data: .dataroot(dataroot), name: name, domains: parsedDomains, store: location.store,
            continueTrain: continueTrain, options: options, given: given)
        let console = ConsoleProgress()
        let trainer: Trainer
        do { trainer = try Trainer(request, observer: console) } catch let e as TrainingError {
            throw ValidationError(e.description)
        }
        let stop = StopSignals()
        let summary = try trainer.run(next: { stop.requested ? .stop(publish: true) : .proceed })
        console.finish()
        let how =
            switch summary.reason {
            case .finished: "finished the schedule"
            case .maxIters: "reached --max_iters"
            case .stopped: "stopped on request"
            }
        print(
            "\(name): \(how) at epoch \(summary.epoch), \(summary.iterations) iterations (\(summary.totalIters) images)"
                + (summary.skipped > 0 ? ", \(summary.skipped) unreadable images skipped" : ""))
        if let v = summary.version {
            print("published as version \(v) of \(name); checkpoint in \(location.store.folder(name).path)/training/")
        }
    }
}

/// `--netG`, `--ngf`, ... (reference names; the kebab-case spellings too).
struct NetworkOptions: ParsableArguments {
    @Option(name: .customLong("netG"), help: "resnet_9blocks | resnet_6blocks (default resnet_9blocks).") var netG:
        String?
    @Option(help: "Generator filters in the first conv (default 64).") var ngf: Int?
    @Option(name: .customLong("netD"), help: "basic (3 layers) | n_layers (see --n_layers_D) (default basic).")
    var netD: String?
    @Option(
        name: [.customLong("n_layers_D"), .customLong("n-layers-d")],
        help: "Discriminator layers with --netD n_layers (default 3).")
    var nLayersD: Int?
    @Option(help: "Discriminator filters in the first conv (default 64).") var ndf: Int?
    @Option(help: "instance (the only one here).") var norm: String?
    @Option(
        name: [.customLong("init_type"), .customLong("init-type")],
        help: "normal | xavier | kaiming | orthogonal (default normal).")
    var initType: String?
    @Option(
        name: [.customLong("init_gain"), .customLong("init-gain")], help: "Scale of the initial weights (default 0.02)."
    )
    var initGain: Double?
    @Option(
        name: [.customLong("input_nc"), .customLong("input-nc")],
        help: "Channels of domain A: 3 or 1 (grey) (default 3).")
    var inputNC: Int?
    @Option(name: [.customLong("output_nc"), .customLong("output-nc")], help: "Channels of domain B (default 3).")
    var outputNC: Int?

    func apply(to o: inout TrainingOptions, given: inout Set<String>) {
        set(&o.netG, netG, "netG", &given)
        set(&o.ngf, ngf, "ngf", &given)
        set(&o.netD, netD, "netD", &given)
        set(&o.nLayersD, nLayersD, "n_layers_D", &given)
        set(&o.ndf, ndf, "ndf", &given)
        set(&o.norm, norm, "norm", &given)
        set(&o.initGain, initGain, "init_gain", &given)
        set(&o.inputNC, inputNC, "input_nc", &given)
        set(&o.outputNC, outputNC, "output_nc", &given)
        if let initType {
            given.insert("init_type")
            o.initType = InitType(rawValue: initType) ?? o.initType
        }
    }

    func validate() throws {
        if let initType, InitType(rawValue: initType) == nil {
            throw ValidationError("--init_type \(initType): normal, xavier, kaiming or orthogonal")
        }
    }
}

struct OptimisationOptions: ParsableArguments {
    @Option(name: [.customLong("gan_mode"), .customLong("gan-mode")], help: "lsgan | vanilla (default lsgan).")
    var ganMode: String?
    @Option(
        name: [.customLong("lambda_A"), .customLong("lambda-a")], help: "Weight of the A→B→A cycle loss (default 10).")
    var lambdaA: Float?
    @Option(
        name: [.customLong("lambda_B"), .customLong("lambda-b")], help: "Weight of the B→A→B cycle loss (default 10).")
    var lambdaB: Float?
    @Option(
        name: [.customLong("lambda_identity"), .customLong("lambda-identity")],
        help: "Identity loss, as a fraction of the cycle weights; 0 turns it off (default 0.5).")
    var lambdaIdentity: Float?
    @Option(
        name: [.customLong("pool_size"), .customLong("pool-size")],
        help: "Fakes kept for the discriminators; 0 = none (default 50).")
    var poolSize: Int?
    @Option(help: "Initial Adam learning rate (default 0.0002).") var lr: Float?
    @Option(help: "Adam's β1 (default 0.5).") var beta1: Float?
    @Option(name: [.customLong("lr_policy"), .customLong("lr-policy")], help: "linear (the only one here).")
    var lrPolicy: String?
    @Option(
        name: [.customLong("n_epochs"), .customLong("n-epochs")], help: "Epochs at the initial rate (default 100).")
    var nEpochs: Int?
    @Option(
        name: [.customLong("n_epochs_decay"), .customLong("n-epochs-decay")],
        help: "Epochs of linear decay to almost 0 (default 100).")
    var nEpochsDecay: Int?
    @Option(
        name: [.customLong("epoch_count"), .customLong("epoch-count")], help: "The first epoch's number (default 1).")
    var epochCount: Int?
    @Option(name: [.customLong("batch_size"), .customLong("batch-size")], help: "Images per iteration (default 1).")
    var batchSize: Int?

    func apply(to o: inout TrainingOptions, given: inout Set<String>) throws {
        if let ganMode {
            guard let m = GANMode(rawValue: ganMode) else {
                throw ValidationError("--gan_mode \(ganMode): lsgan or vanilla")
            }
            o.ganMode = m
            given.insert("gan_mode")
        }
        set(&o.lambdaA, lambdaA, "lambda_A", &given)
        set(&o.lambdaB, lambdaB, "lambda_B", &given)
        set(&o.lambdaIdentity, lambdaIdentity, "lambda_identity", &given)
        set(&o.poolSize, poolSize, "pool_size", &given)
        set(&o.lr, lr, "lr", &given)
        set(&o.beta1, beta1, "beta1", &given)
        set(&o.lrPolicy, lrPolicy, "lr_policy", &given)
        set(&o.nEpochs, nEpochs, "n_epochs", &given)
        set(&o.nEpochsDecay, nEpochsDecay, "n_epochs_decay", &given)
        set(&o.epochCount, epochCount, "epoch_count", &given)
        set(&o.batchSize, batchSize, "batch_size", &given)
    }
}

struct DataArguments: ParsableArguments {
    @Option(help: "resize_and_crop | crop | scale_width | scale_width_and_crop | none (default resize_and_crop).")
    var preprocess: String?
    @Option(
        name: [.customLong("load_size"), .customLong("load-size")], help: "Resize to this size first (default 286).")
    var loadSize: Int?
    @Option(name: [.customLong("crop_size"), .customLong("crop-size")], help: "Then crop to this size (default 256).")
    var cropSize: Int?
    @Flag(name: [.customLong("no_flip"), .customLong("no-flip")], help: "No random horizontal flips.")
    var noFlip = false
    @Flag(
        name: [.customLong("serial_batches"), .customLong("serial-batches")],
        help: "Pair A[i] with B[i] in order, no shuffling.")
    var serialBatches = false
    @Option(
        name: [.customLong("max_dataset_size"), .customLong("max-dataset-size")],
        help: "Use at most this many images per domain.")
    var maxDatasetSize: Int?

    func apply(to o: inout TrainingOptions, given: inout Set<String>) throws {
        if let preprocess {
            guard let p = DataOptions.Preprocess(rawValue: preprocess) else {
                throw ValidationError(
                    "--preprocess \(preprocess): resize_and_crop, crop, scale_width, scale_width_and_crop or none")
            }
            o.preprocess = p
            given.insert("preprocess")
        }
        set(&o.loadSize, loadSize, "load_size", &given)
        set(&o.cropSize, cropSize, "crop_size", &given)
        if noFlip { set(&o.noFlip, true, "no_flip", &given) }
        if serialBatches { set(&o.serialBatches, true, "serial_batches", &given) }
        set(&o.maxDatasetSize, maxDatasetSize, "max_dataset_size", &given)
    }
}

struct ScheduleOptions: ParsableArguments {
    @Option(
        name: [.customLong("print_freq"), .customLong("print-freq")],
        help: "Log the losses every N images (default 100).")
    var printFreq: Int?
    @Option(
        name: [.customLong("display_freq"), .customLong("display-freq")],
        help: "Write a sample grid every N images (default 400).")
    var displayFreq: Int?
    @Option(
        name: [.customLong("save_latest_freq"), .customLong("save-latest-freq")],
        help: "Checkpoint every N images (default 5000).")
    var saveLatestFreq: Int?
    @Option(
        name: [.customLong("save_epoch_freq"), .customLong("save-epoch-freq")],
        help: "Checkpoint every N epochs (default 5).")
    var saveEpochFreq: Int?
    @Option(
        name: [.customLong("max_iters"), .customLong("max-iters")],
        help: "Stop, with a checkpoint, after N iterations of the run.")
    var maxIters: Int?
    @Option(help: "Threads (default: every core).") var threads: Int?
    @Flag(
        name: [.customLong("exact_conv"), .customLong("exact-conv")],
        help: "No Winograd: round every convolution as PyTorch does (its numbers step for step; slower).")
    var exactConv = false
    @Option(help: "Seed of every random choice: initial weights, pairing, crops, flips, pools (default 0).")
    var seed: UInt64?

    func apply(to o: inout TrainingOptions, given: inout Set<String>) {
        set(&o.printFreq, printFreq, "print_freq", &given)
        set(&o.displayFreq, displayFreq, "display_freq", &given)
        set(&o.saveLatestFreq, saveLatestFreq, "save_latest_freq", &given)
        set(&o.saveEpochFreq, saveEpochFreq, "save_epoch_freq", &given)
        if let maxIters {
            o.maxIters = maxIters
            given.insert("max_iters")
        }
        if let threads {
            o.threads = threads
            given.insert("threads")
        }
        set(&o.seed, seed, "seed", &given)
        if exactConv { set(&o.exactConv, true, "exact_conv", &given) }
    }
}

/// The options of the four groups over the defaults, and the reference names of those given.
func trainingOptions(
    _ networks: NetworkOptions, _ optimisation: OptimisationOptions, _ data: DataArguments,
    _ schedule: ScheduleOptions
) throws -> (TrainingOptions, Set<String>) {
    var options = TrainingOptions()
    var given = Set<String>()
    networks.apply(to: &options, given: &given)
    try optimisation.apply(to: &options, given: &given)
    try data.apply(to: &options, given: &given)
    schedule.apply(to: &options, given: &given)
    return (options, given)
}

private func set<T>(_ field: inout T, _ value: T?, _ name: String, _ given: inout Set<String>) {
    guard let value else { return }
    field = value
    given.insert(name)
}

/// SIGINT and SIGTERM ask the run to stop after the iteration in progress (it then checkpoints and
/// publishes); a second one ends the process at once.
private final class StopSignals: @unchecked Sendable {
    private let sources: [DispatchSourceSignal]
    private let lock = NSLock()
    private var count = 0

    init() {
        var sources: [DispatchSourceSignal] = []
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            sources.append(DispatchSource.makeSignalSource(signal: sig, queue: .global()))
        }
        self.sources = sources
        for (source, sig) in zip(sources, [SIGINT, SIGTERM]) {
            source.setEventHandler { [unowned self] in self.received(sig) }
            source.resume()
        }
    }

    private func received(_ sig: Int32) {
        lock.lock()
        count += 1
        let n = count
        lock.unlock()
        if n == 1 {
            FileHandle.standardError.write(
                Data("\nstopping after this iteration (checkpoint, then publish); again to quit at once\n".utf8))
        } else {
            _exit(130)
        }
    }

    var requested: Bool {
        lock.lock()
        defer { lock.unlock() }
        return count > 0
    }

    deinit { for s in sources { s.cancel() } }
}

/// A live line on a terminal; plain lines otherwise. The data thread's warnings come in on
/// their own thread, hence the lock.
private final class ConsoleProgress: TrainingObserver, @unchecked Sendable {
    private let terminal = isatty(1) != 0
    private let lock = NSLock()
    private var lastPlain = Date.distantPast
    private var open = false

    func message(_ text: String) {
        lock.withLock { write(text) }
    }

    /// One whole line, closing the live one first; FileHandle throughout so the two never interleave.
    private func write(_ text: String) {
        FileHandle.standardOutput.write(Data(((open ? "\n" : "") + text + "\n").utf8))
        open = false
    }

    func progress(_ p: TrainingProgress) {
        lock.withLock { show(p) }
    }

    private func show(_ p: TrainingProgress) {
        let losses = zip(Losses.names, p.losses.values).map { "\($0) \(String(format: "%.3f", $1))" }.joined(
            separator: " ")
        let eta = p.secondsLeft.map { " ETA \(duration($0))" } ?? ""
        let line =
            "epoch \(p.epoch)/\(p.lastEpoch) \(p.epochIter)/\(p.epochSize) | \(losses) | "
            + String(format: "%.2f it/s", p.iterationsPerSecond) + eta
        if terminal {
            FileHandle.standardOutput.write(Data(("\r\u{1B}[K" + line).utf8))
            open = true
        } else if Date().timeIntervalSince(lastPlain) >= 10 {
            write(line)
            lastPlain = Date()
        }
    }

    func finish() {
        lock.lock()
        defer { lock.unlock() }
        if open { FileHandle.standardOutput.write(Data("\n".utf8)) }
        open = false
    }

    private func duration(_ s: Double) -> String {
        let t = Int(s)
        return t >= 3600
            ? "\(t / 3600)h\(String(format: "%02d", t % 3600 / 60))m" : "\(t / 60)m\(String(format: "%02d", t % 60))s"
    }
}
