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
    public var n_layers_D = 3
    public var ndf = 64
    public var norm = "instance"
    public var init_type = InitType.normal
    public var init_gain = 0.02
    public var input_nc = 3
    public var output_nc = 3

    // Losses
    public var gan_mode = GANMode.lsgan
    public var lambda_A: Float = 10
    public var lambda_B: Float = 10
    public var lambda_identity: Float = 0.5
    public var pool_size = 50

    // Optimisation and schedule
    public var lr: Float = 0.0002
    public var beta1: Float = 0.5
    public var lr_policy = "linear"
    public var n_epochs = 100
    public var n_epochs_decay = 100
    public var epoch_count = 1
    public var batch_size = 1

    // Data
    public var preprocess = DataOptions.Preprocess.resizeAndCrop
    public var load_size = 286
    public var crop_size = 256
    public var no_flip = false
    public var serial_batches = false
    public var max_dataset_size = Int.max

    // Frequencies, counted in images as the reference's train.py counts them
    public var print_freq = 100
    public var display_freq = 400
    public var save_latest_freq = 5000
    public var save_epoch_freq = 5

    // Ours
    /// Stop, with a checkpoint, once the run's iteration counter reaches this.
    public var max_iters: Int?
    public var threads: Int?
    public var seed: UInt64 = 0
    /// Winograd convolutions where they apply (the residual blocks): faster, but rounded differently
    /// from PyTorch's direct convolutions (see `Conv2D.Algorithm.exact`).
    public var fast_conv = false

    public init() {}

    /// The last epoch the schedule runs.
    public var lastEpoch: Int { n_epochs + n_epochs_decay }

    /// The reference's linear policy: epoch k runs at lr·(1 − max(0, k − n_epochs)/(n_epochs_decay + 1)).
    public func learningRate(epoch: Int) -> Float {
        let decay = Float(max(0, epoch - n_epochs)) / Float(n_epochs_decay + 1)
        return lr * (1 - decay)
    }

    public var generatorArchitecture: GeneratorArchitecture {
        GeneratorArchitecture(
            inputChannels: input_nc, outputChannels: output_nc, ngf: ngf, blocks: netG == "resnet_6blocks" ? 6 : 9,
            affine: false)
    }

    /// D_A judges domain B (G_A's outputs), D_B domain A.
    public func discriminatorArchitecture(channels: Int) -> DiscriminatorArchitecture {
        DiscriminatorArchitecture(inputChannels: channels, ndf: ndf, layers: netD == "basic" ? 3 : n_layers_D)
    }

    public var data: DataOptions {
        DataOptions(
            preprocess: preprocess, loadSize: load_size, cropSize: crop_size, noFlip: no_flip,
            serialBatches: serial_batches, maxDatasetSize: max_dataset_size, inputChannels: input_nc,
            outputChannels: output_nc)
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
        if lr_policy != "linear" { out.append("--lr_policy \(lr_policy): only linear is supported") }
        for (name, value, least) in [
            ("ngf", ngf, 1), ("ndf", ndf, 1), ("n_layers_D", n_layers_D, 1), ("batch_size", batch_size, 1),
            ("load_size", load_size, 1), ("crop_size", crop_size, 8), ("n_epochs", n_epochs, 0),
            ("n_epochs_decay", n_epochs_decay, 0), ("epoch_count", epoch_count, 1), ("pool_size", pool_size, 0),
            ("print_freq", print_freq, 1), ("display_freq", display_freq, 1),
            ("save_latest_freq", save_latest_freq, 1), ("save_epoch_freq", save_epoch_freq, 1),
            ("max_dataset_size", max_dataset_size, 1), ("input_nc", input_nc, 1), ("output_nc", output_nc, 1),
        ] where value < least {
            out.append("--\(name) \(value): must be at least \(least)")
        }
        if n_layers_D > 5 { out.append("--n_layers_D \(n_layers_D): at most 5") }
        if ![1, 3].contains(input_nc) || ![1, 3].contains(output_nc) {
            out.append("--input_nc/--output_nc: 1 (grey) or 3 (RGB)")
        }
        if !(lr > 0 && lr < 1) { out.append("--lr \(lr): must be in (0, 1)") }
        if !(beta1 >= 0 && beta1 < 1) { out.append("--beta1 \(beta1): must be in [0, 1)") }
        for (name, v) in [("lambda_A", lambda_A), ("lambda_B", lambda_B), ("lambda_identity", lambda_identity)]
        where !(v >= 0 && v.isFinite) {
            out.append("--\(name) \(v): must be a number ≥ 0")
        }
        if !(init_gain > 0 && init_gain.isFinite) { out.append("--init_gain \(init_gain): must be > 0") }
        if let m = max_iters, m < 1 { out.append("--max_iters \(m): must be at least 1") }
        if let t = threads, t < 1 || t > 256 { out.append("--threads \(t): 1 to 256") }
        if epoch_count > lastEpoch && lastEpoch > 0 {
            out.append("--epoch_count \(epoch_count) is past the last epoch (n_epochs + n_epochs_decay = \(lastEpoch))")
        }
        return out
    }
}
