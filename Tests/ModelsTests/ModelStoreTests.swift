import CycleGAN
import Foundation
import Tensor
import Testing

@testable import Models

@Suite struct ModelStoreTests {
    let dir: ScratchDirectory
    let store: ModelStore
    let importer: ModelImporter

    init() throws {
        dir = try ScratchDirectory()
        store = ModelStore(root: dir.url.appendingPathComponent("models"))
        var importer = ModelImporter(store: store)
        importer.now = { Date(timeIntervalSince1970: 1_800_000_000) }
        self.importer = importer
    }

    @discardableResult
    func importFixture(
        _ path: String, as name: String, domains: (String, String)? = nil, role: NetworkRole? = nil,
        epoch: String? = nil,
        force: Bool = false
    ) throws -> ImportResult {
        try importer.run(
            ImportRequest(
                paths: [Fixtures.url(path)], name: name,
                domains: domains.map { ModelManifest.Domains(a: $0.0, b: $0.1) },
                role: role, epoch: epoch, note: "test fixture", force: force))
    }

    // MARK: the full reference set

    @Test func aReferenceCheckpointFolderBecomesOneModelWithTwoDirections() throws {
        let result = try importFixture("reference_set", as: "horse2zebra")
        #expect(
            result.networks.map(\.role) == [.generatorA, .generatorB, .discriminatorA, .discriminatorB])
        #expect(result.networks.allSatisfy { $0.source.lastPathComponent.hasPrefix("latest_net_") })
        let manifest = try #require(try store.manifest("horse2zebra"))
        #expect(manifest.domains == ModelManifest.Domains(a: "horse", b: "zebra"))
        #expect(
            manifest[.generatorA]?.architecture.generator == GeneratorArchitecture(ngf: 4, blocks: 2))
        #expect(
            manifest[.discriminatorB]?.architecture.discriminator
                == DiscriminatorArchitecture(ndf: 4, layers: 3))
        #expect(manifest[.generatorA]?.provenance?.note == "test fixture")
        #expect(manifest[.generatorA]?.provenance?.importedAt == "2027-01-15T08:00:00Z")

        let catalog = store.catalog()
        #expect(catalog.problems.isEmpty)
        #expect(catalog.directions.map(\.name) == ["horse2zebra", "zebra2horse"])
        #expect(try store.direction("zebra2horse").role == .generatorB)

        // All four networks, read back from the store, give PyTorch's outputs.
        for (direction, role) in [("horse2zebra", "G_A"), ("zebra2horse", "G_B")] {
            let (x, y) = try ParityTests.io("reference_set_\(role)")
            #expect(
                try store.generator(direction: direction).forward(x).maxAbsDifference(y) < 1e-4,
                "\(direction)")
        }
        for role in [NetworkRole.discriminatorA, .discriminatorB] {
            let d = try PatchDiscriminator(weights: try store.weights(model: "horse2zebra", role: role))
            let (x, y) = try ParityTests.io("reference_set_\(role.rawValue)")
            #expect(d.forward(x).maxAbsDifference(y) < 1e-4, "\(role)")
        }
    }

    @Test func epochPicksThatEpochsFiles() throws {
        try importFixture("reference_set", as: "horse2zebra", epoch: "5")
        let stored = try store.weights(model: "horse2zebra", role: .generatorB)
        let epoch5 = try TorchCheckpoint.load(Fixtures.url("reference_set/5_net_G_B.pth"))
        let latest = try TorchCheckpoint.load(Fixtures.url("reference_set/latest_net_G_B.pth"))
        #expect(stored["model.1.weight"]?.maxAbsDifference(epoch5["model.1.weight"]!) == 0)
        #expect(stored["model.1.weight"]!.maxAbsDifference(latest["model.1.weight"]!) > 0)
        #expect(try store.manifest("horse2zebra")?.training?.epoch == 5)
        #expect(throws: ModelStoreError.self) {
            try importFixture("reference_set", as: "other2thing", epoch: "9")
        }
    }

    /// The store builds from the files as they are now (the daemon caches, in `LoadOnce`).
    @Test func generatorsFollowTheModelsFiles() throws {
        try importFixture("gen_zip.pth", as: "horse2zebra")
        let first = try store.generator(direction: "horse2zebra")
        #expect(try store.generator(direction: "horse2zebra").weights.keys == first.weights.keys)
        try importFixture("gen_dropout.pth", as: "horse2zebra", force: true)
        let second = try store.generator(direction: "horse2zebra")
        let changed = first.weights.contains { name, t in
            second.weights[name].map { t.maxAbsDifference($0) > 0 } ?? true
        }
        #expect(changed)
    }

    // MARK: import rules

    @Test func reimportingTheSameFileChangesNothing() throws {
        try importFixture("gen_zip.pth", as: "modern2vintage")
        let json = store.folder("modern2vintage").appendingPathComponent("model.json")
        let before = try Data(contentsOf: json)
        let again = try importFixture("gen_zip.pth", as: "modern2vintage")
        #expect(again.unchanged)
        #expect(try Data(contentsOf: json) == before)
    }

    @Test func replacingANetworkNeedsForceAndCleansUp() throws {
        try importFixture("gen_zip.pth", as: "modern2vintage")
        let oldFile = try #require(try store.manifest("modern2vintage")?[.generatorA]?.file)
        do {
            try importFixture("gen_dropout.pth", as: "modern2vintage")
            Issue.record("a different generator replaced the model's without --force")
        } catch {
            #expect("\(error)".contains("--force"))
        }
        let replaced = try importFixture("gen_dropout.pth", as: "modern2vintage", force: true)
        #expect(replaced.networks.first?.outcome == .replaced)
        let manifest = try #require(try store.manifest("modern2vintage"))
        #expect(manifest[.generatorA]?.architecture.dropout == true)
        let files = try FileManager.default.contentsOfDirectory(
            atPath: store.folder("modern2vintage").path
        ).sorted()
        #expect(files == ["model.json", manifest[.generatorA]!.file].sorted())
        #expect(!files.contains(oldFile))
    }

    @Test func networksCanBeAddedOneByOne() throws {
        try importFixture("reference_set/latest_net_G_A.pth", as: "day2night")
        #expect(try store.manifest("day2night")?.directions.map(\.name) == ["day2night"])
        try importFixture("gen_zip.pth", as: "day2night", role: .generatorB)
        #expect(try store.manifest("day2night")?.directions.map(\.name) == ["day2night", "night2day"])
        do {
            try importFixture("disc_n3.pth", as: "day2night", role: .generatorB, force: true)
            Issue.record("a discriminator was imported as G_B")
        } catch {
            #expect("\(error)".contains("holds a discriminator"))
        }
    }

    @Test func aSingleGeneratorIsGA() throws {
        let result = try importFixture(
            "gen_vintagify_layout.pth", as: "modern2vintage", domains: ("modern", "vintage"))
        #expect(result.networks.map(\.role) == [.generatorA])
        #expect(result.networks[0].changes.contains { $0.contains("conv_block") })
    }

    @Test func namesAndDomainsAreChecked() throws {
        #expect(throws: ModelStoreError.self) { try importFixture("gen_zip.pth", as: "vintagify") }
        #expect(throws: ModelStoreError.self) {
            try importFixture("gen_zip.pth", as: "../escape", domains: ("a", "b"))
        }
        #expect(throws: ModelStoreError.self) {
            try importFixture("gen_zip.pth", as: "same", domains: ("a", "a"))
        }
        #expect(throws: (any Error).self) { try importFixture("unknown_layout.pth", as: "bad2worse") }
        #expect(throws: (any Error).self) { try importFixture("truncated.pth", as: "bad2worse") }
        // Nothing is left behind by refused imports.
        #expect(store.catalog().models.isEmpty)
    }

    // MARK: integrity

    @Test func aTruncatedOrAlteredFileIsRefused() throws {
        try importFixture("gen_zip.pth", as: "horse2zebra")
        let entry = try #require(try store.manifest("horse2zebra")?[.generatorA])
        let url = store.folder("horse2zebra").appendingPathComponent(entry.file)
        let good = try Data(contentsOf: url)

        var altered = good
        altered[altered.count - 10] ^= 0x01
        try altered.write(to: url)
        #expect(throws: ModelStoreError.self) { try store.generator(direction: "horse2zebra") }

        try good.prefix(good.count / 2).write(to: url)
        do {
            _ = try store.generator(direction: "horse2zebra")
            Issue.record("a truncated file was loaded")
        } catch {
            #expect("\(error)".contains("truncated or altered"))
            #expect("\(error)".contains(entry.file))
        }

        try good.write(to: url)
        #expect(try store.generator(direction: "horse2zebra").architecture.ngf == 4)
    }

    @Test func directionClashesAreReportedNotResolved() throws {
        try importFixture("gen_zip.pth", as: "horse2zebra")
        try importFixture("gen_dropout.pth", as: "zebras", domains: ("horse", "zebra"))
        let catalog = store.catalog()
        #expect(catalog.directions.isEmpty)
        #expect(catalog.problems.count == 1)
        #expect(catalog.problems[0].contains("horse2zebra G_A, zebras G_A"))
        do {
            _ = try store.generator(direction: "horse2zebra")
            Issue.record("a clashing direction was resolved")
        } catch {
            #expect("\(error)".contains("several models"))
        }
        #expect(throws: ModelStoreError.self) { try store.direction("cat2dog") }
    }

    @Test func aBrokenModelJSONIsAProblemNotACrash() throws {
        try importFixture("gen_zip.pth", as: "horse2zebra")
        let other = store.folder("broken")
        try FileManager.default.createDirectory(at: other, withIntermediateDirectories: true)
        try Data("{\"formatVersion\": 1".utf8).write(to: other.appendingPathComponent("model.json"))
        let catalog = store.catalog()
        #expect(catalog.directions.map(\.name) == ["horse2zebra"])
        #expect(catalog.problems.count == 1)
        #expect(catalog.problems[0].contains("broken/model.json"))
    }

    @Test func storedFilesAreSafetensorsPythonReads() throws {
        try importFixture("gen_module_prefix.pth", as: "horse2zebra")
        let entry = try #require(try store.manifest("horse2zebra")?[.generatorA])
        let file = try SafeTensorsFile.open(
            store.folder("horse2zebra").appendingPathComponent(entry.file))
        #expect(
            Set(file.names) == Set(GeneratorArchitecture(ngf: 4, blocks: 2).parameterShapes().map(\.name))
        )
        #expect(file.metadata["format"] == "pt")
        #expect(
            entry.bytes
                == (try FileManager.default.attributesOfItem(atPath: file.url.path)[.size] as? Int))
    }

    // MARK: export

    @Test(arguments: [ModelExporter.Format.pth, .safetensors])
    func exportThenImportGivesTheSameModel(_ format: ModelExporter.Format) throws {
        try importFixture("reference_set", as: "horse2zebra")
        try importFixture("gen_dropout.pth", as: "drop2out")
        let out = dir.url.appendingPathComponent("export-\(format.rawValue)")
        let exporter = ModelExporter(store: store)
        let written = try exporter.export(model: "horse2zebra", to: out, format: format)
        #expect(
            written.map(\.lastPathComponent)
                == ["G_A", "G_B", "D_A", "D_B"].map { "latest_net_\($0).\(format.rawValue)" })
        try exporter.export(model: "drop2out", to: out.appendingPathComponent("drop"), format: format)

        // The exported dropout generator has its second conv back at conv_block.6.
        let dropFile = out.appendingPathComponent("drop/latest_net_G_A.\(format.rawValue)")
        #expect(try loadStateDict(dropFile)["model.10.conv_block.6.weight"]?.rank == 4)

        let back = ModelImporter(store: store)
        // A folder of exported files imports as a reference checkpoint folder, in either format.
        try back.run(ImportRequest(paths: [out], name: "copy", domains: .init(a: "horse", b: "zebra")))
        try back.run(ImportRequest(paths: [dropFile], name: "drop2copy"))
        for role in NetworkRole.allCases {
            let a = try store.weights(model: "horse2zebra", role: role)
            let b = try store.weights(model: "copy", role: role)
            #expect(Set(a.keys) == Set(b.keys))
            for (k, v) in a { #expect(b[k]?.maxAbsDifference(v) == 0, "\(role) \(k)") }
        }
        #expect(try store.manifest("drop2copy")?[.generatorA]?.architecture.dropout == true)
        // The exported .pth is torch's zip format as torch writes it.
        if format == .pth {
            let checkpoint = try TorchCheckpoint.open(out.appendingPathComponent("latest_net_G_A.pth"))
            #expect(checkpoint.names == ModelExporter.stateDictOrder(checkpoint.tensors).map(\.name))
            #expect(checkpoint.names.first == "model.1.weight")
        }
    }

    @Test func defaultRootFollowsTheEnvironment() {
        #expect(
            ModelStore.defaultRoot(environment: ["CYCLEGAND_MODELS": "/m", "XDG_DATA_HOME": "/x"]).path
                == "/m")
        #expect(
            ModelStore.defaultRoot(environment: ["XDG_DATA_HOME": "/x", "HOME": "/h"]).path
                == "/x/cyclegand/models")
        #expect(
            ModelStore.defaultRoot(environment: ["HOME": "/h"]).path == "/h/.local/share/cyclegand/models"
        )
        #expect(
            ModelStore.defaultRoot(environment: ["XDG_DATA_HOME": "relative", "HOME": "/h"]).path
                .hasPrefix("/h/"))
    }

    @Test func referenceFileNames() {
        #expect(ModelImporter.referenceFileName("latest_net_G_A.pth")! == ("latest", .generatorA))
        #expect(ModelImporter.referenceFileName("12_net_D_B.pth")! == ("12", .discriminatorB))
        #expect(ModelImporter.referenceFileName("latest_net_G_B.safetensors")! == ("latest", .generatorB))
        #expect(ModelImporter.referenceFileName("_net_G_A.pth") == nil)
        #expect(ModelImporter.referenceFileName("horse2zebra.pth") == nil)
    }
}
