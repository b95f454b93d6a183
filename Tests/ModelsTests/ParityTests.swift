import CycleGAN
import Foundation
import Tensor
import Testing

@testable import Models

/// Weights read through the Models module give PyTorch's outputs: every
/// import variant, through the lead's forward passes.
@Suite struct ParityTests {
    /// PyTorch's input and output for a fixture network.
    static func io(_ name: String) throws -> (input: Tensor, output: Tensor) {
        let file = try SafeTensorsFile.open(Fixtures.url("\(name).io.safetensors"))
        return (try #require(file["input"]), try #require(file["output"]))
    }

    @Test(arguments: [
        ("gen_zip.pth", "gen_zip"), ("gen_legacy.pth", "gen_zip"), ("gen_module_prefix.pth", "gen_zip"),
        ("gen_norm_leftovers.pth", "gen_zip"), ("gen_views.pth", "gen_zip"), ("gen_deflated.pth", "gen_zip"),
        ("gen_wrapped.pth", "gen_zip"),
        ("gen_dropout.pth", "gen_dropout"), ("gen_vintagify_layout.pth", "gen_vintagify_layout"),
        ("gen_ngf8_6blocks.pth", "gen_ngf8_6blocks"),
    ])
    func generatorsMatchPyTorch(_ file: String, _ io: String) throws {
        let generator = try loadGenerator(weights: Fixtures.url(file))
        let (x, y) = try Self.io(io)
        #expect(generator.forward(x).maxAbsDifference(y) < 1e-4)
    }

    @Test(arguments: ["disc_n1", "disc_n2", "disc_n3", "disc_n4", "disc_n5", "disc_affine"])
    func discriminatorsMatchPyTorch(_ name: String) throws {
        let n = try StateDictLayout.normalize(
            try TorchCheckpoint.load(Fixtures.url("\(name).pth")), source: name)
        let d = try PatchDiscriminator(architecture: try #require(n.discriminator), weights: n.weights)
        let (x, y) = try Self.io(name)
        let out = d.forward(x)
        #expect(out.shape == y.shape)
        #expect(out.maxAbsDifference(y) < 1e-4)
    }
}
