import FileOutput
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// One claimed watch-folder file: `work/<id>/<name>` plus its journal `work/<id>/.job.json`.
public struct WorkItem: Sendable, Equatable {
    public var id: String
    public var direction: String
    /// Path under `inbox/<direction>/`, e.g. `trip/cat.jpg`; mirrored under outbox/, failed/, done/.
    public var relativePath: String
    public var claimedAt: Date
    /// Folder holding the claimed file and its journal.
    public var directory: String

    public var name: String { (relativePath as NSString).lastPathComponent }
    public var input: String { directory + "/" + name }
    var journalPath: String { directory + "/" + Spool.journalName }
}

/// The journal of one work item. It is rewritten (atomically) before every step that changes
/// what is visible outside work/, so that start-up can tell how far an item got:
/// - no `output`: not translated yet (or the output never became visible) → translate again;
/// - `output` whose file has the recorded inode → its output is complete → only finish up;
/// - `failure` → finish moving it to failed/ without trying again.
struct JobRecord: Codable, Equatable {
    struct Output: Codable, Equatable {
        var relativePath: String
        var identity: FileIdentity
    }
    struct Failure: Codable, Equatable {
        var error: DaemonError
        var relativePath: String
        var time: Date
    }
    var id: String
    var direction: String
    var relativePath: String
    var claimedAt: Date
    var output: Output?
    var failure: Failure?
}

/// The sidecar `failed/<direction>/NAME.error.json`.
public struct FailureSidecar: Codable, Equatable, Sendable {
    public var code: String
    public var message: String
    public var direction: String
    public var file: String
    public var time: Date
    public var daemonVersion: String
}

/// The folders under the spool root and every move between them. All moves are renames or links
/// within one file system, each preceded by a journal update, so a crash at any instant leaves
/// every image either in inbox/, in work/ (re-queued at start), in outbox/ exactly once (its
/// original in done/ or gone), or in failed/ with its sidecar.
public final class Spool: Sendable {
    public let root: String
    let version: String
    static let journalName = ".job.json"
    /// Prefix of the hidden temporary name beside an interactive request's output.
    static let tempPrefix = ".cyclegand-"

    private let ids = IDGenerator()

    public init(root: String, version: String) {
        self.root = root
        self.version = version
    }

    public var inboxRoot: String { root + "/inbox" }
    public var workRoot: String { root + "/work" }
    public func inbox(_ direction: String) -> String { root + "/inbox/" + direction }
    public func outbox(_ direction: String) -> String { root + "/outbox/" + direction }
    public func failed(_ direction: String) -> String { root + "/failed/" + direction }
    public func done(_ direction: String) -> String { root + "/done/" + direction }

    public func prepare() throws {
        for dir in ["inbox", "work", "outbox", "failed"] {
            try FS.makeDirectories(root + "/" + dir)
        }
    }

    /// Creates inbox/, outbox/ and failed/ folders of a direction (idempotent).
    public func ensureDirection(_ direction: String) throws {
        try FS.makeDirectories(inbox(direction))
        try FS.makeDirectories(outbox(direction))
        try FS.makeDirectories(failed(direction))
    }

    /// Direction folders present in inbox/ (including ones no model offers: their files fail).
    public func inboxDirections() -> [String] {
        FS.list(inboxRoot).filter { !$0.hasPrefix(".") && FS.isDirectory(inboxRoot + "/" + $0) }.sorted()
    }

    /// Every file waiting in `inbox/<direction>/` (recursively), as relative paths, skipping
    /// hidden and temporary names.
    public func scanInbox(_ direction: String, under subfolder: String = "") -> [String] {
        var found: [String] = []
        var stack = [subfolder]
        let base = inbox(direction)
        while let rel = stack.popLast() {
            let dir = rel.isEmpty ? base : base + "/" + rel
            for name in FS.list(dir).sorted() where !IncomingName.isIgnored(name) {
                let childRel = rel.isEmpty ? name : rel + "/" + name
                let path = base + "/" + childRel
                if FS.isDirectory(path) {
                    stack.append(childRel)
                } else if FS.isRegularFile(path) {
                    found.append(childRel)
                }
            }
        }
        return found
    }

