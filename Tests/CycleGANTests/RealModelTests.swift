import Foundation
import Imaging
import Models
import Tensor
import Testing

@testable import CycleGAN

/// The real vintagify generator (45 MB, fetched by `make model`) on a real photo
/// gives PyTorch's 8-bit output. Skipped, saying so, when the weights are absent.
@Suite struct RealModelTests {
    static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let weights = URL(
        fileURLWithPath: ProcessInfo.processInfo.environment["CYCLEGAND_VINTAGIFY_WEIGHTS"]
            ?? root.appendingPathComponent("weights/vintagify/G_A2B_epoch33.pth").path)
    static let haveWeights = FileManager.default.fileExists(atPath: weights.path)

    @Test(.enabled(if: haveWeights, "weights/vintagify/G_A2B_epoch33.pth is missing: run `make model`"))
    func vintagifyMatchesPyTorchIn8Bit() throws {
        let real = Self.root.appendingPathComponent("Tests/Fixtures/real")
        let g = try loadGenerator(weights: Self.weights)
        #expect(g.architecture == GeneratorArchitecture(ngf: 64, blocks: 9, affine: true))
        let input = try ImageFile.load(real.appendingPathComponent("chelsea_320x240.png").path)
        let output = g.forward(input.tensor, compute: Compute())

        // Float output against PyTorch's float output.
        let torchFloat = try #require(
            try SafeTensorsFile.open(real.appendingPathComponent("chelsea_320x240_vintagify.safetensors"))["output"])
        let floatDiff = output.maxAbsDifference(torchFloat)
        #expect(floatDiff < 2e-3)

        // 8-bit output, written and read back through libvips, against PyTorch's PNG.
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cyclegand-real-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let ours = dir.appendingPathComponent("ours.png").path
        try ImageFile.save(output, to: ours)
        let a = try ImageFile.load(ours).tensor
        let b = try ImageFile.load(real.appendingPathComponent("chelsea_320x240_vintagify.png").path).tensor
        var equal = 0
        var worst = 0
        for i in 0..<a.count {
            let d = Int(abs(((a.data[i] + 1) * 127.5).rounded() - ((b.data[i] + 1) * 127.5).rounded()))
            if d == 0 { equal += 1 }
            worst = max(worst, d)
        }
        let share = Double(equal) / Double(a.count)
        print("vintagify vs PyTorch: float max |Δ| \(floatDiff), 8-bit equal \(share * 100)%, worst \(worst)")
        #expect(share >= 0.995)
        #expect(worst <= 2)
    }
}
