import CycleGAN
import Foundation
import Tensor

#if canImport(Glibc)
    import Glibc
#endif

public struct ModelStoreError: Error, CustomStringConvertible, Sendable {
    public let problem: String
    public init(_ problem: String) { self.problem = problem }
    public var description: String { problem }
}

/// A folder of models, `<root>/<name>/model.json` plus one `.safetensors` per
/// network, and the translation directions they offer.
///
/// Files are written atomically and named after their content's hash, and
/// model.json is written last: a reader sees either the old model or the new
/// one. Every network file is checked against the sha256 model.json records
/// before it is used, so a truncated or altered file is refused, never half-loaded.
public final class ModelStore: @unchecked Sendable {
    public let root: URL

    public init(root: URL) {
        self.root = root
    }

    /// `CYCLEGAND_MODELS`, else `$XDG_DATA_HOME/cyclegand/models`, else
    /// `~/.local/share/cyclegand/models`.
    public static func defaultRoot(
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) -> URL {
        if let dir = environment["CYCLEGAND_MODELS"], !dir.isEmpty { return URL(fileURLWithPath: dir) }
        if let data = environment["XDG_DATA_HOME"], data.hasPrefix("/") {
            return URL(fileURLWithPath: data).appendingPathComponent("cyclegand/models")
        }
        let home =
            environment["HOME"].map { URL(fileURLWithPath: $0) }
            ?? FileManager.default.homeDirectoryForCurrentUser
        return home.appendingPathComponent(".local/share/cyclegand/models")
    }

    public func folder(_ name: String) -> URL { root.appendingPathComponent(name) }

    // MARK: reading

    /// A direction offered by a model.
    public struct Direction: Equatable, Sendable {
        public let name: String
        public let model: String
        public let role: NetworkRole
        public let from: String
        public let to: String
    }

    /// Everything in the store, with what is wrong in it.
    public struct Catalog: Sendable {
        public var models: [ModelManifest] = []
        /// Unambiguous directions, sorted by name.
        public var directions: [Direction] = []
        /// Direction names offered by more than one model, and unreadable model folders.
        public var problems: [String] = []
    }

    public func manifest(_ name: String) throws -> ModelManifest? {
        let url = folder(name).appendingPathComponent("model.json")
        guard FileManager.default.fileExists(atPath: url.path) else { return nil }
        do {
            let manifest = try ModelManifest.decode(try Data(contentsOf: url))
            guard manifest.formatVersion <= ModelManifest.currentFormatVersion else {
                throw ModelStoreError(
                    "\(url.path) has format version \(manifest.formatVersion); this cyclegand reads up to "
                        + "\(ModelManifest.currentFormatVersion): upgrade cyclegand")
            }
            guard manifest.name == name else {
                throw ModelStoreError(
                    "\(url.path) names the model \(manifest.name), but its folder is \(name)")
            }
            return manifest
        } catch let e as ModelStoreError {
            throw e
        } catch {
            throw ModelStoreError("\(url.path) is not a valid model.json: \(error)")
        }
    }

