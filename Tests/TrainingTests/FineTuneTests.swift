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

    /// A model's own networks fix a fine-tune's architecture: the networks made fresh beside them
    /// take their shape, and options given against them are refused before anything starts. A
    /// resumed run refuses a changed recipe, naming the option and the checkpoint's value, but
    /// takes a changed crop (a later fine-tune may bring other photos).
    @Test func aFineTuneKeepsTheModelsShapeAndSaysWhatItRefuses() throws {
        let scratch = try Scratch()
        let store = ModelStore(root: scratch.url.appendingPathComponent("models"))
        // G_A alone: ngf 8, two residual blocks (no netG name has two).
        _ = try ModelImporter(store: store).run(
            ImportRequest(
                paths: [fixture("generators/reference_generator.pth")], name: "small", domains: .init(a: "a", b: "b"),
                role: nil, epoch: nil, note: nil, force: false))
        let data = try DataFolder()
        defer { data.remove() }
        for i in 0..<2 {
            try data.image("trainA/\(i).png", width: 40, height: 40, seed: i)
            try data.image("trainB/\(i).png", width: 40, height: 40, seed: 10 + i)
        }
        func trainer(_ change: (inout TrainingOptions) -> Void, given: Set<String>) throws -> Trainer {
            var options = TrainingOptions()
            options.loadSize = 36
            options.cropSize = 32
            options.ndf = 8
            options.maxIters = 1
            options.threads = 2
            change(&options)
            return try Trainer(
                TrainingRequest(
                    data: .dataroot(data.path), name: "small", store: store, continueTrain: true, options: options,
                    given: given.union(["load_size", "crop_size", "ndf", "max_iters"])), observer: nil)
        }
        func refusal(_ body: () throws -> Trainer) -> String {
            do {
                _ = try body()
                return "accepted"
            } catch { return "\(error)" }
        }

        let ngf = refusal { try trainer({ $0.ngf = 16 }, given: ["ngf"]) }
        #expect(ngf.contains("--ngf 16") && ngf.contains("G_A has ngf 8"), "\(ngf)")
        let inputs = refusal { try trainer({ $0.inputNC = 1 }, given: ["input_nc"]) }
        #expect(inputs.contains("--input_nc 1") && inputs.contains("input_nc 3"), "\(inputs)")
        #expect(try store.manifest("small")?[.generatorB] == nil, "a refused run changed nothing")

        // Nothing said about the networks: G_B mirrors G_A (plain norms), D_A and D_B follow --ndf.
        do {  // a run holds its model's lock until it is released
            let first = try trainer({ _ in }, given: [])
            #expect(first.initialised == ["G_B", "D_A", "D_B"])
            #expect(try first.run().iterations == 1)
        }
        let manifest = try #require(try store.manifest("small"))
        #expect(manifest[.generatorB]?.architecture.generator == manifest[.generatorA]?.architecture.generator)
        #expect(manifest[.generatorB]?.architecture.generator?.blocks == 2)
        #expect(manifest[.discriminatorA]?.architecture.discriminator?.ndf == 8)

        // Resumed from its checkpoint: a changed loss weight is refused, the same one is not, and
        // a new crop size and schedule are taken.
        let lambda = refusal {
            try trainer(
                {
                    $0.lambdaA = 5; $0.maxIters = 2
                }, given: ["lambda_A"])
        }
        #expect(lambda.contains("--lambda_A 5") && lambda.contains("has lambda_A 10"), "\(lambda)")
        #expect(lambda.contains("crop_size"), "the message lists what may change: \(lambda)")
        let resumed = try trainer(
            {
                $0.lambdaA = 10; $0.cropSize = 24; $0.loadSize = 28; $0.maxIters = 2
            }, given: ["lambda_A"])
        #expect(resumed.options.cropSize == 24)
        let summary = try resumed.run()
        #expect(summary.iterations == 2 && summary.version == 3, "one more iteration, published: \(summary)")
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
