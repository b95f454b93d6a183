import CycleGAN
import Foundation
import Tensor
import Testing

@testable import Imaging

/// Progress of a translation: monotone, weighted by work, and ending at exactly 1 when the
/// work is done (so the planned total of a streamed run matches the passes it makes).
@Suite struct ProgressTests {
    let compute = Compute(threads: 2)

    /// Checks `values` rise from above 0 to 1, reached only by the last one.
    func checkRun(_ values: [Double], _ label: String) {
        #expect(values.count > 3, "\(label): \(values.count) reports")
        #expect(zip(values, values.dropFirst()).allSatisfy { $0 <= $1 }, "\(label): not monotone")
        #expect(abs((values.last ?? 0) - 1) < 1e-9, "\(label): ends at \(values.last ?? -1)")
        #expect(values.dropLast().allSatisfy { $0 > 0 && $0 < 1 - 1e-9 }, "\(label): 1 reached before the end")
    }

    @Test(arguments: [(64, 48, 12), (37, 29, 4), (24, 40, 1000)])
    func aStreamedRunReportsEachBandUpToOne(_ c: (Int, Int, Int)) throws {
        let (h, w, band) = c
        for layout in ["reference", "vintagify"] {
            let g = try ExecutorTests().generator(layout)
            let x = ExecutorTests.image(height: h, width: w, seed: 3)
            let values = Reports()
            _ = try ImageTranslation.streamedForward(
                g, x, bandRows: band, storesInMemory: true, compute: compute, progress: values.add)
            checkRun(values.all, "\(layout) \(h)×\(w) bands of \(band)")
        }
    }

    /// By layer, weighted by multiply-adds: the residual blocks hold most of the reference
    /// generator's work, so the middle of the bar is reached inside them, not after the first layers.
    @Test func aWholePassReportsEachLayerByItsWork() throws {
        let g = try ExecutorTests().generator("reference")
        let values = Reports()
        _ = g.forward(ExecutorTests.image(height: 32, width: 32, seed: 5), compute: compute, progress: values.add)
        checkRun(values.all, "whole pass")
        let shape = Network.Shape(channels: 3, height: 32, width: 32)
        let total = g.network.work(g.network.layers, shape).macs
        let first = g.network.work(g.network.layers[0], shape).macs
        #expect(abs(values.all[0] - first / total) < 1e-12)
    }

    /// A file through `Plan.run`: 0 first, the decode share, the network's, 1 after the write;
    /// a whole-image pass asked to stop does so after a layer.
    @Test func aPlanRunsFromZeroToOneAndStopsWithinALayer() throws {
        let scratch = try Scratch()
        let input = ExecutorTests.root.appendingPathComponent("Tests/Fixtures/real/chelsea_320x240.png").path
        let g = try ExecutorTests().generator("reference")
        for mode in [ImageTranslation.Options.Mode.whole, .streamed] {
            let values = Reports()
            let plan = try ImageTranslation.Plan(
                input: input, generator: g, options: ImageTranslation.Options(mode: mode, bandRows: 32))
            _ = try plan.run(output: scratch.file("\(mode).png"), progress: values.add)
            #expect(values.all.first == 0 && values.all.last == 1, "\(mode)")
            #expect(values.all.contains(ImageTranslation.Plan.Share.decode), "\(mode)")
            #expect(zip(values.all, values.all.dropFirst()).allSatisfy { $0 <= $1 }, "\(mode): not monotone")
        }
        let stopped = Reports()
        let plan = try ImageTranslation.Plan(
            input: input, generator: g, options: ImageTranslation.Options(mode: .whole))
        #expect(throws: ImagingError.self) {
            try plan.run(
                output: scratch.file("stopped.png"), isCancelled: { stopped.all.count > 3 }, progress: stopped.add)
        }
        #expect(stopped.all.count == 4, "stopped after the first layer that saw the cancel")
        #expect(!FileManager.default.fileExists(atPath: scratch.file("stopped.png")))
    }
}

/// Progress values as they came.
final class Reports: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [Double] = []

    func add(_ value: Double) { lock.withLock { values.append(value) } }
    var all: [Double] { lock.withLock { values } }
}
