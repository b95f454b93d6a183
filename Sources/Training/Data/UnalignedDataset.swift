import Foundation
import Imaging
import Tensor

/// One training sample: real_A and real_B with their files.
public struct Sample: Sendable {
    /// [1, inputChannels, H, W] in [-1, 1]; H = W = cropSize when the preprocess crops.
    public let a: Tensor
    /// [1, outputChannels, H, W] in [-1, 1].
    public let b: Tensor
    public let pathA: String
    public let pathB: String
    public let epoch: Int
    /// Position within the epoch, 0 ..< `UnalignedDataset.count`.
    public let index: Int
}

/// A file that was left out of training, and why.
public struct SkippedFile: Sendable, Equatable {
    public let path: String
    public let reason: String
}

/// The reference's `unaligned_dataset`: two folders of unpaired images, A and B, an epoch as
/// long as the larger one.
///
/// Every random choice of sample `index` of `epoch` comes from streams keyed by (seed, epoch,
/// index): the epoch's order, the B partner, crops and flips. A sample is therefore a pure
/// function of (seed, epoch, index), and a resumed run gets exactly the data the uninterrupted
/// one would have had, however far ahead a prefetcher had read.
///
/// A file that cannot be used (unreadable, corrupt, smaller than the crop) is reported once
/// through `onWarning`, remembered, and replaced by the next file of its domain, so training
/// goes on; only a domain with no usable file at all is an error.
public final class UnalignedDataset: @unchecked Sendable {
    public let options: DataOptions
    public let folderA: String
    public let folderB: String
    public let pathsA: [String]
    public let pathsB: [String]

    public var countA: Int { pathsA.count }
    public var countB: Int { pathsB.count }
    /// Samples per epoch: max(countA, countB), as the reference's `__len__`.
    public var count: Int { max(countA, countB) }

    private let onWarning: @Sendable (String) -> Void
    private let transform: ImageTransform
    /// The user's own files: formats libvips leaves to untrusted loaders (PPM, BMP) are read too.
    private let loadOptions = LoadOptions(allowUntrustedLoaders: true)
    private let lock = NSLock()
    private var unusable: [Domain: Set<Int>] = [.a: [], .b: []]
    private var skippedFiles: [SkippedFile] = []
    private var cachedOrder: (seed: UInt64, epoch: Int, order: [Int])?

    enum Domain { case a, b }

    /// DATAROOT/<phase>A and DATAROOT/<phase>B, as the reference's `--dataroot` and `--phase`.
    public convenience init(
        dataroot: String, phase: String = "train", options: DataOptions,
        onWarning: @escaping @Sendable (String) -> Void = { _ in }
    ) throws {
        let root = dataroot.hasSuffix("/") ? String(dataroot.dropLast()) : dataroot
        try self.init(
            folderA: root + "/" + phase + "A", folderB: root + "/" + phase + "B", options: options,
            onWarning: onWarning)
    }

    /// Lists both folders now, so that a missing, empty or imageless folder fails before training
    /// starts. `onWarning` hears of each skipped file, on the thread that decoded it.
    public init(
        folderA: String, folderB: String, options: DataOptions,
        onWarning: @escaping @Sendable (String) -> Void = { _ in }
    ) throws {
        if let problem = options.problem { throw DataError(.invalidOptions, folder: "", problem) }
        self.options = options
        self.folderA = folderA
        self.folderB = folderB
        pathsA = try ImageListing.images(in: folderA, limit: options.maxDatasetSize)
        pathsB = try ImageListing.images(in: folderB, limit: options.maxDatasetSize)
        self.onWarning = onWarning
        transform = ImageTransform(options: options)
    }

    /// Files left out so far, each once, in the order they were found.
    public var skipped: [SkippedFile] { lock.withLock { skippedFiles } }
    public var skippedCount: Int { lock.withLock { skippedFiles.count } }

    /// Epoch `epoch`'s order of 0 ..< count: shuffled (Fisher–Yates on its own stream) as the
    /// reference's DataLoader does, or in file order with `serialBatches`.
    public func order(seed: UInt64, epoch: Int) -> [Int] {
        if options.serialBatches { return Array(0..<count) }
        if let cached = lock.withLock({ cachedOrder }), cached.seed == seed, cached.epoch == epoch {
            return cached.order
        }
        var random = Streams.order(seed: seed, epoch: epoch)
        var order = Array(0..<count)
        for i in stride(from: order.count - 1, to: 0, by: -1) { order.swapAt(i, random.int(in: 0...i)) }
        lock.withLock { cachedOrder = (seed, epoch, order) }
        return order
    }

