import CycleGAN
import Foundation

/// The options of a training run, named and defaulted as the reference's
/// (options/base_options.py, train_options.py, cycle_gan_model.py); saved in
/// every checkpoint under those names.
public struct TrainingOptions: Codable, Equatable, Sendable {
    // Networks
    public var netG = "resnet_9blocks"
    public var ngf = 64
    public var netD = "basic"
    public var nLayersD = 3
    public var ndf = 64
    public var norm = "instance"
    public var initType = InitType.normal
    public var initGain = 0.02
    public var inputNC = 3
    public var outputNC = 3

    // Losses
    public var ganMode = GANMode.lsgan
    public var lambdaA: Float = 10
    public var lambdaB: Float = 10
    public var lambdaIdentity: Float = 0.5
    public var poolSize = 50

    // Optimisation and schedule
    public var lr: Float = 0.0002
    public var beta1: Float = 0.5
    public var lrPolicy = "linear"
    public var nEpochs = 100
    public var nEpochsDecay = 100
    public var epochCount = 1
    public var batchSize = 1

    // Data
    public var preprocess = DataOptions.Preprocess.resizeAndCrop
    public var loadSize = 286
    public var cropSize = 256
    public var noFlip = false
    public var serialBatches = false
    public var maxDatasetSize = Int.max

    // Frequencies, counted in images as the reference's train.py counts them
    public var printFreq = 100
    public var displayFreq = 400
    public var saveLatestFreq = 5000
    public var saveEpochFreq = 5

    // Ours
    /// Stop, with a checkpoint, once the run's iteration counter reaches this.
    public var maxIters: Int?
    public var threads: Int?
    public var seed: UInt64 = 0
    /// Every convolution as a plain sum of products, rounded as PyTorch's are (`Conv2D.Algorithm.exact`):
    /// step-for-step PyTorch's numbers, slower and lighter. Without it the residual blocks run Winograd.
    public var exactConv = false

    public init() {}

    /// The reference's names, in checkpoints and on the training page.
    enum CodingKeys: String, CodingKey, CaseIterable {
        case netG, ngf, netD, ndf, norm, lr, beta1, threads, seed
        case nLayersD = "n_layers_D"
        case initType = "init_type"
        case initGain = "init_gain"
        case inputNC = "input_nc"
        case outputNC = "output_nc"
        case ganMode = "gan_mode"
        case lambdaA = "lambda_A"
        case lambdaB = "lambda_B"
        case lambdaIdentity = "lambda_identity"
        case poolSize = "pool_size"
        case lrPolicy = "lr_policy"
        case nEpochs = "n_epochs"
        case nEpochsDecay = "n_epochs_decay"
        case epochCount = "epoch_count"
        case batchSize = "batch_size"
        case preprocess
        case loadSize = "load_size"
        case cropSize = "crop_size"
        case noFlip = "no_flip"
        case serialBatches = "serial_batches"
        case maxDatasetSize = "max_dataset_size"
        case printFreq = "print_freq"
        case displayFreq = "display_freq"
        case saveLatestFreq = "save_latest_freq"
        case saveEpochFreq = "save_epoch_freq"
        case maxIters = "max_iters"
        case exactConv = "exact_conv"
    }

    /// The last epoch the schedule runs.
    public var lastEpoch: Int { nEpochs + nEpochsDecay }

    /// The reference's linear policy: epoch k runs at lr·(1 − max(0, k − nEpochs)/(nEpochsDecay + 1)).
    public func learningRate(epoch: Int) -> Float {
        let decay = Float(max(0, epoch - nEpochs)) / Float(nEpochsDecay + 1)
        return lr * (1 - decay)
    }

    public var generatorArchitecture: GeneratorArchitecture {
        GeneratorArchitecture(
            inputChannels: inputNC, outputChannels: outputNC, ngf: ngf, blocks: netG == "resnet_6blocks" ? 6 : 9,
            affine: false)
    }

    /// D_A judges domain B (G_A's outputs), D_B domain A.
    public func discriminatorArchitecture(channels: Int) -> DiscriminatorArchitecture {
        DiscriminatorArchitecture(inputChannels: channels, ndf: ndf, layers: netD == "basic" ? 3 : nLayersD)
    }

    public var data: DataOptions {
        DataOptions(
            preprocess: preprocess, loadSize: loadSize, cropSize: cropSize, noFlip: noFlip,
            serialBatches: serialBatches, maxDatasetSize: maxDatasetSize, inputChannels: inputNC,
            outputChannels: outputNC)
    }

    /// Every option by its reference name, as the page and logs show them.
    public var dictionary: [String: String] {
        guard let data = try? JSONEncoder().encode(self),
            let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { return [:] }
        return object.mapValues { "\($0)" }
    }

