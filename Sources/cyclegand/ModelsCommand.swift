import ArgumentParser
import Foundation
import Models

/// `--models-dir`, shared by every command that uses the model store.
struct ModelsDirOption: ParsableArguments {
    @Option(
        name: .customLong("models-dir"),
        help: ArgumentHelp(
            "The models folder (default: $CYCLEGAND_MODELS, else $XDG_DATA_HOME/cyclegand/models, "
                + "else ~/.local/share/cyclegand/models).", valueName: "dir"))
    var modelsDir: String?

    var store: ModelStore {
        ModelStore(root: modelsDir.map { URL(fileURLWithPath: $0) } ?? ModelStore.defaultRoot())
    }
}

struct ModelsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "models", abstract: "List the models in the store and the directions they offer.")

    @OptionGroup var location: ModelsDirOption
    @Flag(help: "Print JSON (one object: root, models, directions, problems).") var json = false

    @Option(
        name: .customLong("load"),
        help: ArgumentHelp(
            "Load DIRECTION's generator (checking its sha256) and print how long that took.", valueName: "direction"))
    var loadDirection: String?

    func run() throws {
        let store = location.store
        if let loadDirection {
            // Two timings: the store's part (map, sha256 check, safetensors header)
            // and building the generator's layers from the mapped weights.
            let direction = try store.direction(loadDirection)
            let t0 = DispatchTime.now().uptimeNanoseconds
            _ = try store.weights(model: direction.model, role: direction.role)
            let t1 = DispatchTime.now().uptimeNanoseconds
            let generator = try store.generator(direction: loadDirection)
            let t2 = DispatchTime.now().uptimeNanoseconds
            let a = generator.architecture
            print(
                "loaded \(loadDirection) (ngf \(a.ngf), \(a.blocks) blocks\(a.affine ? ", affine" : "")): "
                    + String(
                        format: "weights mapped and sha256-checked in %.3f s; generator ready in %.3f s",
                        Double(t1 - t0) / 1e9, Double(t2 - t1) / 1e9))
            return
        }
        let catalog = store.catalog()
        if json {
            try printJSON(store: store, catalog)
        } else {
            printText(store: store, catalog)
        }
    }

    private func printText(store: ModelStore, _ catalog: ModelStore.Catalog) {
        print("models in \(store.root.path):")
        if catalog.models.isEmpty {
            print("  (none; add one with: cyclegand import CHECKPOINT --name NAME)")
        }
        for m in catalog.models {
            let networks = m.roles.map { role -> String in
                let a = m[role]!.architecture
                let shape =
                    a.kind == .generator
                    ? "ngf \(a.ngf ?? 0), \(a.blocks ?? 0) blocks"
                    : "ndf \(a.ndf ?? 0), \(a.layers ?? 0) layers"
                return "\(role.rawValue) (\(shape)\(a.affine ? ", affine" : ""))"
            }
            print(
                "  \(m.name)  domains \(m.domains.a), \(m.domains.b)  networks: \(networks.joined(separator: ", "))"
            )
        }
        print("directions:")
        if catalog.directions.isEmpty { print("  (none)") }
        for d in catalog.directions {
            print("  \(d.name)  (\(d.model) \(d.role.rawValue): \(d.from) → \(d.to))")
        }
        for p in catalog.problems { print("problem: \(p)") }
    }

    private func printJSON(store: ModelStore, _ catalog: ModelStore.Catalog) throws {
        struct Direction: Encodable {
            let name, model, network, from, to: String
        }
        struct Listing: Encodable {
            let root: String
            let models: [ModelManifest]
            let directions: [Direction]
            let problems: [String]
        }
        let listing = Listing(
            root: store.root.path, models: catalog.models,
            directions: catalog.directions.map {
                Direction(
                    name: $0.name, model: $0.model, network: $0.role.rawValue, from: $0.from, to: $0.to)
            },
            problems: catalog.problems)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        print(String(decoding: try encoder.encode(listing), as: UTF8.self))
    }
}
