import CycleGAN
import Foundation
import Tensor
import Testing

@testable import Models

@Suite struct ModelVersionTests {
    let dir: ScratchDirectory
    let store: ModelStore
    /// The reference fixture set's networks and architectures, the starting point of "training".
    let reference: [NetworkRole: (weights: [String: Tensor], architecture: NetworkArchitecture)]

    init() throws {
        dir = try ScratchDirectory()
        store = ModelStore(root: dir.url.appendingPathComponent("models"))
        let source = ModelStore(root: dir.url.appendingPathComponent("source"))
        _ = try ModelImporter(store: source).run(
            ImportRequest(paths: [Fixtures.url("reference_set")], name: "horse2zebra"))
        let manifest = try #require(try source.manifest("horse2zebra"))
        var reference: [NetworkRole: (weights: [String: Tensor], architecture: NetworkArchitecture)] = [:]
        for role in NetworkRole.allCases {
            reference[role] = (
                try source.weights(model: "horse2zebra", role: role).mapValues { $0.copy() },
                manifest[role]!.architecture
            )
        }
        self.reference = reference
    }

    /// The reference networks in `roles`, every value shifted by `shift`: the weights after some training.
    func trained(_ roles: [NetworkRole], shift: Float)
        -> [NetworkRole: (weights: [String: Tensor], architecture: NetworkArchitecture)]
    {
        var out: [NetworkRole: (weights: [String: Tensor], architecture: NetworkArchitecture)] = [:]
        for role in roles {
            let (weights, architecture) = reference[role]!
            out[role] = (
                weights.mapValues { w in
                    let t = w.copy()
                    for i in 0..<t.count { t.data[i] += shift }
                    return t
                }, architecture
            )
        }
        return out
    }

    let provenance = Provenance(
        source: "cyclegand train horse2zebra", sourceSHA256: "none", importedAt: "2027-01-15T08:00:00Z")

    func file(_ manifest: ModelManifest, _ role: NetworkRole, version: Int? = nil) -> URL {
        let folder = version.map { store.versionsFolder(manifest.name).appendingPathComponent("\($0)") }
        return (folder ?? store.folder(manifest.name)).appendingPathComponent(manifest[role]!.file)
    }

    func inode(_ url: URL) throws -> UInt64 {
        try #require(try FileManager.default.attributesOfItem(atPath: url.path)[.systemFileNumber] as? UInt64)
    }

