import Foundation
import Tensor

#if canImport(Glibc)
    import Glibc
#endif

/// Everything a resumed training run needs: every tensor (weights, Adam
/// moments, image pools) and the trainer's JSON (counters, RNG states,
/// options, opaque here).
///
/// On disk, in `<folder>/checkpoint/`:
///
///     tensors.safetensors   every tensor, F32
///     state.json            the trainer's JSON
///     manifest.json         bytes and sha256 of both, written last
///
/// A write builds `.checkpoint.incoming-<random>/` (each file fsynced), renames
/// the old checkpoint aside to `.checkpoint.old-<random>/`, renames the new one
/// in, fsyncs the folder and removes the old one. A kill at any point leaves a
/// complete checkpoint, old or new, which `load` finds: in the one moment with
/// no `checkpoint/`, the incoming folder is complete and `load` renames it in.
/// One writer at a time: the trainer of a model is the only one.
public struct TrainingCheckpoint: Sendable {
    /// Any names, e.g. "G_A/model.1.weight", "adam_G.m/G_A/model.1.weight", "pool_A/3".
    public var tensors: [String: Tensor]
    public var state: Data

    public init(tensors: [String: Tensor], state: Data) {
        self.tensors = tensors
        self.state = state
    }

    /// Writes the checkpoint as `folder/checkpoint/`, replacing the one there
    /// atomically (see the type's description).
    public func write(in folder: URL) throws {
        try write(in: folder, stoppingAfter: nil)
    }

    /// The steps of a write, in order. A test stops a write after one of them,
    /// leaving the folder as a kill -9 there would.
    enum WriteStep: CaseIterable {
        case incomingFolderMade, tensorsWritten, stateWritten, manifestWritten, oldRenamedAside, newRenamedIn
    }

    func write(in folder: URL, stoppingAfter stop: WriteStep?) throws {
        let files = FileManager.default
        try files.createDirectory(at: folder, withIntermediateDirectories: true)
        _ = try Self.recover(in: folder)
        let incoming = folder.appendingPathComponent(Self.incomingPrefix + Self.randomSuffix())
        try files.createDirectory(at: incoming, withIntermediateDirectories: false)
        if stop == .incomingFolderMade { return }
        do {
            let tensorsURL = incoming.appendingPathComponent(Self.tensorsFile)
            // One pass over the tensors' memory, straight into the file; the
            // hash then reads it back from the page cache, in pieces (mapped
            // whole, its pages would count in the process' memory).
            try SafeTensors.write(tensors.map { ($0.key, $0.value) }, to: tensorsURL)
            let tensorsRecord = try CheckpointManifest.File(reading: tensorsURL)
            if stop == .tensorsWritten { return }
            try AtomicFile.write(state, to: incoming.appendingPathComponent(Self.stateFile))
            let stateRecord = state.withUnsafeBytes { CheckpointManifest.File(bytes: $0.count, sha256: SHA256.hex($0)) }
            if stop == .stateWritten { return }
            let manifest = CheckpointManifest(
                formatVersion: CheckpointManifest.currentFormatVersion,
                files: [Self.tensorsFile: tensorsRecord, Self.stateFile: stateRecord])
            try AtomicFile.write(try manifest.encoded(), to: incoming.appendingPathComponent(Self.manifestFile))
            if stop == .manifestWritten { return }
        } catch {
            try? files.removeItem(at: incoming)
            throw error
        }

        let current = folder.appendingPathComponent(Self.folderName)
        let aside = folder.appendingPathComponent(Self.asidePrefix + Self.randomSuffix())
        let hadOld = files.fileExists(atPath: current.path)
        if hadOld {
            guard rename(current.path, aside.path) == 0 else { throw FileError.cannotWrite(aside, errno: errno) }
        }
        if stop == .oldRenamedAside { return }
        guard rename(incoming.path, current.path) == 0 else {
            let error = FileError.cannotWrite(current, errno: errno)
            if hadOld { rename(aside.path, current.path) }
            try? files.removeItem(at: incoming)
            throw error
        }
        try AtomicFile.syncDirectory(folder)
        if stop == .newRenamedIn { return }
        if hadOld { try? files.removeItem(at: aside) }
    }

