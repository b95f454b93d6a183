import Foundation
import Tensor

#if canImport(Glibc)
    import Glibc
#endif

/// Versions of a model: what the trainer publishes, and rolling back to it.
///
/// `<model>/versions/<n>/` holds version n: its model.json and hard links to its
/// network files, so a version costs no space beyond the files the model had
/// anyway, and the top-level clean-up of `commit` never takes a file from it.
/// A version folder is written under a temporary name and renamed into place,
/// so it is either complete or absent. Numbers count 1, 2, 3… in the order the
/// versions were made; model.json's `version` names the current one.
extension ModelStore {
    /// `<model>/versions`.
    public func versionsFolder(_ model: String) -> URL { folder(model).appendingPathComponent("versions") }

    /// `<model>/training`: the checkpoint of a run (`TrainingCheckpoint`), its loss log, plots and samples.
    public func trainingFolder(_ model: String) -> URL { folder(model).appendingPathComponent("training") }

    /// Creates an empty model (no networks yet, no version), refusing a name that exists.
    @discardableResult
    public func createModel(name: String, domains: ModelManifest.Domains) throws -> ModelManifest {
        try ModelImporter.checkName(name, what: "model name")
        try ModelImporter.checkName(domains.a, what: "domain name")
        try ModelImporter.checkName(domains.b, what: "domain name")
        guard domains.a != domains.b else {
            throw ModelStoreError("the two domains are both named \(domains.a)")
        }
        return try withWriteLock {
            guard try manifest(name) == nil else {
                throw ModelStoreError(
                    "a model named \(name) exists in \(root.path): choose another name, or delete \(folder(name).path)")
            }
            let manifest = ModelManifest(name: name, domains: domains)
            try FileManager.default.createDirectory(at: folder(name), withIntermediateDirectories: true)
            try writeManifest(manifest)
            return manifest
        }
    }

    /// Makes `networks` the model's current ones (the others stay as they are)
    /// as a new version, and returns its number. The version it replaces stays
    /// in `versions/<n>/`.
    @discardableResult
    public func publish(
        model: String, networks: [NetworkRole: (weights: [String: Tensor], architecture: NetworkArchitecture)],
        provenance: Provenance?, training: ModelManifest.Training?
    ) throws -> Int {
        try ModelImporter.checkName(model, what: "model name")
        guard !networks.isEmpty else { throw ModelStoreError("nothing to publish into \(model): no networks given") }
        for (role, network) in networks {
            try Self.checkFits(network.weights, network.architecture, role: role, model: model)
        }
        return try withWriteLock {
            guard let current = try manifest(model) else {
                throw ModelStoreError("no model named \(model) in \(root.path) (create it first)")
            }
            try removeVersionLeftovers(model)
            try keep(current: current)
            var next = current
            for (role, network) in networks.sorted(by: { $0.key < $1.key }) {
                next[role] = try storeNetwork(
                    model: model, role: role, weights: network.weights, architecture: network.architecture,
                    provenance: provenance)
            }
            next.training = training
            next.version = try nextVersion(model: model, current: current)
            try keepVersion(next)
            try writeManifest(next)
            return next.versionNumber
        }
    }

    /// Every version of the model, oldest first: those kept in `versions/`, and
    /// the current one of a model that was only imported (version 1, kept at
    /// its first publish).
    public func versions(model: String) throws -> [(version: Int, manifest: ModelManifest)] {
        guard let current = try manifest(model) else {
            throw ModelStoreError("no model named \(model) in \(root.path)")
        }
        var out = try keptVersionNumbers(model).map { n in (version: n, manifest: try keptVersion(model, n)) }
        if current.version == nil, !current.networks.isEmpty, !out.contains(where: { $0.version == 1 }) {
            out.insert((1, current), at: 0)
        }
        return out
    }

    /// Makes version `version` current again, after checking its files. The
    /// version it replaces stays kept, so a rollback can itself be undone.
    public func rollback(model: String, to version: Int) throws {
        try ModelImporter.checkName(model, what: "model name")
        try withWriteLock {
            guard let current = try manifest(model) else {
                throw ModelStoreError("no model named \(model) in \(root.path)")
            }
            guard current.versionNumber != version else { return }
            guard try keptVersionNumbers(model).contains(version) else {
                let known = try versions(model: model).map { String($0.version) }
                throw ModelStoreError(
                    "model \(model) has no version \(version) (it has: \(known.joined(separator: ", ")))")
            }
            let target = try keptVersion(model, version)
            let kept = versionsFolder(model).appendingPathComponent("\(version)")
            for entry in target.networks.values {
                try Self.checkKeptFile(kept.appendingPathComponent(entry.file), entry: entry, version: version)
            }
            try keep(current: current)
            for entry in target.networks.values {
                let top = folder(model).appendingPathComponent(entry.file)
                if !FileManager.default.fileExists(atPath: top.path) {
                    try Self.link(kept.appendingPathComponent(entry.file), to: top)
                }
            }
            try writeManifest(target)
        }
    }

    // MARK: keeping versions

