/// How training images are read and prepared: the reference's `--preprocess`, `--load_size`,
/// `--crop_size`, `--no_flip`, `--serial_batches`, `--max_dataset_size`, `--input_nc` and `--output_nc`.
public struct DataOptions: Sendable, Codable, Equatable {
    /// What is done to an image's size before it becomes a sample.
    public enum Preprocess: String, Sendable, Codable, CaseIterable {
        /// Resize to loadSize × loadSize, then a random cropSize square (the reference's default).
        case resizeAndCrop = "resize_and_crop"
        /// A random cropSize square of the image as it is.
        case crop
        /// Width to loadSize, height in proportion but at least cropSize.
        case scaleWidth = "scale_width"
        /// `scaleWidth`, then a random cropSize square.
        case scaleWidthAndCrop = "scale_width_and_crop"
        /// Sides resized to the nearest multiples of 4 (the generator's downsampling needs them).
        case none

        var resizesToSquare: Bool { self == .resizeAndCrop }
        var scalesWidth: Bool { self == .scaleWidth || self == .scaleWidthAndCrop }
        var crops: Bool { self == .resizeAndCrop || self == .crop || self == .scaleWidthAndCrop }
    }

    public var preprocess: Preprocess = .resizeAndCrop
    public var loadSize = 286
    public var cropSize = 256
    /// No random horizontal flips.
    public var noFlip = false
    /// Epochs in file order with A and B paired by index, instead of shuffled A and random B.
    public var serialBatches = false
    /// At most this many files per domain (the first ones by name).
    public var maxDatasetSize = Int.max
    /// Channels of domain A's samples: 3 (RGB) or 1 (grey, PIL's `convert("L")`). The reference's
    /// `input_nc` (its `output_nc` when the direction is BtoA: the trainer swaps them).
    public var inputChannels = 3
    /// Channels of domain B's samples, as `inputChannels`: the reference's `output_nc`.
    public var outputChannels = 3

    public init(
        preprocess: Preprocess = .resizeAndCrop, loadSize: Int = 286, cropSize: Int = 256, noFlip: Bool = false,
        serialBatches: Bool = false, maxDatasetSize: Int = .max, inputChannels: Int = 3, outputChannels: Int = 3
    ) {
        self.preprocess = preprocess
        self.loadSize = loadSize
        self.cropSize = cropSize
        self.noFlip = noFlip
        self.serialBatches = serialBatches
        self.maxDatasetSize = maxDatasetSize
        self.inputChannels = inputChannels
        self.outputChannels = outputChannels
    }

    /// Why these options cannot work, or nil. The reference would fail on every image instead.
    var problem: String? {
        if loadSize < 1 || cropSize < 1 { return "load size \(loadSize) and crop size \(cropSize) must be positive" }
        if (preprocess == .resizeAndCrop || preprocess == .scaleWidthAndCrop) && loadSize < cropSize {
            return "load size \(loadSize) is smaller than crop size \(cropSize): every image would be too small to crop"
        }
        if maxDatasetSize < 1 { return "max dataset size \(maxDatasetSize) must be at least 1" }
        for channels in [inputChannels, outputChannels] where channels != 1 && channels != 3 {
            return "\(channels) channels: images are read as RGB (3) or grey (1)"
        }
        return nil
    }
}
