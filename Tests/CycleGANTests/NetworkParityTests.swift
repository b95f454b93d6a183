import Foundation
import Models
import Tensor
import Testing

@testable import CycleGAN

private let fixtures = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")

private func safetensors(in folder: String, matching keep: (String) -> Bool) -> [URL] {
    let dir = fixtures.appendingPathComponent(folder)
    let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
    return names.filter { $0.hasSuffix(".safetensors") && keep($0) }.sorted().map { dir.appendingPathComponent($0) }
}

/// Whole networks against PyTorch (tools/make_fixtures.py), within 1e-4.
@Suite struct NetworkParityTests {
    let compute = Compute(threads: 2)

    static let generatorCases = safetensors(in: "generators") { !$0.contains("_generator") }
    static let discriminatorCases = safetensors(in: "discriminators") { !$0.contains("_discriminator") }

    @Test func everyLayoutAndSizeIsCovered() {
        let names = Self.generatorCases.map(\.lastPathComponent)
        for layout in ["reference", "vintagify"] {
            for size in ["32x32", "37x29", "1x1", "5x3", "2x23", "64x7"] {
                #expect(names.contains("\(layout)_\(size).safetensors"))
            }
        }
        #expect(Self.discriminatorCases.count >= 3)
    }

    /// Both weight files of a layout (PyTorch's .pth and our reading of .safetensors)
    /// give the same generator, and its output matches PyTorch's on every size,
    /// including the ones our padding rule handles (1×1, 5×3, 2×23, 37×29).
    @Test(arguments: generatorCases)
    func generatorMatchesPyTorch(_ url: URL) throws {
        let f = try SafeTensorsFile.open(url)
        let layout = try #require(f.metadata["layout"])
        let dir = url.deletingLastPathComponent()
        for weights in ["\(layout)_generator.pth", "\(layout)_generator.safetensors"] {
            let g = try loadGenerator(weights: dir.appendingPathComponent(weights))
            #expect(g.architecture.ngf == 8 && g.architecture.blocks == 2)
            #expect(g.architecture.affine == (layout == "vintagify"))
            let y = g.forward(try #require(f["input"]), compute: compute)
            let expected = try #require(f["output"])
            #expect(y.shape == expected.shape)
            // reference_1x1 pads to a constant image: every norm sees a constant channel and
            // must give exact zeros (PyTorch float32 amplifies its rounding noise there), so
            // the fixture holds the exact answer, tanh of the last bias (tools/make_fixtures.py).
            #expect(y.maxAbsDifference(expected) < 1e-4, "\(weights) on \(url.lastPathComponent)")
        }
    }

    @Test(arguments: discriminatorCases)
    func discriminatorMatchesPyTorch(_ url: URL) throws {
        let f = try SafeTensorsFile.open(url)
        let layers = try #require(f.metadata["layers"])
        let weights = try loadStateDict(
            url.deletingLastPathComponent().appendingPathComponent("nlayer\(layers)_discriminator.pth"))
        let d = try PatchDiscriminator(weights: weights)
        #expect(d.architecture.layers == Int(layers))
        let y = d.forward(try #require(f["input"]), compute: compute)
        let expected = try #require(f["output"])
        #expect(y.shape == expected.shape)
        #expect(y.maxAbsDifference(expected) < 1e-4)
    }

    @Test func shapesThatDoNotFitAreNamed() throws {
        var weights = try loadStateDict(fixtures.appendingPathComponent("generators/reference_generator.pth"))
        weights["model.10.conv_block.5.weight"] = Tensor(shape: [16, 32, 3, 3])
        #expect {
            try ResnetGenerator(weights: weights)
        } throws: { error in
            "\(error)".contains("model.10.conv_block.5.weight is [16, 32, 3, 3], expected [32, 32, 3, 3]")
        }
    }
}
