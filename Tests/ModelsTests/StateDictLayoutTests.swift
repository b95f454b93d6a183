import CycleGAN
import Foundation
import Tensor
import Testing

@testable import Models

@Suite struct StateDictLayoutTests {
    private func normalized(_ name: String) throws -> NormalizedWeights {
        try StateDictLayout.normalize(try TorchCheckpoint.load(Fixtures.url(name)), source: name)
    }

    @Test(arguments: [
        "gen_zip.pth", "gen_legacy.pth", "gen_module_prefix.pth", "gen_norm_leftovers.pth",
        "gen_wrapped.pth",
    ])
    func plainGeneratorVariantsGiveTheSameWeights(_ name: String) throws {
        let n = try normalized(name)
        let reference = try TorchCheckpoint.load(Fixtures.url("gen_zip.pth"))
        #expect(n.kind == .generator)
        #expect(n.generator == GeneratorArchitecture(ngf: 4, blocks: 2, affine: false))
        #expect(!n.dropout)
        #expect(Set(n.weights.keys) == Set(reference.keys))
        for (k, v) in reference { #expect(n.weights[k]?.maxAbsDifference(v) == 0, "\(k)") }
    }

    @Test func notesWhatChanged() throws {
        #expect(try normalized("gen_module_prefix.pth").notes.contains { $0.contains("module.") })
        // 2 blocks × 2 norms + 5 outer norms, 3 buffers each.
        #expect(try normalized("gen_norm_leftovers.pth").notes.contains { $0.contains("dropped 27") })
        #expect(try normalized("gen_zip.pth").notes.isEmpty)
    }

    @Test func dropoutLayoutMovesTheSecondConv() throws {
        let raw = try TorchCheckpoint.load(Fixtures.url("gen_dropout.pth"))
        #expect(raw["model.10.conv_block.6.weight"]?.shape == [16, 16, 3, 3])
        let n = try StateDictLayout.normalize(raw, source: "gen_dropout.pth")
        #expect(n.dropout)
        #expect(n.generator == GeneratorArchitecture(ngf: 4, blocks: 2, affine: false))
        #expect(
            n.weights["model.11.conv_block.5.weight"]?.maxAbsDifference(
                raw["model.11.conv_block.6.weight"]!) == 0)
        // And back, for export.
        let back = StateDictLayout.dropoutLayout(n.weights)
        #expect(Set(back.keys) == Set(raw.keys))
    }

    @Test func vintagifyLayoutIsRenamed() throws {
        let n = try normalized("gen_vintagify_layout.pth")
        #expect(n.generator == GeneratorArchitecture(ngf: 4, blocks: 2, affine: true))
        #expect(n.weights["model.10.conv_block.6.weight"]?.shape == [16])
        #expect(n.weights.keys.allSatisfy { !$0.contains(".block.") })
    }

    @Test func sixBlocksAndWiderGenerator() throws {
        #expect(
            try normalized("gen_ngf8_6blocks.pth").generator
                == GeneratorArchitecture(ngf: 8, blocks: 6, affine: false))
    }

    @Test(arguments: 1...5)
    func discriminatorsOfOneToFiveLayers(_ layers: Int) throws {
        let n = try normalized("disc_n\(layers).pth")
        #expect(n.kind == .discriminator)
        #expect(n.discriminator == DiscriminatorArchitecture(ndf: 4, layers: layers, affine: false))
    }

    @Test func affineDiscriminatorInLegacyFormat() throws {
        #expect(
            try normalized("disc_affine.pth").discriminator
                == DiscriminatorArchitecture(ndf: 4, layers: 3, affine: true))
    }

    @Test func unknownLayoutNamesItsKeys() throws {
        do {
            _ = try normalized("unknown_layout.pth")
            Issue.record("an unknown layout was accepted")
        } catch {
            let text = "\(error)"
            #expect(text.contains("encoder.0.weight [8, 3, 3, 3]"))
            #expect(text.contains("head.weight [10, 8]"))
        }
    }

    @Test func aGeneratorWithAMissingTensorIsRefused() throws {
        var raw = try TorchCheckpoint.load(Fixtures.url("gen_zip.pth"))
        raw["model.11.conv_block.5.weight"] = nil
        raw["model.1.bias"] = Tensor(shape: [5])
        do {
            _ = try StateDictLayout.normalize(raw, source: "edited")
            Issue.record("an incomplete generator was accepted")
        } catch {
            let text = "\(error)"
            #expect(text.contains("missing model.11.conv_block.5.weight"))
            #expect(text.contains("model.1.bias is [5], expected [4]"))
        }
    }

    @Test func loadGeneratorReadsEveryFormat() throws {
        let dir = try ScratchDirectory()
        let raw = try TorchCheckpoint.load(Fixtures.url("gen_module_prefix.pth"))
        let st = dir.file("g.safetensors")
        try SafeTensors.write(raw.map { ($0.key, $0.value) }, to: st)
        for url in [Fixtures.url("gen_legacy.pth"), Fixtures.url("gen_dropout.pth"), st] {
            #expect(try loadGenerator(weights: url).architecture.ngf == 4)
        }
        #expect(throws: LayoutError.self) { try loadGenerator(weights: Fixtures.url("disc_n3.pth")) }
    }
}