    public func catalog() -> Catalog {
        var catalog = Catalog()
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []
        for name in names.sorted() where !name.hasPrefix(".") {
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: folder(name).path, isDirectory: &isDir),
                isDir.boolValue
            else { continue }
            do {
                if let m = try manifest(name) { catalog.models.append(m) }
            } catch {
                catalog.problems.append("\(error)")
            }
        }
        var offered: [String: [Direction]] = [:]
        for m in catalog.models {
            for (name, role) in m.directions {
                let (from, to) =
                    role == .generatorA ? (m.domains.a, m.domains.b) : (m.domains.b, m.domains.a)
                offered[name, default: []].append(
                    Direction(name: name, model: m.name, role: role, from: from, to: to))
            }
        }
        for (name, list) in offered.sorted(by: { $0.key < $1.key }) {
            if list.count == 1 {
                catalog.directions.append(list[0])
            } else {
                catalog.problems.append(
                    "direction \(name) is offered by several models (\(list.map { "\($0.model) \($0.role.rawValue)" }.joined(separator: ", "))); "
                        + "it is disabled until all but one are removed or re-imported with other --domains")
            }
        }
        return catalog
    }

    /// The direction's model and role, or an error that says what exists.
    public func direction(_ name: String) throws -> Direction {
        let catalog = catalog()
        if let d = catalog.directions.first(where: { $0.name == name }) { return d }
        if let clash = catalog.problems.first(where: { $0.hasPrefix("direction \(name) ") }) {
            throw ModelStoreError(clash)
        }
        let known = catalog.directions.map(\.name)
        throw ModelStoreError(
            "no model offers the direction \(name) in \(root.path)"
                + (known.isEmpty
                    ? " (the store is empty: import a model with cyclegand import)"
                    : "; known: \(known.joined(separator: ", "))"))
    }

    /// The generator behind a direction, loaded from its file (and checked) on every call: the
    /// daemon's one cache of built generators is `Translation.LoadOnce`. Its kernels' forms of the
    /// weights (the Winograd filters) are built on `compute`'s threads.
    public func generator(direction name: String, compute: Compute = Compute()) throws -> ResnetGenerator {
        let d = try direction(name)
        return try generator(model: d.model, role: d.role, compute: compute)
    }

    public func generator(model: String, role: NetworkRole, compute: Compute = Compute()) throws -> ResnetGenerator {
        try servedGenerator(model: model, role: role, compute: compute).generator
    }

    /// The generator behind a direction and the model version it belongs to (read from one manifest).
    public func servedGenerator(direction name: String, compute: Compute = Compute()) throws -> (
        generator: ResnetGenerator, version: Int
    ) {
        let d = try direction(name)
        return try servedGenerator(model: d.model, role: d.role, compute: compute)
    }

    private func servedGenerator(model: String, role: NetworkRole, compute: Compute) throws -> (
        generator: ResnetGenerator, version: Int
    ) {
        guard let manifest = try manifest(model) else {
            throw ModelStoreError("no model named \(model) in \(root.path)")
        }
        guard let entry = manifest[role] else {
            throw ModelStoreError("model \(model) has no \(role.rawValue)")
        }
        guard let arch = entry.architecture.generator else {
            throw ModelStoreError("\(model) \(role.rawValue) is not a generator")
        }
        // Hash the file on another thread while the generator is built from the
        // same mapped pages: the load costs the longer of the two, not their sum.
        // Nothing is returned before the hash has matched.
        let generator = try loadVerified(model: model, entry: entry) { weights in
            try ResnetGenerator(architecture: arch, weights: weights, compute: compute)
        }
        return (generator, manifest.versionNumber)
    }

    /// The weights of one network, in reference names, after checking the file's sha256.
    public func weights(model: String, role: NetworkRole) throws -> [String: Tensor] {
        guard let manifest = try manifest(model) else {
            throw ModelStoreError("no model named \(model) in \(root.path)")
        }
        guard let entry = manifest[role] else {
            throw ModelStoreError("model \(model) has no \(role.rawValue)")
        }
        return try loadWeights(model: model, entry: entry)
    }

    private func loadWeights(model: String, entry: NetworkEntry) throws -> [String: Tensor] {
        try loadVerified(model: model, entry: entry) { $0 }
    }

    /// Maps the network's file, checks its sha256 against model.json (on
    /// another thread, while `build` runs over the mapped weights) and returns
    /// what `build` made only when the hash matched.
    private func loadVerified<T>(model: String, entry: NetworkEntry, _ build: ([String: Tensor]) throws -> T) throws
        -> T
    {
        let url = folder(model).appendingPathComponent(entry.file)
        let mapped = try MappedFile(url: url)
        let hash = BackgroundHash(mapped)
        let built: Result<T, Error> = Result { try build(try SafeTensorsFile(mapping: mapped).tensors) }
        let actual = hash.wait()
        guard actual == entry.sha256 else {
            throw ModelStoreError(
                "\(url.path) is damaged: its sha256 is \(actual), model.json expects \(entry.sha256) "
                    + "(\(mapped.size) bytes, expected \(entry.bytes)); the file was truncated or altered: re-import the model"
            )
        }
        return try built.get()
    }

    // MARK: writing

    /// Writes a network's weights as a content-named `.safetensors` file in the
    /// model's folder (creating it) and returns its entry for model.json.
    func storeNetwork(
        model: String, role: NetworkRole, weights: [String: Tensor], architecture: NetworkArchitecture,
        provenance: Provenance?
    ) throws -> NetworkEntry {
        let dir = folder(model)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let tmp = dir.appendingPathComponent(".\(role.rawValue).incoming.safetensors")
        try SafeTensors.write(
            weights.sorted { $0.key < $1.key }.map { ($0.key, $0.value) },
            metadata: ["format": "pt", "cyclegand.model": model, "cyclegand.network": role.rawValue],
            to: tmp)
        let mapped = try MappedFile(url: tmp)
        let sha = mapped.sha256()
        let name = "\(role.rawValue)-\(sha.prefix(12)).safetensors"
        let target = dir.appendingPathComponent(name)
        // The same weights again (a rollback republished): the file there is
        // kept, so that it stays one inode with the links in versions/.
        if (try? MappedFile(url: target).sha256()) == sha {
            unlink(tmp.path)
        } else if rename(tmp.path, target.path) != 0 {
            throw FileError.cannotWrite(target, errno: errno)
        }
        return NetworkEntry(
            architecture: architecture, file: name, sha256: sha, bytes: mapped.size,
            provenance: provenance)
    }

    /// Commits a model: writes model.json atomically, then removes network
    /// files it no longer lists (`versions/<n>/` holds its own links to them).
    ///
    /// A model that has versions (it was published to) gets a new version for
    /// every change, an import's included, kept in
    /// `versions/<n>/` before model.json names it: nothing it had is lost.
    func commit(_ manifest: ModelManifest) throws {
        var manifest = manifest
        if let current = try self.manifest(manifest.name), current.version != nil,
            manifest.replacing(version: current.version) != current
        {
            manifest.version = try nextVersion(model: manifest.name, current: current)
            try keepVersion(manifest)
        }
        try writeManifest(manifest)
    }

    /// Writes model.json atomically and removes the network files it does not list.
    func writeManifest(_ manifest: ModelManifest) throws {
        let dir = folder(manifest.name)
        try AtomicFile.write(try manifest.encoded(), to: dir.appendingPathComponent("model.json"))
        let keep = Set(manifest.networks.values.map(\.file))
        for file in (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
        where file.hasSuffix(".safetensors") && !keep.contains(file) && !file.hasPrefix(".") {
            try? FileManager.default.removeItem(at: dir.appendingPathComponent(file))
        }
    }

    /// Runs `body` holding the store's write lock (`flock` on `<root>/.lock`), so
    /// that two imports into the same store do not interleave their commits.
    /// Readers never take it: model.json is their consistent view.
    func withWriteLock<T>(_ body: () throws -> T) throws -> T {
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        let url = root.appendingPathComponent(".lock")
        let fd = open(url.path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw FileError.cannotWrite(url, errno: errno) }
        defer { close(fd) }
        while flock(fd, LOCK_EX) != 0 {
            guard errno == EINTR else { throw FileError.cannotWrite(url, errno: errno) }
        }
        return try body()
    }

    /// Deletes a model folder.
    public func remove(_ name: String) throws {
        guard try manifest(name) != nil else {
            throw ModelStoreError("no model named \(name) in \(root.path)")
        }
        try FileManager.default.removeItem(at: folder(name))
    }
}

/// The sha256 of a mapped file, computed on a background thread.
final class BackgroundHash: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    /// Written once by the hashing thread before it signals `done`.
    private var result = ""

    init(_ file: MappedFile) {
        DispatchQueue.global(qos: .userInitiated).async {
            self.result = file.sha256()
            self.done.signal()
        }
    }

    func wait() -> String {
        done.wait()
        return result
    }
}
