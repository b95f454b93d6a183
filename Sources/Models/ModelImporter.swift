import Foundation
import Tensor

/// What `cyclegand import` asks for.
public struct ImportRequest: Sendable {
    public var paths: [URL]
    public var name: String
    public var domains: ModelManifest.Domains?
    /// The role of a single file (`--as`).
    public var role: NetworkRole?
    /// Which `<epoch>_net_*.pth` of a checkpoint folder (`--epoch`); default latest.
    public var epoch: String?
    /// Free text for provenance (`--source-note`).
    public var note: String?
    /// Replace networks or domains that differ from what the model has.
    public var force: Bool

    public init(
        paths: [URL], name: String, domains: ModelManifest.Domains? = nil, role: NetworkRole? = nil,
        epoch: String? = nil,
        note: String? = nil, force: Bool = false
    ) {
        self.paths = paths
        self.name = name
        self.domains = domains
        self.role = role
        self.epoch = epoch
        self.note = note
        self.force = force
    }
}

public struct ImportResult: Sendable {
    public enum Outcome: Equatable, Sendable {
        case added, replaced, unchanged
    }

    public var manifest: ModelManifest
    public var networks: [(role: NetworkRole, source: URL, outcome: Outcome, changes: [String])]

    /// True when nothing had to be written (the same files were imported before).
    public var unchanged: Bool { networks.allSatisfy { $0.outcome == .unchanged } }
}

/// Imports PyTorch checkpoints (or safetensors files) into a `ModelStore`.
public struct ModelImporter {
    public let store: ModelStore
    /// The clock for provenance timestamps (tests fix it).
    public var now: () -> Date = Date.init

    public init(store: ModelStore) {
        self.store = store
    }

    public func run(_ request: ImportRequest) throws -> ImportResult {
        try ModelImporter.checkName(request.name, what: "model name")
        return try store.withWriteLock { try runLocked(request) }
    }

    private func runLocked(_ request: ImportRequest) throws -> ImportResult {
        try Self.checkName(request.name, what: "model name")
        let existing = try store.manifest(request.name)
        let domains = try request.domains ?? existing?.domains ?? Self.domains(fromName: request.name)
        try Self.checkName(domains.a, what: "domain name")
        try Self.checkName(domains.b, what: "domain name")
        guard domains.a != domains.b else {
            throw ModelStoreError("the two domains are both named \(domains.a)")
        }
        if let existing, existing.domains != domains, !request.force {
            throw ModelStoreError(
                "model \(request.name) has domains \(existing.domains.a),\(existing.domains.b), not \(domains.a),\(domains.b); "
                    + "add --force to change them")
        }

        let sources = try resolveSources(request)
        var manifest = existing ?? ModelManifest(name: request.name, domains: domains)
        manifest.domains = domains
        var result = ImportResult(manifest: manifest, networks: [])
        var changed = existing == nil || existing?.domains != domains
        let timestamp = ISO8601DateFormatter().string(from: now())
        for (role, url, epoch) in sources {
            let sourceSHA = try MappedFile(url: url).sha256()
            if let entry = manifest[role] {
                if entry.provenance?.sourceSHA256 == sourceSHA {
                    result.networks.append((role, url, .unchanged, entry.provenance?.changes ?? []))
                    continue
                }
                guard request.force else {
                    throw ModelStoreError(
                        "model \(request.name) already has a \(role.rawValue) (imported from \(entry.provenance?.source ?? "elsewhere")); "
                            + "add --force to replace it with \(url.path)")
                }
            }
            let normalized = try StateDictLayout.normalize(try loadStateDict(url), source: url.path)
            guard normalized.kind == role.kind else {
                throw ModelStoreError(
                    "\(url.path) holds a \(normalized.kind.rawValue), but it was to be imported as \(role.rawValue)"
                )
            }
            let architecture =
                normalized.generator.map { NetworkArchitecture($0, dropout: normalized.dropout) }
                ?? NetworkArchitecture(normalized.discriminator!)
            let provenance = Provenance(
                source: url.path, sourceSHA256: sourceSHA, importedAt: timestamp, note: request.note,
                changes: normalized.notes.isEmpty ? nil : normalized.notes)
            let outcome: ImportResult.Outcome = manifest[role] == nil ? .added : .replaced
            manifest[role] = try store.storeNetwork(
                model: request.name, role: role, weights: normalized.weights, architecture: architecture,
                provenance: provenance)
            if let epoch {
                manifest.training = ModelManifest.Training(
                    epoch: epoch, iterations: manifest.training?.iterations)
            }
            result.networks.append((role, url, outcome, normalized.notes))
            changed = true
        }
        if changed { try store.commit(manifest) }
        result.manifest = manifest
        return result
    }