    /// Problems with these options, each naming the option (empty when they are usable).
    public func problems() -> [String] {
        var out: [String] = []
        if !["resnet_9blocks", "resnet_6blocks"].contains(netG) {
            out.append("--netG \(netG): this trainer has resnet_9blocks and resnet_6blocks")
        }
        if !["basic", "n_layers"].contains(netD) { out.append("--netD \(netD): this trainer has basic and n_layers") }
        if norm != "instance" { out.append("--norm \(norm): only instance norm is supported") }
        if lrPolicy != "linear" { out.append("--lr_policy \(lrPolicy): only linear is supported") }
        for (name, value, least) in [
            ("ngf", ngf, 1), ("ndf", ndf, 1), ("n_layers_D", nLayersD, 1), ("batch_size", batchSize, 1),
            ("load_size", loadSize, 1), ("crop_size", cropSize, 8), ("n_epochs", nEpochs, 0),
            ("n_epochs_decay", nEpochsDecay, 0), ("epoch_count", epochCount, 1), ("pool_size", poolSize, 0),
            ("print_freq", printFreq, 1), ("display_freq", displayFreq, 1),
            ("save_latest_freq", saveLatestFreq, 1), ("save_epoch_freq", saveEpochFreq, 1),
            ("max_dataset_size", maxDatasetSize, 1), ("input_nc", inputNC, 1), ("output_nc", outputNC, 1),
        ] where value < least {
            out.append("--\(name) \(value): must be at least \(least)")
        }
        if nLayersD > 5 { out.append("--n_layers_D \(nLayersD): at most 5") }
        for (name, value, most) in [
            ("ngf", ngf, 1024), ("ndf", ndf, 1024), ("batch_size", batchSize, 256), ("load_size", loadSize, 16384),
            ("crop_size", cropSize, 8192), ("n_epochs", nEpochs, 1_000_000),
            ("n_epochs_decay", nEpochsDecay, 1_000_000),
            ("pool_size", poolSize, 100_000),
        ] where value > most {
            out.append("--\(name) \(value): at most \(most)")
        }
        if ![1, 3].contains(inputNC) || ![1, 3].contains(outputNC) {
            out.append("--input_nc/--output_nc: 1 (grey) or 3 (RGB)")
        }
        if !(lr > 0 && lr < 1) { out.append("--lr \(lr): must be in (0, 1)") }
        if !(beta1 >= 0 && beta1 < 1) { out.append("--beta1 \(beta1): must be in [0, 1)") }
        for (name, v) in [("lambda_A", lambdaA), ("lambda_B", lambdaB), ("lambda_identity", lambdaIdentity)]
        where !(v >= 0 && v.isFinite) {
            out.append("--\(name) \(v): must be a number ≥ 0")
        }
        if !(initGain > 0 && initGain.isFinite) { out.append("--init_gain \(initGain): must be > 0") }
        if let m = maxIters, m < 1 { out.append("--max_iters \(m): must be at least 1") }
        if let t = threads, t < 1 || t > 256 { out.append("--threads \(t): 1 to 256") }
        if epochCount > lastEpoch && lastEpoch > 0 {
            out.append("--epoch_count \(epochCount) is past the last epoch (n_epochs + n_epochs_decay = \(lastEpoch))")
        }
        return out
    }
}

extension TrainingOptions {
    /// Every option's reference name.
    public static var names: [String] { CodingKeys.allCases.map(\.rawValue) }

    /// The defaults with `given` (a JSON object of options under their reference names) laid over
    /// them: an unknown name or a value of the wrong type is an error that names the option.
    public static func overlaying(_ given: Data) throws -> TrainingOptions {
        guard let object = try JSONSerialization.jsonObject(with: given) as? [String: Any] else {
            throw TrainingError.badOptions(["the options must be a JSON object"])
        }
        let known = Set(names)
        let unknown = object.keys.filter { !known.contains($0) }.sorted()
        if let name = unknown.first {
            throw TrainingError.badOptions([
                "unknown option '\(name)'; the options are \(names.sorted().joined(separator: ", "))"
            ])
        }
        let defaults =
            try JSONSerialization.jsonObject(with: try JSONEncoder().encode(TrainingOptions())) as! [String: Any]
        func decode(_ given: [String: Any]) throws -> TrainingOptions {
            let merged = defaults.merging(given) { $1 }
            return try JSONDecoder().decode(
                TrainingOptions.self, from: try JSONSerialization.data(withJSONObject: merged))
        }
        do {
            return try decode(object)
        } catch {
            // Said of the one option that does not decode alone (the decoder does not always name it).
            let name = object.keys.sorted().first { (try? decode([$0: object[$0]!])) == nil } ?? "?"
            let value = object[name].map { "\($0)" } ?? ""
            switch error {
            case DecodingError.typeMismatch(let type, _), DecodingError.valueNotFound(let type, _):
                let kind = type == String.self ? "a string" : type == Bool.self ? "true or false" : "a number"
                throw TrainingError.badOptions(["option '\(name)' should be \(kind)"])
            case DecodingError.dataCorrupted(let context) where !context.codingPath.isEmpty:
                throw TrainingError.badOptions(["option '\(name)': \(context.debugDescription)"])
            default:
                throw TrainingError.badOptions(["option '\(name)': \(value) is not a value it takes (a whole number?)"])
            }
        }
    }
}