    // MARK: Claim

    /// Moves `inbox/<direction>/<relativePath>` into a fresh work folder. Returns nil when the
    /// file is no longer there (another event already claimed it, or the user took it back).
    public func claim(direction: String, relativePath: String) throws -> WorkItem? {
        let source = inbox(direction) + "/" + relativePath
        guard FS.isRegularFile(source) else { return nil }
        let id = ids.next()
        let item = WorkItem(
            id: id, direction: direction, relativePath: relativePath, claimedAt: Date(),
            directory: workRoot + "/" + id)
        try FS.makeDirectories(item.directory)
        // The journal exists before the file moves in, so a work folder that holds a file always
        // says where that file came from.
        try writeJournal(
            JobRecord(id: id, direction: direction, relativePath: relativePath, claimedAt: item.claimedAt), item)
        guard try FS.rename(source, item.input) else {
            discard(item)
            return nil
        }
        try FS.fsyncPath(item.directory, directory: true)
        return item
    }

    // MARK: Output

    /// Where the translator writes: a hidden name inside the job's work folder. work/ and
    /// outbox/ share the spool's file system, so the result becomes visible with one link; and
    /// whatever a killed translator leaves behind (its own temporaries too) goes with the work
    /// folder, never into the outbox.
    public func temporaryOutput(for item: WorkItem, outputName: String) -> String {
        let ext = (outputName as NSString).pathExtension
        return item.directory + "/.output" + (ext.isEmpty ? "" : "." + ext)
    }

    func outputFolder(_ item: WorkItem) -> String {
        let sub = (item.relativePath as NSString).deletingLastPathComponent
        return sub.isEmpty ? outbox(item.direction) : outbox(item.direction) + "/" + sub
    }

    /// Makes the finished temporary output visible as `outputName` (or `name (1).ext`, ... under
    /// `.rename`), durably, and records it in the journal first. Returns the path relative to
    /// `outbox/<direction>/`.
    public func commitOutput(
        _ item: WorkItem, temporary: String, outputName: String, policy: ConflictPolicy
    ) throws -> String {
        try FS.fsyncPath(temporary)
        guard let identity = FS.identity(temporary) else {
            throw DaemonError(.writeFailed, "the translated image \(temporary) vanished before it was committed")
        }
        let folder = outputFolder(item)
        try FS.makeDirectories(folder)
        let sub = (item.relativePath as NSString).deletingLastPathComponent
        var record = try readJournal(item)
        for attempt in 0..<10_000 {
            let name = Spool.numbered(outputName, attempt)
            let target = folder + "/" + name
            if policy == .rename && FS.exists(target) { continue }
            let rel = sub.isEmpty ? name : sub + "/" + name
            record.output = .init(relativePath: rel, identity: identity)
            try writeJournal(record, item)
            if try FS.place(temporary, at: target, replace: policy == .overwrite) { return rel }
        }
        throw DaemonError(.writeFailed, "no free output name for \(outputName) in \(folder)")
    }

    /// Drops the original (or moves it to done/ when keeping originals) and the work folder.
    public func finish(_ item: WorkItem, keepOriginal: Bool) throws {
        if FS.isRegularFile(item.input) {
            if keepOriginal {
                _ = try placeUnique(item.input, in: done(item.direction), relativePath: item.relativePath)
            } else {
                FS.remove(item.input)
            }
        }
        discard(item)
    }

    // MARK: Failure

