import CycleGAN
import Foundation
import Tensor
import Testing

@testable import Models

@Suite struct TorchCheckpointTests {
    /// The reference generator's parameters, as the fixture script built them.
    static let plainGenerator = GeneratorArchitecture(ngf: 4, blocks: 2, affine: false)

    @Test(arguments: ["gen_zip.pth", "gen_legacy.pth", "gen_views.pth", "gen_deflated.pth"])
    func readsBothFormatsAndStridedViews(_ name: String) throws {
        let checkpoint = try TorchCheckpoint.open(Fixtures.url(name))
        let reference = try TorchCheckpoint.load(Fixtures.url("gen_zip.pth"))
        #expect(checkpoint.names == Self.plainGenerator.parameterShapes().map(\.name))
        for (name, shape) in Self.plainGenerator.parameterShapes() {
            let t = try #require(checkpoint.tensors[name])
            #expect(t.shape == shape)
            #expect(t.maxAbsDifference(try #require(reference[name])) == 0, "\(name)")
        }
    }

    @Test func convertsHalfStorages() throws {
        let half = try TorchCheckpoint.load(Fixtures.url("gen_half.pth"))
        let full = try TorchCheckpoint.load(Fixtures.url("gen_zip.pth"))
        for (name, t) in full {
            // float16 keeps 11 significant bits; the weights are below 1.
            #expect(try #require(half[name]).maxAbsDifference(t) < 1e-3, "\(name)")
        }
    }

    @Test func unwrapsACheckpointDict() throws {
        let wrapped = try TorchCheckpoint.open(Fixtures.url("gen_wrapped.pth"))
        #expect(wrapped.wrapperKey == "state_dict")
        #expect(wrapped.names.count == Self.plainGenerator.parameterShapes().count)
    }

    @Test func keepsLegacyLeftoversForTheLayoutToDrop() throws {
        let raw = try TorchCheckpoint.load(Fixtures.url("gen_norm_leftovers.pth"))
        #expect(raw["model.2.running_var"]?.array == [Float](repeating: 1, count: 4))
        #expect(raw["model.2.num_batches_tracked"]?.shape == [])
    }

    private func failure(_ name: String) -> String? { failure(at: Fixtures.url(name)) }

    private func failure(at url: URL) -> String? {
        do {
            _ = try TorchCheckpoint.load(url)
            return nil
        } catch {
            return "\(error)"
        }
    }

    @Test func refusesBrokenFiles() throws {
        #expect(failure("truncated.pth")?.contains("end-of-central-directory") == true)
        #expect(failure("corrupt_pickle.pth")?.contains("CRC") == true)
        let global = try #require(failure("not_a_state_dict.pth"))
        #expect(global.contains("torch.nn.modules.activation.ReLU"))
        #expect(
            failure("python_written.safetensors")?.contains("neither a zip archive nor a legacy") == true)
        let dir = try ScratchDirectory()
        let legacy = try Data(contentsOf: Fixtures.url("gen_legacy.pth"))
        let cut = dir.file("cut.pth")
        try legacy.prefix(legacy.count - 100).write(to: cut)
        #expect(failure(at: cut)?.contains("truncated") == true)
    }

    /// The real default model, when `make` has fetched it.
    @Test(.enabled(if: FileManager.default.fileExists(atPath: Fixtures.vintagify.path)))
    func readsTheVintagifyGenerator() throws {
        let checkpoint = try TorchCheckpoint.open(Fixtures.vintagify)
        #expect(checkpoint.names.count == 94)
        #expect(checkpoint.tensors["model.10.block.1.weight"]?.shape == [256, 256, 3, 3])
        let generator = try loadGenerator(weights: Fixtures.vintagify)
        #expect(generator.architecture == GeneratorArchitecture(ngf: 64, blocks: 9, affine: true))
    }
}
