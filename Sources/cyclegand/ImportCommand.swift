import ArgumentParser
import Foundation
import Models

struct ImportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Import PyTorch CycleGAN checkpoints (or safetensors files) as a model.",
        discussion: """
            PATH is a reference checkpoint folder (latest_net_G_A.pth ... or <epoch>_net_*.pth; latest is \
            taken unless --epoch says otherwise) or single files. A file named like the reference's \
            checkpoints gets its role from the name; any other single generator becomes G_A. Both torch.save \
            formats are read. Importing the same files again changes nothing.
            """)

    @Argument(help: "Checkpoint files or folders.") var paths: [String]
    @Option(help: "The model's name (directions are named A2B and B2A after its domains).") var name: String
    @Option(
        help: ArgumentHelp(
            "The two domains, e.g. horse,zebra (default: from a NAME like horse2zebra).", valueName: "A,B"
        ))
    var domains: String?
    @Option(
        name: .customLong("as"),
        help: ArgumentHelp("The network a single file is: G_A, G_B, D_A or D_B.", valueName: "role"))
    var role: String?
    @Option(help: "Which epoch of a checkpoint folder (default: latest).") var epoch: String?
    @Option(
        name: .customLong("source-note"),
        help: "Provenance note stored in model.json (where the file came from).")
    var sourceNote: String?
    @Flag(help: "Replace networks or domains the model already has.") var force = false
    @OptionGroup var location: ModelsDirOption

    func run() throws {
        var parsedDomains: ModelManifest.Domains?
        if let domains {
            let parts = domains.split(separator: ",", omittingEmptySubsequences: false).map {
                $0.trimmingCharacters(in: .whitespaces)
            }
            guard parts.count == 2 else {
                throw ValidationError("--domains wants two names separated by a comma, e.g. horse,zebra")
            }
            parsedDomains = ModelManifest.Domains(a: parts[0], b: parts[1])
        }
        var parsedRole: NetworkRole?
        if let role {
            guard let r = NetworkRole(rawValue: role) else {
                throw ValidationError("--as must be G_A, G_B, D_A or D_B, not \(role)")
            }
            parsedRole = r
        }
        let store = location.store
        let request = ImportRequest(
            paths: paths.map { URL(fileURLWithPath: $0) }, name: name, domains: parsedDomains,
            role: parsedRole,
            epoch: epoch, note: sourceNote, force: force)
        let result = try ModelImporter(store: store).run(request)
        if result.unchanged {
            print(
                "model \(name) is already up to date in \(store.folder(name).path) (same files imported before); nothing to do"
            )
            return
        }
        for n in result.networks {
            print(
                "\(n.outcome == .unchanged ? "kept" : n.outcome == .added ? "imported" : "replaced") \(n.role.rawValue) from \(n.source.path)"
            )
            for change in n.changes { print("  \(change)") }
        }
        let directions = result.manifest.directions.map(\.name)
        print(
            "model \(name) in \(store.folder(name).path); directions: \(directions.isEmpty ? "none (no generator)" : directions.joined(separator: ", "))"
        )
        let clashes = store.catalog().problems.filter { p in
            directions.contains { p.hasPrefix("direction \($0) ") }
        }
        for c in clashes { print("warning: \(c)") }
    }
}