    /// Which files sample `index` of `epoch` pairs, before any replacement of unusable files:
    /// A is the shuffled index modulo countA; B the same modulo countB with `serialBatches`,
    /// else uniform over B.
    func pairing(seed: UInt64, epoch: Int, index: Int) -> (a: Int, b: Int) {
        let position = order(seed: seed, epoch: epoch)[index]
        if options.serialBatches { return (position % countA, position % countB) }
        var random = Streams.pairing(seed: seed, epoch: epoch, index: index)
        return (position % countA, random.int(in: 0...(countB - 1)))
    }

    /// Sample `index` (0 ..< count) of `epoch`, decoded and transformed. Thread-safe.
    public func sample(seed: UInt64, epoch: Int, index: Int) throws -> Sample {
        precondition(index >= 0 && index < count, "sample \(index) of an epoch of \(count)")
        let (a, b) = pairing(seed: seed, epoch: epoch, index: index)
        let streamA = Streams.transform(seed: seed, epoch: epoch, index: index, 0)
        let streamB = Streams.transform(seed: seed, epoch: epoch, index: index, 1)
        let (pathA, tensorA) = try load(.a, a, channels: options.inputChannels, random: streamA)
        let (pathB, tensorB) = try load(.b, b, channels: options.outputChannels, random: streamB)
        return Sample(a: tensorA, b: tensorB, pathA: pathA, pathB: pathB, epoch: epoch, index: index)
    }

    /// File `first` of a domain as a sample tensor, or the next usable one after it. Each attempt
    /// starts from the same random stream, so the result does not depend on what failed before.
    private func load(_ domain: Domain, _ first: Int, channels: Int, random: SplitMix64) throws -> (String, Tensor) {
        let paths = domain == .a ? pathsA : pathsB
        for step in 0..<paths.count {
            let index = (first + step) % paths.count
            if lock.withLock({ unusable[domain]!.contains(index) }) { continue }
            var stream = random
            do {
                let image = try ImageFile.loadBytes(paths[index], options: loadOptions)
                return (paths[index], try transform.apply(to: image, channels: channels, random: &stream))
            } catch let error as ImagingError {
                skip(domain, index, path: paths[index], reason: error.reason)
            } catch let error as ImageTransform.Unusable {
                skip(domain, index, path: paths[index], reason: error.reason)
            }
        }
        let folder = domain == .a ? folderA : folderB
        throw DataError(
            .allUnreadable, folder: folder,
            "none of the \(paths.count) images in \(folder) can be used (see the warnings above for why)")
    }

    private func skip(_ domain: Domain, _ index: Int, path: String, reason: String) {
        let isNew = lock.withLock {
            guard unusable[domain]!.insert(index).inserted else { return false }
            skippedFiles.append(SkippedFile(path: path, reason: reason))
            return true
        }
        if isNew { onWarning("skipping \(path): \(reason)") }
    }
}

/// The random streams of the data, each keyed by what it is for, so that none depends on another.
enum Streams {
    private static let orderKey: UInt64 = 1
    private static let pairingKey: UInt64 = 2
    private static let transformKey: UInt64 = 3

    static func order(seed: UInt64, epoch: Int) -> SplitMix64 {
        SplitMix64(seed: seed).derived(orderKey, UInt64(bitPattern: Int64(epoch)))
    }

    static func pairing(seed: UInt64, epoch: Int, index: Int) -> SplitMix64 {
        SplitMix64(seed: seed).derived(pairingKey, UInt64(bitPattern: Int64(epoch)), UInt64(index))
    }

    /// `image` 0 is A, 1 is B: their crops and flips are drawn independently, as the reference's two transforms.
    static func transform(seed: UInt64, epoch: Int, index: Int, _ image: UInt64) -> SplitMix64 {
        SplitMix64(seed: seed).derived(transformKey, UInt64(bitPattern: Int64(epoch)), UInt64(index), image)
    }
}
