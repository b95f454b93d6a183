import CycleGAN
import Foundation
import Models
import Tensor
import Testing

@testable import Imaging

/// The streamed (banded) executor gives the whole-image pass's output.
@Suite struct ExecutorTests {
    static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let fixtures = root.appendingPathComponent("Tests/Fixtures")
    let compute = Compute(threads: 2)

    func generator(_ layout: String) throws -> ResnetGenerator {
        try loadGenerator(weights: Self.fixtures.appendingPathComponent("generators/\(layout)_generator.safetensors"))
    }

    static func image(height: Int, width: Int, seed: UInt32) -> Tensor {
        let t = Tensor(shape: [1, 3, height, width])
        var s = seed &* 2_654_435_761 &+ 7
        for i in 0..<t.count {
            s = s &* 1_664_525 &+ 1_013_904_223
            // Smooth gradients plus noise, like a photo rather than white noise.
            let x = Float(i % width) / Float(max(width, 1))
            t.data[i] = 0.6 * sin(6 * x + Float(i / width % 97) * 0.05) + 0.3 * (Float(s >> 8) / Float(1 << 24) - 0.5)
        }
        return t
    }

    @Test(arguments: [
        (37, 29, 4), (31, 17, 8), (64, 48, 12), (13, 1, 4), (1, 13, 4), (5, 3, 4), (4097, 3, 256), (24, 40, 1000),
    ])
    func streamedEqualsWhole(_ c: (Int, Int, Int)) throws {
        let (h, w, band) = c
        for layout in ["reference", "vintagify"] {
            let g = try generator(layout)
            let x = Self.image(height: h, width: w, seed: UInt32(h * 31 + w))
            let whole = g.forward(x, compute: compute)
            for inMemory in [true, false] {
                let streamed = try ImageTranslation.streamedForward(
                    g, x, bandRows: band, storesInMemory: inMemory, compute: compute)
                #expect(streamed.maxAbsDifference(whole) < 1e-3, "\(layout) \(h)×\(w) bands of \(band)")
            }
        }
    }

    /// Files through libvips: a forced streamed translation writes the same
    /// 8-bit pixels as the whole-image one (up to rounding at .5), and leaves
    /// no temporary file behind.
    @Test func streamedFileMatchesWholeFile() throws {
        let scratch = try Scratch()
        let tmp = scratch.file("tmp")
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        let input = Self.root.appendingPathComponent("Tests/Fixtures/real/chelsea_320x240.png").path
        let g = try generator("vintagify")
        var outputs: [Tensor] = []
        for mode in [ImageTranslation.Options.Mode.whole, .streamed] {
            let out = scratch.file("\(mode).png")
            let options = ImageTranslation.Options(
                load: LoadOptions(temporaryDirectory: tmp), save: SaveOptions(temporaryDirectory: tmp),
                mode: mode, bandRows: 16)
            let report = try ImageTranslation.translateFile(input: input, output: out, generator: g, options: options)
            #expect(report.mode == mode && report.width == 320 && report.height == 240)
            outputs.append(try ImageFile.load(out).tensor)
        }
        var worst: Float = 0
        for i in 0..<outputs[0].count { worst = max(worst, abs(outputs[0].data[i] - outputs[1].data[i]) * 127.5) }
        #expect(worst <= 1.01)
        #expect(try FileManager.default.contentsOfDirectory(atPath: tmp).isEmpty)
    }

    /// A streamed run asked to stop throws `cancelled` between bands (not at once, not at
    /// the end), writes no output and leaves no temporary file.
    @Test func aCancelledStreamedRunStopsBetweenBandsAndLeavesNothing() throws {
        let scratch = try Scratch()
        let tmp = scratch.file("tmp")
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        let input = Self.root.appendingPathComponent("Tests/Fixtures/real/chelsea_320x240.png").path
        let out = scratch.file("out.png")
        let options = ImageTranslation.Options(
            load: LoadOptions(temporaryDirectory: tmp), save: SaveOptions(temporaryDirectory: tmp),
            mode: .streamed, bandRows: 16)
        let plan = try ImageTranslation.Plan(input: input, generator: try generator("vintagify"), options: options)
        let asked = Counter()
        do {
            _ = try plan.run(output: out, isCancelled: { asked.increment() > 20 })
            Issue.record("the run did not stop")
        } catch let error as ImagingError {
            #expect(error.kind == .cancelled)
        }
        #expect(asked.value == 22)
        #expect(!FileManager.default.fileExists(atPath: out))
        #expect(try FileManager.default.contentsOfDirectory(atPath: tmp).isEmpty)
        #expect(scratch.contents == ["tmp"])
    }

    @Test func modeFollowsTheMemoryLimit() {
        let a = GeneratorArchitecture()
        #expect(chooseMode(a, height: 1024, width: 1024, limit: 1 << 30) == .whole)
        #expect(chooseMode(a, height: 4000, width: 6000, limit: 1 << 30) == .streamed)
        let options = ImageTranslation.Options(memoryLimit: 1 << 30, threads: 2)
        let rows = streamedBandRows(a, height: 4000, width: 6000, options: options)
        #expect(rows >= 4)
        #expect(
            StreamedGenerator.estimatedBytes(
                architecture: a, height: 4000, width: 6000, bandRows: rows, storesInMemory: false, threads: 2)
                + 4000 * 6000 * 8 <= 1 << 30)
    }
}

/// How often a closure was called, from any thread.
private final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0

    var value: Int { lock.withLock { count } }

    /// Counts one more call and returns the count before it.
    func increment() -> Int {
        lock.withLock {
            count += 1
            return count - 1
        }
    }
}
