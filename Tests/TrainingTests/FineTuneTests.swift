import CycleGAN
import Foundation
import Imaging
import Models
import Tensor
import Testing

@testable import Training

/// The default model (vintagify's G_A, affine norms, nothing else) fine-tuned on real photos.
@Suite struct FineTuneTests {
    static let weights = repositoryRoot.appendingPathComponent("weights/vintagify/G_A2B_epoch33.pth")

    @Test(.enabled(if: FileManager.default.fileExists(atPath: weights.path)))
    func fineTunesTheDefaultModel() throws {
        let scratch = try Scratch()
        let store = ModelStore(root: scratch.url.appendingPathComponent("models"))
        _ = try ModelImporter(store: store).run(
            ImportRequest(
                paths: [Self.weights], name: "modern2vintage", domains: .init(a: "modern", b: "vintage"), role: nil,
                epoch: nil, note: nil, force: false))
        // Real photos (examples/images) on both sides, plus one file that is not an image.
        let photos = repositoryRoot.appendingPathComponent("examples/images")
        for side in ["trainA", "trainB"] {
            let folder = scratch.url.appendingPathComponent("data/\(side)")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            for name in ["astronaut.jpg", "chelsea.png", "coffee.jpg", "rocket.jpg"] {
                try FileManager.default.copyItem(
                    at: photos.appendingPathComponent(name), to: folder.appendingPathComponent(name))
            }
        }
        try Data("not a photo".utf8).write(to: scratch.url.appendingPathComponent("data/trainB/notes.jpg"))

        let photo = try ImageFile.load(photos.appendingPathComponent("chelsea.png").path).tensor.cropped(
            height: 64, width: 64)
        let compute = Compute(threads: 2)
        let before = try store.generator(direction: "modern2vintage").forward(photo, compute: compute)

        var options = TrainingOptions()
        options.loadSize = 72
        options.cropSize = 64
        options.maxIters = 2
        options.threads = 2
        let observer = Messages()
        let trainer = try Trainer(
            TrainingRequest(
                data: .dataroot(scratch.path("data")), name: "modern2vintage", store: store, continueTrain: true,
                options: options), observer: observer)
        #expect(trainer.initialised == ["G_B", "D_A", "D_B"])
        #expect(trainer.domains == ["modern", "vintage"])
        let summary = try trainer.run()
        #expect(summary.iterations == 2)
        #expect(summary.version == 2)
        #expect(summary.skipped == 1)
        #expect(observer.lines.contains { $0.contains("initialised G_B, D_A, D_B") })
        #expect(observer.lines.contains { $0.contains("notes.jpg") })

        // G_A kept its layout (affine norms) and translates, now with the fine-tuned weights.
        let manifest = try #require(try store.manifest("modern2vintage"))
        #expect(manifest[.generatorA]?.architecture.affine == true)
        #expect(manifest[.generatorB]?.architecture.affine == false)
        let after = try store.generator(direction: "modern2vintage").forward(photo, compute: compute)
        let change = after.maxAbsDifference(before)
        #expect(change > 1e-4 && change < 1)
        #expect(after.array.allSatisfy { $0.isFinite && abs($0) <= 1 })
        #expect(try store.versions(model: "modern2vintage").map(\.version) == [1, 2])
        // While one run is going on, a second on the same model is refused.
        #expect(throws: TrainingError.self) {
            try Trainer(
                TrainingRequest(
                    data: .dataroot(scratch.path("data")), name: "modern2vintage", store: store, continueTrain: true,
                    options: options), observer: nil)
        }
        _ = trainer
        // Both directions exist now, and a second run refuses to start without --continue_train.
        #expect(try store.direction("vintage2modern").role == .generatorB)
        #expect(throws: TrainingError.self) {
            try Trainer(
                TrainingRequest(
                    data: .dataroot(scratch.path("data")), name: "modern2vintage", store: store, continueTrain: false,
                    options: options), observer: nil)
        }
    }
}

/// Collects a run's messages.
final class Messages: TrainingObserver, @unchecked Sendable {
    private let lock = NSLock()
    private var collected: [String] = []

    var lines: [String] { lock.withLock { collected } }
    func message(_ text: String) { lock.withLock { collected.append(text) } }
    func progress(_ p: TrainingProgress) {}
}