    /// Every network file of every version is there, with the sha256 its model.json records.
    func expectVersionsIntact(_ model: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        for (n, manifest) in try store.versions(model: model) {
            for role in manifest.roles {
                let url = file(manifest, role, version: n)
                #expect(
                    (try? MappedFile(url: url).sha256()) == manifest[role]!.sha256, "\(url.path)",
                    sourceLocation: sourceLocation)
            }
        }
    }

    // MARK: publishing

    @Test func publishingTwiceKeepsBothVersions() throws {
        try store.createModel(name: "horse2zebra", domains: .init(a: "horse", b: "zebra"))
        #expect(try store.manifest("horse2zebra")?.networks.isEmpty == true)
        #expect(try store.versions(model: "horse2zebra").isEmpty)

        let first = try store.publish(
            model: "horse2zebra", networks: trained(NetworkRole.allCases, shift: 0.25), provenance: provenance,
            training: .init(epoch: 1, iterations: 100))
        #expect(first == 1)
        let v1 = try #require(try store.manifest("horse2zebra"))
        #expect(v1.version == 1)
        #expect(v1.training == .init(epoch: 1, iterations: 100))
        let v1GA = try Data(contentsOf: file(v1, .generatorA))
        let g1 = try store.generator(direction: "horse2zebra")

        let second = try store.publish(
            model: "horse2zebra", networks: trained([.generatorA], shift: 0.5), provenance: provenance,
            training: .init(epoch: 2, iterations: 200))
        #expect(second == 2)
        let v2 = try #require(try store.manifest("horse2zebra"))
        #expect(v2.version == 2)
        #expect(v2[.generatorA]!.file != v1[.generatorA]!.file)
        // Networks not given stay as they were.
        for role in [NetworkRole.generatorB, .discriminatorA, .discriminatorB] { #expect(v2[role] == v1[role]) }

        let versions = try store.versions(model: "horse2zebra")
        #expect(versions.map(\.version) == [1, 2])
        #expect(versions[0].manifest == v1)
        #expect(versions[1].manifest == v2)
        try expectVersionsIntact("horse2zebra")
        // The top level holds the current files only; version 1's G_A lives on in versions/1.
        let top = try FileManager.default.contentsOfDirectory(atPath: store.folder("horse2zebra").path)
        #expect(Set(top) == Set(["model.json", "versions"] + v2.networks.values.map(\.file)))
        #expect(try Data(contentsOf: file(v1, .generatorA, version: 1)) == v1GA)
        // Kept files are links, not copies: G_B is one inode in all three places.
        let gb = try inode(file(v2, .generatorB))
        #expect(try inode(file(v1, .generatorB, version: 1)) == gb)
        #expect(try inode(file(v2, .generatorB, version: 2)) == gb)

        // The cached generator follows the new G_A.
        let g2 = try store.generator(direction: "horse2zebra")
        #expect(g2 !== g1)
        let expected = try ResnetGenerator(
            architecture: v2[.generatorA]!.architecture.generator!,
            weights: trained([.generatorA], shift: 0.5)[.generatorA]!.weights)
        let x = Tensor(shape: [1, 3, 16, 16], values: (0..<768).map { Float($0 % 17) / 8 - 1 })
        #expect(g2.forward(x).maxAbsDifference(expected.forward(x)) == 0)
    }

    @Test func aReaderOfTheOldVersionKeepsWorking() throws {
        try store.createModel(name: "horse2zebra", domains: .init(a: "horse", b: "zebra"))
        try store.publish(
            model: "horse2zebra", networks: trained([.generatorA], shift: 0.25), provenance: provenance, training: nil)
        // Views into the mapped file of version 1, as the daemon holds them.
        let old = try store.weights(model: "horse2zebra", role: .generatorA)
        let before = old["model.1.weight"]!.array
        try store.publish(
            model: "horse2zebra", networks: trained([.generatorA], shift: 0.5), provenance: provenance, training: nil)
        #expect(old["model.1.weight"]!.array == before)
        #expect(try store.weights(model: "horse2zebra", role: .generatorA)["model.1.weight"]!.array != before)
    }

    // MARK: rolling back

    @Test func rollingBackRestoresBitIdenticalFilesAndLosesNothing() throws {
        try store.createModel(name: "horse2zebra", domains: .init(a: "horse", b: "zebra"))
        try store.publish(
            model: "horse2zebra", networks: trained(NetworkRole.allCases, shift: 0.25), provenance: provenance,
            training: .init(epoch: 1))
        let v1 = try #require(try store.manifest("horse2zebra"))
        let v1Bytes = try v1.roles.map { try Data(contentsOf: file(v1, $0)) }
        try store.publish(
            model: "horse2zebra", networks: trained([.generatorA, .discriminatorA], shift: 0.5),
            provenance: provenance, training: .init(epoch: 2))
        let v2 = try #require(try store.manifest("horse2zebra"))
        let g2 = try store.generator(direction: "horse2zebra")

        try store.rollback(model: "horse2zebra", to: 1)
        let now = try #require(try store.manifest("horse2zebra"))
        #expect(now == v1)
        #expect(try now.roles.map { try Data(contentsOf: file(now, $0)) } == v1Bytes)
        #expect(try store.generator(direction: "horse2zebra") !== g2)
        // The version it replaced is still there, and the rollback can be undone.
        #expect(try store.versions(model: "horse2zebra").map(\.version) == [1, 2])
        try store.rollback(model: "horse2zebra", to: 2)
        #expect(try store.manifest("horse2zebra") == v2)
        try store.rollback(model: "horse2zebra", to: 1)

        // Publishing after a rollback makes a new number.
        let third = try store.publish(
            model: "horse2zebra", networks: trained([.generatorB], shift: 1), provenance: provenance, training: nil)
        #expect(third == 3)
        #expect(try store.manifest("horse2zebra")?[.generatorA] == v1[.generatorA])
        #expect(try store.versions(model: "horse2zebra").map(\.version) == [1, 2, 3])
        try expectVersionsIntact("horse2zebra")

        let error = try #require(throws: ModelStoreError.self) { try store.rollback(model: "horse2zebra", to: 7) }
        #expect(error.problem.contains("has no version 7 (it has: 1, 2, 3)"))
    }

    @Test func aDamagedVersionIsNotRestored() throws {
        try store.createModel(name: "horse2zebra", domains: .init(a: "horse", b: "zebra"))
        try store.publish(
            model: "horse2zebra", networks: trained([.generatorA], shift: 0.25), provenance: provenance, training: nil)
        let v1 = try #require(try store.manifest("horse2zebra"))
        try store.publish(
            model: "horse2zebra", networks: trained([.generatorA], shift: 0.5), provenance: provenance, training: nil)
        // Version 1's G_A now exists only in versions/1; damage it there.
        let kept = file(v1, .generatorA, version: 1)
        let bytes = try Data(contentsOf: kept)
        try FileManager.default.removeItem(at: kept)
        try bytes.prefix(100).write(to: kept)
        let error = try #require(throws: ModelStoreError.self) { try store.rollback(model: "horse2zebra", to: 1) }
        #expect(error.problem.contains("version 1 cannot be restored"))
        #expect(try store.manifest("horse2zebra")?.version == 2)
    }

    // MARK: imported models and commit

    @Test func anImportedModelIsVersionOne() throws {
        _ = try ModelImporter(store: store).run(
            ImportRequest(paths: [Fixtures.url("reference_set")], name: "horse2zebra"))
        let imported = try #require(try store.manifest("horse2zebra"))
        let json = try String(
            contentsOf: store.folder("horse2zebra").appendingPathComponent("model.json"), encoding: .utf8)
        #expect(!json.contains("\"version\""))
        #expect(imported.version == nil && imported.versionNumber == 1)
        #expect(try store.versions(model: "horse2zebra").map(\.version) == [1])

        let second = try store.publish(
            model: "horse2zebra", networks: trained([.generatorA], shift: 0.5), provenance: provenance, training: nil)
        #expect(second == 2)
        #expect(try store.versions(model: "horse2zebra").map(\.version) == [1, 2])
        try expectVersionsIntact("horse2zebra")
        try store.rollback(model: "horse2zebra", to: 1)
        let back = try #require(try store.manifest("horse2zebra"))
        #expect(back.networks == imported.networks)
        #expect(back.version == 1)
    }

    @Test func aModelJSONWithoutVersionStillLoads() throws {
        let legacy = """
            {"domains": {"A": "horse", "B": "zebra"}, "formatVersion": 1, "name": "horse2zebra",
             "networks": {"G_A": {"architecture": {"affine": false, "blocks": 2, "inputChannels": 3,
               "kind": "generator", "ngf": 4, "norm": "instance", "outputChannels": 3},
               "bytes": 10, "file": "G_A-000000000000.safetensors", "sha256": "00"}},
             "training": {"epoch": 5}}
            """
        let manifest = try ModelManifest.decode(Data(legacy.utf8))
        #expect(manifest.version == nil)
        #expect(manifest.versionNumber == 1)
        #expect(manifest[.generatorA]?.architecture.generator == GeneratorArchitecture(ngf: 4, blocks: 2))
        #expect(!String(decoding: try manifest.encoded(), as: UTF8.self).contains("version\""))
    }

    /// An import into a published model is a new version too, and commit's
    /// clean-up of the top level takes no file a version holds.
    @Test func commitKeepsEveryVersionsFiles() throws {
        try store.createModel(name: "horse2zebra", domains: .init(a: "horse", b: "zebra"))
        try store.publish(
            model: "horse2zebra", networks: trained(NetworkRole.allCases, shift: 0.25), provenance: provenance,
            training: nil)
        try store.publish(
            model: "horse2zebra", networks: trained([.generatorA], shift: 0.5), provenance: provenance, training: nil)
        _ = try ModelImporter(store: store).run(
            ImportRequest(
                paths: [Fixtures.url("reference_set/latest_net_G_A.pth")], name: "horse2zebra", force: true))
        let current = try #require(try store.manifest("horse2zebra"))
        #expect(current.version == 3)
        #expect(current[.generatorA]?.provenance?.source.hasSuffix("latest_net_G_A.pth") == true)
        #expect(try store.versions(model: "horse2zebra").map(\.version) == [1, 2, 3])
        try expectVersionsIntact("horse2zebra")
    }

    @Test func namesAreChecked() throws {
        try store.createModel(name: "horse2zebra", domains: .init(a: "horse", b: "zebra"))
        let exists = try #require(throws: ModelStoreError.self) {
            try store.createModel(name: "horse2zebra", domains: .init(a: "horse", b: "zebra"))
        }
        #expect(exists.problem.contains("a model named horse2zebra exists"))
        #expect(throws: ModelStoreError.self) { try store.createModel(name: "../up", domains: .init(a: "a", b: "b")) }
        #expect(throws: ModelStoreError.self) { try store.createModel(name: "same", domains: .init(a: "a", b: "a")) }
        let missing = try #require(throws: ModelStoreError.self) {
            try store.publish(
                model: "cat2dog", networks: trained([.generatorA], shift: 0), provenance: nil, training: nil)
        }
        #expect(missing.problem.contains("no model named cat2dog"))
        #expect(throws: ModelStoreError.self) {
            try store.publish(
                model: "../source/horse2zebra", networks: trained([.generatorA], shift: 0), provenance: nil,
                training: nil)
        }
    }

    @Test func weightsThatDoNotFitAreRefused() throws {
        try store.createModel(name: "horse2zebra", domains: .init(a: "horse", b: "zebra"))
        let discriminator = trained([.discriminatorA], shift: 0)[.discriminatorA]!
        let asGenerator = try #require(throws: ModelStoreError.self) {
            try store.publish(
                model: "horse2zebra", networks: [.generatorA: discriminator], provenance: nil, training: nil)
        }
        #expect(asGenerator.problem.contains("cannot publish a discriminator architecture as horse2zebra G_A"))
        var generator = trained([.generatorA], shift: 0)[.generatorA]!
        generator.weights["model.1.bias"] = Tensor(shape: [5])
        generator.weights["extra"] = Tensor(shape: [1])
        let misfit = try #require(throws: ModelStoreError.self) {
            try store.publish(model: "horse2zebra", networks: [.generatorA: generator], provenance: nil, training: nil)
        }
        #expect(misfit.problem.contains("model.1.bias has shape [5], not [4]"))
        #expect(misfit.problem.contains("extra is not a parameter"))
        #expect(try store.manifest("horse2zebra")?.networks.isEmpty == true)
    }
}
