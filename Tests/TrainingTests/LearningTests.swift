import CycleGAN
import Foundation
import Models
import Tensor
import Testing

@testable import Training

/// The trainer learns: on the synthetic task (SyntheticTask), a short run of
/// the reference recipe brings G_A well below the identity baseline. The full
/// 1,000-iteration run against PyTorch is in `make bench` (docs/TRAINING.md).
@Suite struct LearningTests {
    @Test func learnsToSwapRedAndBlue() throws {
        let scratch = try Scratch()
        var task = SyntheticTask(seed: 11)
        try task.write(to: scratch.path("data"), count: 200)
        var options = TrainingOptions()
        options.netG = "resnet_6blocks"
        options.ngf = 16
        options.ndf = 16
        options.preprocess = .none
        options.load_size = 32
        options.crop_size = 32
        options.n_epochs = 1000
        options.n_epochs_decay = 0
        options.max_iters = LearningTests.iterations
        options.print_freq = 50
        options.display_freq = 200
        options.threads = 2
        options.seed = 1
        let store = ModelStore(root: scratch.url.appendingPathComponent("models"))
        let trainer = try Trainer(
            TrainingRequest(
                data: .dataroot(scratch.path("data")), name: "swap", store: store, continueTrain: false,
                options: options),
            observer: nil)
        #expect(trainer.initialised == ["G_A", "G_B", "D_A", "D_B"])
        let summary = try trainer.run()
        #expect(summary.reason == .maxIters)
        #expect(summary.iterations == LearningTests.iterations)
        #expect(summary.version == 1)

        let generator = try store.generator(direction: "A2B")
        let compute = Compute(threads: 2)
        let ratio = SyntheticTask.errorRatio({ generator.forward($0, compute: compute) }, samples: 50, seed: 999)
        #expect(ratio < LearningTests.goal, "G_A's L1 error to the true map is \(ratio) of the identity baseline")
        // What a user sees in training/.
        let training = store.folder("swap").appendingPathComponent("training")
        for file in ["loss_log.jsonl", "losses.png", "index.html", "checkpoint"] {
            #expect(FileManager.default.fileExists(atPath: training.appendingPathComponent(file).path), "\(file)")
        }
    }

    static let iterations = 600
    static let goal = 0.6
}
