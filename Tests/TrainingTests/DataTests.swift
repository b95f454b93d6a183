import Foundation
import Imaging
import Tensor
import Testing

@testable import Training

/// The training data through real files and real libvips: listing, every preprocess mode,
/// determinism, junk files, grey, and libvips' bicubic against PIL's (the reference's).
@Suite struct DataTests {
    // MARK: listing

    @Test func listsImagesSortedByPathFilteredAndLimited() throws {
        let root = try DataFolder()
        defer { root.remove() }
        for name in ["b.png", "a.jpg", "Upper.JPG", "sub/d.png", ".hidden.png", ".hid/e.png"] {
            try root.image("trainA/" + name, width: 8, height: 8)
        }
        try root.text("trainA/notes.txt", "not an image")
        try root.image("trainB/x.png", width: 8, height: 8)
        let a = root.path + "/trainA/"

        let all = try UnalignedDataset(dataroot: root.path, options: DataOptions())
        #expect(all.pathsA == [a + "Upper.JPG", a + "a.jpg", a + "b.png", a + "sub/d.png"])
        #expect(all.countB == 1 && all.count == 4)

        let two = try UnalignedDataset(dataroot: root.path, options: DataOptions(maxDatasetSize: 2))
        #expect(two.pathsA == [a + "Upper.JPG", a + "a.jpg"])
        #expect(two.count == 2)
    }

    @Test func aMissingEmptyImagelessOrNonFolderDomainIsAnErrorNamingIt() throws {
        let root = try DataFolder()
        defer { root.remove() }
        try root.image("trainB/x.png", width: 8, height: 8)
        let folder = root.path + "/trainA"
        func failure() -> DataError? {
            do {
                _ = try UnalignedDataset(dataroot: root.path, options: DataOptions())
                return nil
            } catch {
                return error as? DataError
            }
        }
        let missing = try #require(failure())
        #expect(missing.kind == .missingFolder && missing.folder == folder)
        #expect(missing.description.contains("\(folder) does not exist"))

        try root.text("trainA", "a file, not a folder")
        #expect(try #require(failure()).description.contains("\(folder) is not a folder"))

        try FileManager.default.removeItem(atPath: folder)
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: false)
        let empty = try #require(failure())
        #expect(empty.kind == .noImages && empty.description.contains("\(folder) is empty"))