    /// Moves the original to `failed/<direction>/<relativePath>` (a free name) with its sidecar
    /// `NAME.error.json` beside it, then drops the work folder. Returns the failed file's path.
    @discardableResult
    public func fail(_ item: WorkItem, error: DaemonError) throws -> String {
        var record =
            (try? readJournal(item))
            ?? JobRecord(
                id: item.id, direction: item.direction, relativePath: item.relativePath, claimedAt: item.claimedAt)
        let time = Date()
        let folder = failed(item.direction)
        let sub = (item.relativePath as NSString).deletingLastPathComponent
        let targetFolder = sub.isEmpty ? folder : folder + "/" + sub
        try FS.makeDirectories(targetFolder)
        for attempt in 0..<10_000 {
            let name = Spool.numbered(item.name, attempt)
            let target = targetFolder + "/" + name
            if FS.exists(target) || FS.exists(target + ".error.json") { continue }
            let rel = sub.isEmpty ? name : sub + "/" + name
            record.failure = .init(error: error, relativePath: rel, time: time)
            try writeJournal(record, item)
            try writeSidecar(record, failedPath: target)
            let moved = try !FS.isRegularFile(item.input) || FS.moveNoReplace(item.input, target)
            if moved {
                try FS.fsyncPath(targetFolder, directory: true)
                discard(item)
                return target
            }
            FS.remove(target + ".error.json")
        }
        throw DaemonError(.writeFailed, "no free name for \(item.name) in \(targetFolder)")
    }

    private func writeSidecar(_ record: JobRecord, failedPath: String) throws {
        guard let failure = record.failure else { return }
        let sidecar = FailureSidecar(
            code: failure.error.code.rawValue, message: failure.error.message, direction: record.direction,
            file: record.relativePath, time: failure.time, daemonVersion: version)
        try DurableFile.write(try Spool.encoder.encode(sidecar), to: failedPath + ".error.json")
    }

    // MARK: Start-up

    public struct Recovery: Sendable {
        /// Items to translate again, oldest first.
        public var requeue: [WorkItem] = []
        /// Items whose output had already been completed: finished without translating.
        public var completed: [WorkItem] = []
        /// Items whose failure had been decided: moved to failed/.
        public var failed: [WorkItem] = []
        /// Files in work/ without a journal (only after a power loss): moved to failed/unknown/.
        public var orphans: [String] = []
    }

    /// Brings work/ and outbox/ back to a consistent state after any kind of stop. Call before
    /// anything else touches the spool.
    public func recover(keepOriginals: Bool) -> Recovery {
        var recovery = Recovery()
        for id in FS.list(workRoot).sorted() where !id.hasPrefix(".") {
            let directory = workRoot + "/" + id
            guard FS.isDirectory(directory) else { continue }
            let journal = directory + "/" + Spool.journalName
            guard let data = FileManager.default.contents(atPath: journal),
                let record = try? Spool.decoder.decode(JobRecord.self, from: data)
            else {
                recovery.orphans += adoptOrphans(in: directory)
                continue
            }
            let item = WorkItem(
                id: record.id, direction: record.direction, relativePath: record.relativePath,
                claimedAt: record.claimedAt, directory: directory)
            if let failure = record.failure {
                if FS.isRegularFile(item.input) {
                    if (try? fail(item, error: failure.error)) != nil { recovery.failed.append(item) }
                } else {
                    // The file already moved: make sure its sidecar is there too.
                    let target = failed(item.direction) + "/" + failure.relativePath
                    if !FS.exists(target + ".error.json") { try? writeSidecar(record, failedPath: target) }
                    discard(item)
                    recovery.failed.append(item)
                }
                continue
            }
            if let output = record.output,
                FS.identity(outbox(item.direction) + "/" + output.relativePath) == output.identity
            {
                if (try? finish(item, keepOriginal: keepOriginals)) != nil { recovery.completed.append(item) }
                continue
            }
            if FS.isRegularFile(item.input) {
                // Translate from scratch: drop a half-written output and the translator's temporaries.
                for name in FS.list(directory) where name != item.name && name != Spool.journalName {
                    try? FileManager.default.removeItem(atPath: directory + "/" + name)
                }
                recovery.requeue.append(item)
            } else {
                // Claimed but the file never moved in (it is still in the inbox), or already
                // finished up: nothing left to do here.
                discard(item)
            }
        }
        // Interactive scratch folders (work/.i-*) belong to requests of the previous run.
        for name in FS.list(workRoot) where name.hasPrefix(".i-") {
            try? FileManager.default.removeItem(atPath: workRoot + "/" + name)
        }
        return recovery
    }