    /// The number a new version of the model gets: one past every number used.
    func nextVersion(model: String, current: ModelManifest) throws -> Int {
        (try keptVersionNumbers(model) + [current.versionNumber]).max()! + 1
    }

    /// Keeps `manifest` (whose network files are in the model folder) as
    /// `versions/<its version>/`, unless that folder exists: a version is kept once.
    func keepVersion(_ manifest: ModelManifest) throws {
        let versions = versionsFolder(manifest.name)
        let target = versions.appendingPathComponent("\(manifest.versionNumber)")
        guard !FileManager.default.fileExists(atPath: target.path) else { return }
        try FileManager.default.createDirectory(at: versions, withIntermediateDirectories: true)
        let incoming = versions.appendingPathComponent(
            ".incoming-\(manifest.versionNumber)-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: incoming, withIntermediateDirectories: false)
        do {
            for entry in manifest.networks.values {
                try Self.link(
                    folder(manifest.name).appendingPathComponent(entry.file),
                    to: incoming.appendingPathComponent(entry.file))
            }
            try AtomicFile.write(try manifest.encoded(), to: incoming.appendingPathComponent("model.json"))
            guard rename(incoming.path, target.path) == 0 else { throw FileError.cannotWrite(target, errno: errno) }
        } catch {
            try? FileManager.default.removeItem(at: incoming)
            throw error
        }
        try AtomicFile.syncDirectory(versions)
    }

    /// Keeps the current version before a publish or rollback replaces it:
    /// normally kept already, when it was made; a model that was only
    /// imported becomes version 1 here.
    private func keep(current: ModelManifest) throws {
        guard !current.networks.isEmpty else { return }
        var kept = current
        kept.version = current.versionNumber
        try keepVersion(kept)
    }

    /// The numbers of the complete version folders, ascending.
    private func keptVersionNumbers(_ model: String) throws -> [Int] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: versionsFolder(model).path)) ?? []
        return names.compactMap { Int($0) }.filter { $0 > 0 }.sorted()
    }

    private func keptVersion(_ model: String, _ n: Int) throws -> ModelManifest {
        let url = versionsFolder(model).appendingPathComponent("\(n)/model.json")
        do {
            var manifest = try ModelManifest.decode(try Data(contentsOf: url))
            // An imported model kept at its first publish is version 1 whatever its model.json said.
            manifest.version = n
            return manifest
        } catch {
            throw ModelStoreError("\(url.path) is not a valid model.json: \(error)")
        }
    }

    /// Removes the version folders an interrupted publish left half-made.
    private func removeVersionLeftovers(_ model: String) throws {
        let versions = versionsFolder(model)
        for name in (try? FileManager.default.contentsOfDirectory(atPath: versions.path)) ?? []
        where name.hasPrefix(".incoming-") {
            try FileManager.default.removeItem(at: versions.appendingPathComponent(name))
        }
    }

    /// Refuses weights that are not exactly the parameters of `architecture`,
    /// or an architecture of the wrong kind for `role`: a published model always loads.
    private static func checkFits(
        _ weights: [String: Tensor], _ architecture: NetworkArchitecture, role: NetworkRole, model: String
    ) throws {
        guard architecture.kind == role.kind,
            let expected = architecture.generator?.parameterShapes() ?? architecture.discriminator?.parameterShapes()
        else {
            throw ModelStoreError(
                "cannot publish a \(architecture.kind.rawValue) architecture as \(model) \(role.rawValue)")
        }
        var wrong: [String] = []
        for (name, shape) in expected where weights[name]?.shape != shape {
            wrong.append(
                weights[name].map { "\(name) has shape \($0.shape), not \(shape)" } ?? "\(name) \(shape) is missing")
        }
        let known = Set(expected.map(\.name))
        wrong += weights.keys.filter { !known.contains($0) }.sorted().map { "\($0) is not a parameter" }
        guard wrong.isEmpty else {
            throw ModelStoreError(
                "the weights for \(model) \(role.rawValue) do not fit its architecture: "
                    + wrong.prefix(5).joined(separator: "; ") + (wrong.count > 5 ? "; and \(wrong.count - 5) more" : "")
            )
        }
    }

    private static func checkKeptFile(_ url: URL, entry: NetworkEntry, version: Int) throws {
        let actual = try? MappedFile(url: url).sha256()
        guard actual == entry.sha256 else {
            throw ModelStoreError(
                "version \(version) cannot be restored: \(url.path) "
                    + (actual == nil ? "is missing" : "is damaged (its sha256 is \(actual!), expected \(entry.sha256))")
                    + "; roll back to another version")
        }
    }

    /// A hard link to `source` at `target`, or a copy where the file system has
    /// no hard links.
    static func link(_ source: URL, to target: URL) throws {
        if Glibc.link(source.path, target.path) == 0 { return }
        guard [EPERM, EXDEV, EMLINK, ENOTSUP].contains(errno) else {
            throw FileError.cannotWrite(target, errno: errno)
        }
        let mapped = try MappedFile(url: source)
        try AtomicFile.write(to: target) { try $0.append(mapped.bytes) }
    }
}