        try root.text("trainA/readme.txt", "no images here")
        try root.text("trainA/.secret.png", "hidden")
        #expect(try #require(failure()).description.contains("\(folder) has 1 files but no images"))
    }

    @Test func optionsThatCannotCropAreRefused() throws {
        let root = try DataFolder()
        defer { root.remove() }
        try root.image("trainA/a.png", width: 8, height: 8)
        try root.image("trainB/b.png", width: 8, height: 8)
        #expect(throws: DataError.self) {
            try UnalignedDataset(dataroot: root.path, options: DataOptions(loadSize: 200, cropSize: 256))
        }
        #expect(throws: DataError.self) {
            try UnalignedDataset(dataroot: root.path, options: DataOptions(inputChannels: 2))
        }
    }

    // MARK: preprocessing

    @Test(arguments: [
        (DataOptions.Preprocess.resizeAndCrop, 300, 200, 256, 256),
        (.scaleWidthAndCrop, 300, 200, 256, 256),
        (.scaleWidth, 300, 200, 286, 256),  // height max(286 · 200 / 300, 256)
        (.scaleWidth, 300, 400, 286, 381),  // int(286 · 400 / 300)
        (.crop, 300, 280, 256, 256),
        (.none, 37, 29, 36, 28),
        (.none, 30, 26, 32, 24),  // 7.5 and 6.5 round to even, as Python's round
    ])
    func eachPreprocessGivesTheReferenceSize(
        mode: DataOptions.Preprocess, width: Int, height: Int, outWidth: Int, outHeight: Int
    ) throws {
        let root = try DataFolder()
        defer { root.remove() }
        try root.image("trainA/a.png", width: width, height: height)
        try root.image("trainB/b.jpg", width: width, height: height)
        let data = try UnalignedDataset(dataroot: root.path, options: DataOptions(preprocess: mode))
        for epoch in 0..<3 {
            let sample = try data.sample(seed: 5, epoch: epoch, index: 0)
            for t in [sample.a, sample.b] {
                #expect(t.shape == [1, 3, outHeight, outWidth])
                #expect(t.array.allSatisfy { $0 >= -1 && $0 <= 1 })
                #expect(t.array.contains { $0 < -0.5 } && t.array.contains { $0 > 0.5 })
            }
        }
        #expect(data.skippedCount == 0)
    }

    @Test func samplesAreThePixelsScaledToMinusOneOne() throws {
        let root = try DataFolder()
        defer { root.remove() }
        let levels = try root.image("trainA/a.png", width: 36, height: 28)
        try root.image("trainB/b.png", width: 36, height: 28)
        let data = try UnalignedDataset(dataroot: root.path, options: DataOptions(preprocess: .none, noFlip: true))
        let a = try data.sample(seed: 1, epoch: 0, index: 0).a
        #expect(a.array == PlanarImage(levels, width: 36, height: 28).floats)
    }

    @Test func flipsMirrorHalfTheSamplesAndNoFlipNone() throws {
        let root = try DataFolder()
        defer { root.remove() }
        let levels = try root.image("trainA/a.png", width: 36, height: 28)
        try root.image("trainB/b.png", width: 36, height: 28)
        let plain = PlanarImage(levels, width: 36, height: 28)
        let flipping = try UnalignedDataset(dataroot: root.path, options: DataOptions(preprocess: .none))
        let fixed = try UnalignedDataset(dataroot: root.path, options: DataOptions(preprocess: .none, noFlip: true))
        #expect(plain.mirrored.floats != plain.floats)
        var flips = 0
        for epoch in 0..<32 {
            #expect(try fixed.sample(seed: 9, epoch: epoch, index: 0).a.array == plain.floats)
            let a = try flipping.sample(seed: 9, epoch: epoch, index: 0).a.array
            if a == plain.mirrored.floats { flips += 1 } else { #expect(a == plain.floats) }
        }
        #expect(flips > 4 && flips < 28)
    }

    @Test func cropsAreWindowsOfTheImageAtOffsetsInRange() throws {
        let root = try DataFolder()
        defer { root.remove() }
        let (width, height, size) = (40, 30, 16)
        let levels = try root.image("trainA/a.png", width: width, height: height)
        try root.image("trainB/b.png", width: width, height: height)
        let options = DataOptions(preprocess: .crop, cropSize: size, noFlip: true)
        let data = try UnalignedDataset(dataroot: root.path, options: options)
        let full = PlanarImage(levels, width: width, height: height)
        var offsets = Set<[Int]>()
        for epoch in 0..<24 {
            let a = try data.sample(seed: 3, epoch: epoch, index: 0).a
            #expect(a.shape == [1, 3, size, size])
            let found = (0...(height - size)).flatMap { y in (0...(width - size)).map { [$0, y] } }
                .first { full.window(x: $0[0], y: $0[1], size: size) == a.array }
            #expect(found != nil)
            if let found { offsets.insert(found) }
        }
        #expect(offsets.count > 8)

        // The draws themselves cover the whole range, both ends included.
        let transform = ImageTransform(options: options)
        var xs = Set<Int>(), ys = Set<Int>()
        for i in 0..<2000 {
            var random = SplitMix64(seed: UInt64(i))
            let placed = try transform.placement(width: width, height: height, random: &random)
            xs.insert(placed.x)
            ys.insert(placed.y)
        }
        #expect(xs == Set(0...(width - size)) && ys == Set(0...(height - size)))
    }

    @Test func anImageSmallerThanTheCropIsSkipped() throws {
        let root = try DataFolder()
        defer { root.remove() }
        try root.image("trainA/big.png", width: 300, height: 280)
        try root.image("trainA/small.png", width: 300, height: 200)
        try root.image("trainB/b.png", width: 300, height: 280)
        let data = try UnalignedDataset(dataroot: root.path, options: DataOptions(preprocess: .crop))
        for epoch in 0..<4 {
            for index in 0..<data.count {
                #expect(try data.sample(seed: 2, epoch: epoch, index: index).pathA.hasSuffix("big.png"))
            }
        }
        #expect(data.skipped.map(\.path) == [root.path + "/trainA/small.png"])
        #expect(
            data.skipped.first?.reason.contains("300×200 after preprocessing, smaller than the 256×256 crop") == true)
    }

    // MARK: order, pairing, determinism

    @Test func serialBatchesPairByIndexInFileOrder() throws {
        let root = try DataFolder()
        defer { root.remove() }
        let data = try root.dataset(countA: 5, countB: 3, DataOptions(preprocess: .none, serialBatches: true))
        #expect(data.order(seed: 4, epoch: 7) == Array(0..<5))
        for index in 0..<5 {
            let sample = try data.sample(seed: 4, epoch: 7, index: index)
            #expect(sample.pathA == data.pathsA[index % 5] && sample.pathB == data.pathsB[index % 3])
        }
    }

    @Test func shuffledEpochsAreSeededPermutationsWithRandomPartners() throws {
        let root = try DataFolder()
        defer { root.remove() }
        let data = try root.dataset(countA: 4, countB: 3, DataOptions(preprocess: .none))
        let orders = (0..<6).map { data.order(seed: 11, epoch: $0) }
        for order in orders { #expect(order.sorted() == Array(0..<4)) }
        #expect(Set(orders).count > 1)
        #expect(data.order(seed: 11, epoch: 2) == orders[2])
        #expect((0..<6).map { data.order(seed: 12, epoch: $0) } != orders)

        var partners = Set<String>()
        for epoch in 0..<6 {
            for index in 0..<4 {
                let sample = try data.sample(seed: 11, epoch: epoch, index: index)
                #expect(sample.pathA == data.pathsA[orders[epoch][index] % 4])
                partners.insert(sample.pathB)
            }
        }
        #expect(partners == Set(data.pathsB))
    }

    @Test func aSampleIsAFunctionOfSeedEpochAndIndexThroughThePrefetcherToo() throws {
        let root = try DataFolder()
        defer { root.remove() }
        let data = try root.dataset(countA: 3, countB: 2, DataOptions(loadSize: 48, cropSize: 32))
        let first = try data.sample(seed: 21, epoch: 4, index: 1)
        let again = try data.sample(seed: 21, epoch: 4, index: 1)
        #expect(first.a.array == again.a.array && first.b.array == again.b.array && first.pathB == again.pathB)
        let otherSeed = try data.sample(seed: 22, epoch: 4, index: 1)
        #expect(otherSeed.a.array != first.a.array || otherSeed.b.array != first.b.array)

        // Started mid-epoch, across the end of epoch 4 into epoch 5.
        let prefetcher = Prefetcher(dataset: data, seed: 21, epoch: 4, index: 1, depth: 2)
        for (epoch, index) in [(4, 1), (4, 2), (5, 0), (5, 1), (5, 2), (6, 0)] {
            let expected = try data.sample(seed: 21, epoch: epoch, index: index)
            let got = try prefetcher.next()
            #expect(got.epoch == epoch && got.index == index)
            #expect(got.a.array == expected.a.array && got.b.array == expected.b.array)
            #expect(got.pathA == expected.pathA && got.pathB == expected.pathB)
        }
        prefetcher.stop()
        #expect(throws: PrefetchStopped.self) { try prefetcher.next() }
    }

    @Test func droppingAPrefetcherStopsItsThread() throws {
        let root = try DataFolder()
        defer { root.remove() }
        let data = try root.dataset(countA: 2, countB: 2, DataOptions(preprocess: .none))
        weak var gone: Prefetcher?
        do {
            let prefetcher = Prefetcher(dataset: data, seed: 1, epoch: 0)
            _ = try prefetcher.next()
            gone = prefetcher
        }
        #expect(gone == nil)
    }

    // MARK: junk

    @Test func unreadableFilesAreSkippedCountedAndReplaced() throws {
        let root = try DataFolder()
        defer { root.remove() }
        try root.image("trainA/good1.png", width: 40, height: 40)
        try root.image("trainA/good2.jpg", width: 40, height: 40)
        let jpeg = try Data(contentsOf: URL(fileURLWithPath: root.path + "/trainA/good2.jpg"))
        try jpeg.prefix(jpeg.count / 2).write(to: URL(fileURLWithPath: root.path + "/trainA/truncated.jpg"))
        try root.text("trainA/empty.png", "")
        try root.text("trainA/text.jpg", "this is not a JPEG")
        try root.image("trainB/b.png", width: 40, height: 40)
        let warnings = Warnings()
        let data = try UnalignedDataset(
            dataroot: root.path, options: DataOptions(loadSize: 36, cropSize: 32), onWarning: warnings.add)
        #expect(data.count == 5)

        let prefetcher = Prefetcher(dataset: data, seed: 8, epoch: 0)
        for _ in 0..<(2 * data.count) {
            let sample = try prefetcher.next()
            #expect(sample.pathA.hasSuffix("/good1.png") || sample.pathA.hasSuffix("/good2.jpg"))
            #expect(sample.a.shape == [1, 3, 32, 32])
        }
        let bad = ["empty.png", "text.jpg", "truncated.jpg"].map { root.path + "/trainA/" + $0 }
        #expect(prefetcher.skippedCount == 3)
        #expect(Set(prefetcher.skipped.map(\.path)) == Set(bad))
        #expect(warnings.all.count == 3)
        for path in bad { #expect(warnings.all.contains { $0.hasPrefix("skipping \(path): ") }) }
    }

    @Test func aDomainWithNoReadableFileStopsTheDataWithAnError() throws {
        let root = try DataFolder()
        defer { root.remove() }
        try root.image("trainA/a.png", width: 16, height: 16)
        try root.text("trainB/one.png", "")
        try root.text("trainB/two.jpg", "junk")
        let options = DataOptions(preprocess: .none)
        let data = try UnalignedDataset(dataroot: root.path, options: options)
        let prefetcher = Prefetcher(dataset: data, seed: 1, epoch: 0)
        for _ in 0..<2 {
            let error = #expect(throws: DataError.self) { try prefetcher.next() }
            #expect(error?.kind == .allUnreadable && error?.folder == root.path + "/trainB")
        }
    }

    // MARK: grey and PIL parity

    @Test func greyIsPILsConvertL() throws {
        let root = try DataFolder()
        defer { root.remove() }
        try FileManager.default.createDirectory(atPath: root.path + "/trainA", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: Fixture.path("photo.png"), toPath: root.path + "/trainA/photo.png")
        try root.image("trainB/b.png", width: 300, height: 200)
        let options = DataOptions(preprocess: .none, noFlip: true, inputChannels: 1)
        let sample = try UnalignedDataset(dataroot: root.path, options: options).sample(seed: 0, epoch: 0, index: 0)
        #expect(sample.a.shape == [1, 1, 200, 300])
        #expect(sample.b.shape == [1, 3, 200, 300])
        let grey = try Fixture.greyLevels("pil-grey.png")
        #expect(sample.a.array == grey.map { ImageTransform.levels[Int($0)] })
    }

    @Test func bytesAreImagingsUprightSRGBWithoutAlphaAndWithTheHighByteOf16Bits() throws {
        let root = try DataFolder()
        defer { root.remove() }
        for name in ["rgba.png", "orientation-6.jpg", "palette.png", "grey.png"] {
            let bytes = try ImageFile.loadBytes(Fixture.imaging(name))
            let decoded = try ImageFile.load(Fixture.imaging(name)).tensor
            #expect(bytes.bands == 3 && [1, 3, bytes.height, bytes.width] == decoded.shape)
            let planar = (0..<3).flatMap { c in (0..<(bytes.width * bytes.height)).map { bytes.samples[$0 * 3 + c] } }
            #expect(planar.map { ImageTransform.levels[Int($0)] } == decoded.array, "\(name)")
        }
        let sixteen = root.path + "/rgb16.png"
        let vips = Process()
        vips.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        vips.arguments = ["vips", "colourspace", Fixture.imaging("rgb.png"), sixteen, "rgb16"]
        try vips.run()
        vips.waitUntilExit()
        #expect(try ImageFile.loadBytes(sixteen) == ImageFile.loadBytes(Fixture.imaging("rgb.png")))
    }

    /// The bounds are a little above what libvips 8.14 gives; a half-pixel misalignment would
    /// give a mean of about 9 levels. A strong shrink differs most (libvips quantises the
    /// kernel's positions), an enlargement least (only at the edges, which PIL does not extend).
    @Test(arguments: [
        (286, 286, 10, 0.25),  // resize_and_crop's resize: narrower and taller (measured max 8, mean 0.18)
        (256, 170, 6, 0.45),  // (4, 0.33)
        (286, 190, 6, 0.4),  // scale_width (4, 0.28)
        (600, 400, 18, 0.05),  // (15, 0.023)
        (36, 28, 22, 1.5),  // shrunk 8 times (18, 1.22)
    ])
    func libvipsBicubicIsCloseToPILs(width: Int, height: Int, maxBound: Int, meanBound: Double) throws {
        let photo = try ImageFile.loadBytes(Fixture.path("photo.png"))
        let ours = try photo.resizedBicubic(width: width, height: height)
        let pil = try ImageFile.loadBytes(Fixture.path("pil-bicubic-\(width)x\(height).png"))
        #expect(ours.width == width && ours.height == height && ours.samples.count == pil.samples.count)
        let differences = zip(ours.samples, pil.samples).map { abs(Int($0) - Int($1)) }
        let mean = Double(differences.reduce(0, +)) / Double(differences.count)
        let maximum = differences.max() ?? 0
        print("libvips vs PIL bicubic 300×200 → \(width)×\(height): max \(maximum), mean \(mean) levels")
        #expect(mean < meanBound && maximum <= maxBound)
    }

    @Test func decodeTimePerSample() throws {
        let root = try DataFolder()
        defer { root.remove() }
        for i in 0..<4 { try root.image("trainA/\(i).jpg", width: 256, height: 256) }
        for i in 0..<4 { try root.image("trainB/\(i).jpg", width: 256, height: 256) }
        let data = try UnalignedDataset(dataroot: root.path, options: DataOptions())
        let clock = ContinuousClock()
        let samples = 16
        let elapsed = try clock.measure {
            for i in 0..<samples { _ = try data.sample(seed: 1, epoch: i / 4, index: i % 4) }
        }
        let perImage = elapsed / (2 * samples)
        print("decode + resize 286 + crop 256 of a 256×256 JPEG: \(perImage) per image")
        #expect(data.skippedCount == 0)
    }
}

// MARK: helpers

/// A dataset root in a fresh temporary folder. Tests remove it with `defer { root.remove() }`
/// (not in `deinit`: an optimised build may release the object before the files are read).
final class DataFolder {
    let path: String

    init() throws {
        path = (NSTemporaryDirectory() as NSString).appendingPathComponent("cyclegand-data-" + UUID().uuidString)
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }

    /// A dataset of `countA` and `countB` distinct 48×40 PNGs.
    func dataset(countA: Int, countB: Int, _ options: DataOptions) throws -> UnalignedDataset {
        for i in 0..<countA { try image("trainA/\(i).png", width: 48, height: 40, seed: i) }
        for i in 0..<countB { try image("trainB/\(i).png", width: 48, height: 40, seed: 100 + i) }
        return try UnalignedDataset(dataroot: path, options: options)
    }

    /// Writes an asymmetric RGB test pattern through libvips and returns its 8-bit levels
    /// (interleaved RGB), which a PNG keeps exactly.
    @discardableResult
    func image(_ name: String, width: Int, height: Int, seed: Int = 0) throws -> [UInt8] {
        let file = path + "/" + name
        try FileManager.default.createDirectory(
            atPath: (file as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        var levels = [UInt8](repeating: 0, count: width * height * 3)
        for y in 0..<height {
            for x in 0..<width {
                let p = (y * width + x) * 3
                levels[p] = UInt8((x * 255) / max(1, width - 1))
                levels[p + 1] = UInt8((y * 255) / max(1, height - 1))
                levels[p + 2] = UInt8(((x * 7 + y * 13 + seed * 31) % 64) * 4)
            }
        }
        let tensor = Tensor(
            shape: [1, 3, height, width], values: PlanarImage(levels, width: width, height: height).floats)
        try ImageFile.save(tensor, to: file)
        return levels
    }

    func text(_ name: String, _ contents: String) throws {
        let file = path + "/" + name
        try FileManager.default.createDirectory(
            atPath: (file as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data(contents.utf8).write(to: URL(fileURLWithPath: file))
    }
}

/// 8-bit interleaved RGB levels as the planar [-1, 1] floats a sample holds.
struct PlanarImage {
    let levels: [UInt8]
    let width: Int
    let height: Int

    init(_ levels: [UInt8], width: Int, height: Int) {
        self.levels = levels
        self.width = width
        self.height = height
    }

    var floats: [Float] { window(x: 0, y: 0, width: width, height: height) }

    var mirrored: PlanarImage {
        var out = levels
        for y in 0..<height {
            for x in 0..<width {
                for c in 0..<3 { out[(y * width + x) * 3 + c] = levels[(y * width + width - 1 - x) * 3 + c] }
            }
        }
        return PlanarImage(out, width: width, height: height)
    }

    func window(x: Int, y: Int, size: Int) -> [Float] { window(x: x, y: y, width: size, height: size) }

    func window(x x0: Int, y y0: Int, width w: Int, height h: Int) -> [Float] {
        var out: [Float] = []
        for c in 0..<3 {
            for y in y0..<(y0 + h) {
                for x in x0..<(x0 + w) { out.append(ImageTransform.levels[Int(levels[(y * width + x) * 3 + c])]) }
            }
        }
        return out
    }
}

enum Fixture {
    static let directory: String = {
        var url = URL(fileURLWithPath: #filePath)
        while url.lastPathComponent != "Tests" { url.deleteLastPathComponent() }
        return url.appendingPathComponent("Fixtures/training-data").path
    }()

    static func path(_ name: String) -> String { directory + "/" + name }

    /// Imaging's fixtures (Tests/Fixtures/imaging).
    static func imaging(_ name: String) -> String { directory + "/../imaging/" + name }

    /// A greyscale PNG's levels (libvips reads it as RGB with three equal bands).
    static func greyLevels(_ name: String) throws -> [UInt8] {
        let rgb = try ImageFile.loadBytes(path(name))
        return stride(from: 0, to: rgb.samples.count, by: 3).map { rgb.samples[$0] }
    }
}

/// Warnings collected from the data's thread.
final class Warnings: @unchecked Sendable {
    private let lock = NSLock()
    private var list: [String] = []

    var all: [String] { lock.withLock { list } }

    var add: @Sendable (String) -> Void { { [self] message in lock.withLock { list.append(message) } } }
}