    /// Which file is which network.
    private func resolveSources(_ request: ImportRequest) throws -> [(NetworkRole, URL, Int?)] {
        guard !request.paths.isEmpty else {
            throw ModelStoreError("nothing to import: give a checkpoint file or folder")
        }
        if request.role != nil && request.paths.count > 1 {
            throw ModelStoreError(
                "--as names the role of one file; import several files one by one or as a checkpoint folder"
            )
        }
        var out: [(NetworkRole, URL, Int?)] = []
        var unnamed: [URL] = []
        for path in request.paths {
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path.path, isDirectory: &isDir) else {
                throw ModelStoreError("\(path.path) does not exist")
            }
            if isDir.boolValue {
                guard request.role == nil else {
                    throw ModelStoreError("--as applies to a single file, not to the folder \(path.path)")
                }
                out += try checkpointFolder(path, epoch: request.epoch)
            } else if let role = request.role {
                out.append((role, path, nil))
            } else if let (prefix, role) = Self.referenceFileName(path.lastPathComponent) {
                out.append((role, path, Int(prefix)))
            } else {
                unnamed.append(path)
            }
        }
        // Files with no role in their name: one generator is G_A, one discriminator D_A.
        for url in unnamed {
            let kind = try StateDictLayout.normalize(try loadStateDict(url), source: url.path).kind
            let role: NetworkRole = kind == .generator ? .generatorA : .discriminatorA
            if out.contains(where: { $0.0 == role }) {
                throw ModelStoreError(
                    "\(url.path) would be \(role.rawValue), which another file already is; import it alone with --as"
                )
            }
            out.append((role, url, nil))
        }
        let roles = out.map(\.0)
        if Set(roles).count != roles.count {
            throw ModelStoreError(
                "two files for the same network: \(out.map { "\($0.0.rawValue)=\($0.1.path)" })")
        }
        return out.sorted { $0.0 < $1.0 }
    }

    /// `latest_net_G_A.pth` → ("latest", G_A); `5_net_D_B.pth` → ("5", D_B); the
    /// same names ending in `.safetensors` (what `cyclegand export` writes) too.
    static func referenceFileName(_ file: String) -> (String, NetworkRole)? {
        for role in NetworkRole.allCases {
            for suffix in ["_net_\(role.rawValue).pth", "_net_\(role.rawValue).safetensors"]
            where file.hasSuffix(suffix) && file.count > suffix.count {
                return (String(file.dropLast(suffix.count)), role)
            }
        }
        return nil
    }

    /// The files of one epoch in a reference checkpoint folder: `--epoch`, else
    /// `latest`, else the highest numbered epoch.
    private func checkpointFolder(_ dir: URL, epoch: String?) throws -> [(NetworkRole, URL, Int?)] {
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path)
        var byEpoch: [String: [(NetworkRole, URL)]] = [:]
        for file in files {
            if let (prefix, role) = Self.referenceFileName(file) {
                byEpoch[prefix, default: []].append((role, dir.appendingPathComponent(file)))
            }
        }
        guard !byEpoch.isEmpty else {
            throw ModelStoreError(
                "\(dir.path) holds no reference checkpoints (latest_net_G_A.pth, <epoch>_net_G_A.pth, ...)")
        }
        let available = byEpoch.keys.sorted { (Int($0) ?? -1, $0) < (Int($1) ?? -1, $1) }
        let chosen: String
        if let epoch {
            guard byEpoch[epoch] != nil else {
                throw ModelStoreError(
                    "\(dir.path) has no epoch \(epoch) (it has: \(available.joined(separator: ", ")))")
            }
            chosen = epoch
        } else if byEpoch["latest"] != nil {
            chosen = "latest"
        } else {
            chosen = available.last { Int($0) != nil } ?? available.last!
        }
        return byEpoch[chosen]!.map { ($0.0, $0.1, Int(chosen)) }
    }

    /// `horse2zebra` → horse, zebra.
    static func domains(fromName name: String) throws -> ModelManifest.Domains {
        let parts = name.components(separatedBy: "2")
        guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
            throw ModelStoreError(
                "cannot tell the domains from the name \(name); say them with --domains A,B (e.g. --domains horse,zebra)"
            )
        }
        return ModelManifest.Domains(a: parts[0], b: parts[1])
    }

    public static func checkName(_ name: String, what: String) throws {
        let allowed = CharacterSet(
            charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")
        guard !name.isEmpty, !name.hasPrefix("."), name.unicodeScalars.allSatisfy(allowed.contains),
            name.count <= 100
        else {
            throw ModelStoreError(
                "\"\(name)\" is not a valid \(what): use letters, digits, '_', '-' and '.' (not first)")
        }
    }
}