    /// The checkpoint in `folder`, or nil when there is none, after cleaning
    /// up what an interrupted write left. Every file is checked against
    /// manifest.json: a damaged checkpoint is an error that says what to do.
    public static func load(in folder: URL) throws -> TrainingCheckpoint? {
        guard let dir = try recover(in: folder) else { return nil }
        func damaged(_ problem: String) -> ModelStoreError {
            ModelStoreError(
                "the training checkpoint \(dir.path) is damaged: \(problem). The run cannot resume from it: "
                    + "delete \(dir.path) to train from the start (the model's published versions are not affected)")
        }
        let manifest: CheckpointManifest
        do {
            manifest = try CheckpointManifest.decode(
                try Data(contentsOf: dir.appendingPathComponent(manifestFile)))
        } catch {
            throw damaged("\(manifestFile) cannot be read (\(error))")
        }
        guard manifest.formatVersion <= CheckpointManifest.currentFormatVersion else {
            throw ModelStoreError(
                "the training checkpoint \(dir.path) has format version \(manifest.formatVersion); this cyclegand "
                    + "reads up to \(CheckpointManifest.currentFormatVersion): upgrade cyclegand")
        }
        guard let tensorsRecord = manifest.files[tensorsFile], let stateRecord = manifest.files[stateFile] else {
            throw damaged("\(manifestFile) does not list \(tensorsFile) and \(stateFile)")
        }

        let state: Data
        do {
            state = try Data(contentsOf: dir.appendingPathComponent(stateFile))
        } catch {
            throw damaged("\(stateFile) cannot be read (\(error))")
        }
        let stateSHA = state.withUnsafeBytes { SHA256.hex($0) }
        guard stateSHA == stateRecord.sha256 else {
            throw damaged(
                "\(stateFile) has \(state.count) bytes and sha256 \(stateSHA), \(manifestFile) records "
                    + "\(stateRecord.bytes) bytes and \(stateRecord.sha256) (truncated or altered)")
        }

        let mapped: MappedFile
        do {
            mapped = try MappedFile(url: dir.appendingPathComponent(tensorsFile))
        } catch {
            throw damaged("\(error)")
        }
        guard mapped.size == tensorsRecord.bytes else {
            throw damaged(
                "\(tensorsFile) has \(mapped.size) bytes, \(manifestFile) records \(tensorsRecord.bytes) (truncated)")
        }
        // Hash on another thread while the tensors are copied out of the mapping.
        let hash = BackgroundHash(mapped)
        let copied = Result { try SafeTensorsFile(mapping: mapped).tensors.mapValues { $0.copy() } }
        let tensorsSHA = hash.wait()
        guard tensorsSHA == tensorsRecord.sha256 else {
            throw damaged(
                "the sha256 of \(tensorsFile) is \(tensorsSHA), \(manifestFile) records \(tensorsRecord.sha256) (altered)"
            )
        }
        do {
            return TrainingCheckpoint(tensors: try copied.get(), state: state)
        } catch {
            throw damaged("\(error)")
        }
    }

    /// The state.json of the checkpoint in `folder`, read as it is: no recovery of an interrupted
    /// write, no check of the tensors (`load` does both when the run starts). Nil when there is
    /// none or it cannot be read.
    public static func peekState(in folder: URL) -> Data? {
        try? Data(contentsOf: folder.appendingPathComponent(folderName).appendingPathComponent(stateFile))
    }

    // MARK: the folder

    static let folderName = "checkpoint"
    static let incomingPrefix = ".checkpoint.incoming-"
    static let asidePrefix = ".checkpoint.old-"
    static let tensorsFile = "tensors.safetensors"
    static let stateFile = "state.json"
    static let manifestFile = "manifest.json"

    private static func randomSuffix() -> String { String(UInt64.random(in: 0...UInt64.max), radix: 16) }

    /// Makes `folder/checkpoint/` the newest complete checkpoint an
    /// interrupted write left, removes the other leftovers, and returns it
    /// (nil when there is none).
    static func recover(in folder: URL) throws -> URL? {
        let files = FileManager.default
        let current = folder.appendingPathComponent(folderName)
        let names = (try? files.contentsOfDirectory(atPath: folder.path)) ?? []
        // An incoming folder is newer than one renamed aside.
        let leftovers =
            names.filter { $0.hasPrefix(incomingPrefix) }.sorted()
            + names.filter { $0.hasPrefix(asidePrefix) }.sorted()
        if !files.fileExists(atPath: current.path),
            let complete = leftovers.first(where: { isComplete(folder.appendingPathComponent($0)) })
        {
            guard rename(folder.appendingPathComponent(complete).path, current.path) == 0 else {
                throw FileError.cannotWrite(current, errno: errno)
            }
            try AtomicFile.syncDirectory(folder)
        }
        for name in leftovers where files.fileExists(atPath: folder.appendingPathComponent(name).path) {
            try? files.removeItem(at: folder.appendingPathComponent(name))
        }
        return files.fileExists(atPath: current.path) ? current : nil
    }

    /// Whether a leftover folder has its manifest.json (written last, after
    /// its files were fsynced) and files of the sizes it records. Their hashes
    /// are checked by `load`.
    private static func isComplete(_ dir: URL) -> Bool {
        guard let data = try? Data(contentsOf: dir.appendingPathComponent(manifestFile)),
            let manifest = try? CheckpointManifest.decode(data), !manifest.files.isEmpty
        else { return false }
        return manifest.files.allSatisfy { name, record in
            let size =
                try? FileManager.default.attributesOfItem(
                    atPath: dir.appendingPathComponent(name).path)[.size] as? Int
            return size == record.bytes
        }
    }
}

/// manifest.json of a training checkpoint.
struct CheckpointManifest: Codable, Equatable {
    static let currentFormatVersion = 1

    struct File: Codable, Equatable {
        var bytes: Int
        var sha256: String
    }

    var formatVersion: Int
    /// By file name in the checkpoint folder.
    var files: [String: File]

    func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(self) + Data("\n".utf8)
    }

    static func decode(_ data: Data) throws -> CheckpointManifest {
        try JSONDecoder().decode(CheckpointManifest.self, from: data)
    }
}

extension CheckpointManifest.File {
    /// The size and sha256 of the file at `url`, read 4 MiB at a time.
    fileprivate init(reading url: URL) throws {
        let fd = open(url.path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FileError.cannotOpen(url, errno: errno) }
        defer { close(fd) }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4 << 20, alignment: 64)
        defer { buffer.deallocate() }
        var total = 0
        let hex = try SHA256.hex { feed in
            while true {
                let n = read(fd, buffer.baseAddress, buffer.count)
                if n < 0 && errno == EINTR { continue }
                guard n >= 0 else { throw FileError.cannotOpen(url, errno: errno) }
                if n == 0 { return }
                feed(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
                total += n
            }
        }
        self.init(bytes: total, sha256: hex)
    }
}