    private func adoptOrphans(in directory: String) -> [String] {
        var moved: [String] = []
        for name in FS.list(directory) where !name.hasPrefix(".") && FS.isRegularFile(directory + "/" + name) {
            let item = WorkItem(
                id: (directory as NSString).lastPathComponent, direction: "unknown", relativePath: name,
                claimedAt: Date(), directory: directory)
            let error = DaemonError(
                .internal, "found in work/ without its journal (after a power loss?); put it back in an inbox to retry")
            if let path = try? fail(item, error: error) { moved.append(path) }
        }
        try? FileManager.default.removeItem(atPath: directory)
        return moved
    }

    // MARK: Helpers

    /// Scratch folder for an interactive request (inline bytes), removed by the caller or at start.
    func interactiveScratch(id: String) throws -> String {
        let dir = workRoot + "/.i-" + id
        try FS.makeDirectories(dir)
        return dir
    }

    func newID() -> String { ids.next() }

    private func placeUnique(_ source: String, in base: String, relativePath: String) throws -> String {
        let sub = (relativePath as NSString).deletingLastPathComponent
        let name = (relativePath as NSString).lastPathComponent
        let folder = sub.isEmpty ? base : base + "/" + sub
        try FS.makeDirectories(folder)
        for attempt in 0..<10_000 {
            let target = folder + "/" + Spool.numbered(name, attempt)
            if try FS.moveNoReplace(source, target) { return target }
        }
        throw DaemonError(.writeFailed, "no free name for \(name) in \(folder)")
    }

    /// Removes the work folder. The journal goes first: a crash half-way leaves a folder
    /// without a journal, which start-up clears (or adopts, if it still holds an original).
    private func discard(_ item: WorkItem) {
        FS.remove(item.journalPath)
        try? FileManager.default.removeItem(atPath: item.directory)
    }

    func readJournal(_ item: WorkItem) throws -> JobRecord {
        guard let data = FileManager.default.contents(atPath: item.journalPath) else {
            throw DaemonError(.internal, "journal \(item.journalPath) is missing")
        }
        return try Spool.decoder.decode(JobRecord.self, from: data)
    }

    func writeJournal(_ record: JobRecord, _ item: WorkItem) throws {
        try DurableFile.write(try Spool.encoder.encode(record), to: item.journalPath)
    }

    /// `cat.jpg`, `cat (1).jpg`, `cat (2).jpg`, ...
    static func numbered(_ name: String, _ n: Int) -> String {
        guard n > 0 else { return name }
        let ext = (name as NSString).pathExtension
        let stem = ext.isEmpty ? name : String(name.dropLast(ext.count + 1))
        return ext.isEmpty ? "\(stem) (\(n))" : "\(stem) (\(n)).\(ext)"
    }

    static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        e.keyEncodingStrategy = .convertToSnakeCase
        e.dateEncodingStrategy = .iso8601
        return e
    }()

    static let decoder: JSONDecoder = {
        let d = JSONDecoder()
        d.keyDecodingStrategy = .convertFromSnakeCase
        d.dateDecodingStrategy = .iso8601
        return d
    }()
}

/// Job ids that sort in creation order across restarts: milliseconds, pid, counter.
final class IDGenerator: @unchecked Sendable {
    private let lock = NSLock()
    private var counter = 0

    func next() -> String {
        let n = lock.withLock {
            counter += 1
            return counter
        }
        let ms = UInt64(Date().timeIntervalSince1970 * 1000)
        return String(format: "%013llu-%07d-%06d", ms, Int(getpid()), n % 1_000_000)
    }
}
