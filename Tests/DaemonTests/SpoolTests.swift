import Foundation
import Testing

@testable import Daemon

@Suite struct SpoolTests {
    let dir = TempDir("spool")
    var spool: Spool { Spool(root: dir.path, version: "test") }

    init() throws {
        try spool.prepare()
        try spool.ensureDirection("a2b")
    }

    /// Claims `inbox/a2b/<rel>` after writing it.
    func claimed(_ rel: String, _ text: String = "img") throws -> WorkItem {
        dir.write("inbox/a2b/" + rel, text)
        return try #require(try spool.claim(direction: "a2b", relativePath: rel))
    }

    /// Writes a temporary output and commits it, as a worker does.
    func translate(_ item: WorkItem, name: String? = nil, policy: ConflictPolicy = .rename) throws -> String {
        let outName = name ?? item.name
        let temp = spool.temporaryOutput(for: item, outputName: outName)
        try Data("out of \(item.relativePath)".utf8).write(to: URL(fileURLWithPath: temp))
        return try spool.commitOutput(item, temporary: temp, outputName: outName, policy: policy)
    }

    @Test func claimMovesTheFileAndJournalsIt() throws {
        let item = try claimed("trip/cat.jpg")
        #expect(dir.files("inbox").isEmpty)
        #expect(FS.isRegularFile(item.input))
        let record = try spool.readJournal(item)
        #expect(record.direction == "a2b" && record.relativePath == "trip/cat.jpg" && record.output == nil)
        #expect(try spool.claim(direction: "a2b", relativePath: "trip/cat.jpg") == nil)
        #expect(FS.list(spool.workRoot) == [item.id])
    }

    @Test func commitMirrorsSubfoldersAndNeverOverwritesUnlessAsked() throws {
        dir.write("outbox/a2b/trip/cat.jpg", "someone else's")
        let first = try claimed("trip/cat.jpg")
        #expect(try translate(first) == "trip/cat (1).jpg")
        try spool.finish(first, keepOriginal: false)
        let second = try claimed("trip/cat.jpg")
        #expect(try translate(second) == "trip/cat (2).jpg")
        try spool.finish(second, keepOriginal: true)
        #expect(dir.read("outbox/a2b/trip/cat.jpg") == "someone else's")
        #expect(dir.files("outbox/a2b") == ["trip/cat (1).jpg", "trip/cat (2).jpg", "trip/cat.jpg"])
        #expect(dir.files("done/a2b") == ["trip/cat.jpg"])
        #expect(FS.list(spool.workRoot).isEmpty)

        let third = try claimed("trip/cat.jpg")
        #expect(try translate(third, policy: .overwrite) == "trip/cat.jpg")
        #expect(dir.read("outbox/a2b/trip/cat.jpg") == "out of trip/cat.jpg")
    }

    @Test func failureMovesTheFileWithItsSidecar() throws {
        let item = try claimed("sub/x.png", "garbage")
        dir.write("failed/a2b/sub/x.png", "older failure")
        let path = try spool.fail(item, error: DaemonError(.unreadableImage, "not an image"))
        #expect(path == dir.path + "/failed/a2b/sub/x (1).png")
        #expect(dir.read("failed/a2b/sub/x (1).png") == "garbage")
        let data = try #require(FileManager.default.contents(atPath: path + ".error.json"))
        let sidecar = try Spool.decoder.decode(FailureSidecar.self, from: data)
        #expect(sidecar.code == "unreadable_image" && sidecar.message == "not an image")
        #expect(sidecar.direction == "a2b" && sidecar.file == "sub/x.png" && sidecar.daemonVersion == "test")
        let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(Set(json.keys).isSuperset(of: ["code", "message", "direction", "time", "daemon_version"]))
        #expect(FS.list(spool.workRoot).isEmpty)
    }

    // Crash points, each reproduced by stopping the sequence of spool steps where a kill -9 could.

    @Test func crashAfterClaimRequeues() throws {
        let item = try claimed("a.jpg")
        let recovery = spool.recover(keepOriginals: false)
        #expect(recovery.requeue.map(\.id) == [item.id])
        #expect(recovery.requeue.first?.relativePath == "a.jpg")
    }

    @Test func crashAfterOutputBecameVisibleDoesNotTranslateAgain() throws {
        let item = try claimed("a.jpg")
        _ = try translate(item)
        // Killed before finish(): the original is still in work/.
        let recovery = spool.recover(keepOriginals: true)
        #expect(recovery.requeue.isEmpty)
        #expect(recovery.completed.map(\.id) == [item.id])
        #expect(dir.files("outbox/a2b") == ["a.jpg"])
        #expect(dir.files("done/a2b") == ["a.jpg"])
        #expect(FS.list(spool.workRoot).isEmpty)
    }

    @Test func crashBetweenJournalAndLinkTranslatesAgainFromScratch() throws {
        let item = try claimed("a.jpg")
        let temp = spool.temporaryOutput(for: item, outputName: "a.jpg")
        try Data("half".utf8).write(to: URL(fileURLWithPath: temp))
        try Data("translator's own temporary".utf8).write(to: URL(fileURLWithPath: item.directory + "/..output.tmp-x1"))
        var record = try spool.readJournal(item)
        record.output = .init(relativePath: "a.jpg", identity: try #require(FS.identity(temp)))
        try spool.writeJournal(record, item)
        // The journal names a.jpg, but the link never happened.
        let recovery = spool.recover(keepOriginals: false)
        #expect(recovery.requeue.map(\.id) == [item.id])
        #expect(dir.files("outbox").isEmpty)
        #expect(FS.list(item.directory).sorted() == [Spool.journalName, "a.jpg"])
    }

    @Test func aForeignFileWithTheRecordedNameIsNotMistakenForOurs() throws {
        let item = try claimed("a.jpg")
        let temp = spool.temporaryOutput(for: item, outputName: "a.jpg")
        try Data("ours".utf8).write(to: URL(fileURLWithPath: temp))
        var record = try spool.readJournal(item)
        record.output = .init(relativePath: "a.jpg", identity: try #require(FS.identity(temp)))
        try spool.writeJournal(record, item)
        dir.write("outbox/a2b/a.jpg", "the user's own file")  // overwrite policy case: name was taken
        let recovery = spool.recover(keepOriginals: false)
        #expect(recovery.requeue.map(\.id) == [item.id])
        #expect(dir.read("outbox/a2b/a.jpg") == "the user's own file")
    }

    @Test func crashDuringFailureCompletesIt() throws {
        let item = try claimed("bad.png", "junk")
        var record = try spool.readJournal(item)
        record.failure = .init(error: DaemonError(.unreadableImage, "junk"), relativePath: "bad.png", time: Date())
        try spool.writeJournal(record, item)
        let recovery = spool.recover(keepOriginals: false)
        #expect(recovery.failed.map(\.id) == [item.id] && recovery.requeue.isEmpty)
        #expect(dir.files("failed/a2b") == ["bad.png", "bad.png.error.json"])
    }

    @Test func crashAfterFailureMoveWritesTheMissingSidecar() throws {
        let item = try claimed("bad.png", "junk")
        var record = try spool.readJournal(item)
        record.failure = .init(error: DaemonError(.unreadableImage, "junk"), relativePath: "bad.png", time: Date())
        try spool.writeJournal(record, item)
        try FS.rename(item.input, dir.path + "/failed/a2b/bad.png")
        let recovery = spool.recover(keepOriginals: false)
        #expect(recovery.failed.count == 1 && recovery.requeue.isEmpty)
        #expect(dir.files("failed/a2b") == ["bad.png", "bad.png.error.json"])
        #expect(FS.list(spool.workRoot).isEmpty)
    }

    @Test func emptyAndOrphanWorkFoldersAreCleared() throws {
        try FS.makeDirectories(spool.workRoot + "/0000000000001-0000001-000001")
        dir.write("work/0000000000002-0000001-000001/lost.jpg", "x")
        let recovery = spool.recover(keepOriginals: false)
        #expect(recovery.orphans.count == 1)
        #expect(dir.files("failed/unknown") == ["lost.jpg", "lost.jpg.error.json"])
        #expect(FS.list(spool.workRoot).isEmpty)
    }

    @Test func scanSkipsHiddenAndTemporaryNames() throws {
        for name in ["a.jpg", ".b.jpg", "c.jpg.part", "d.tmp", "e.crdownload", "f~", "sub/g.png", ".hidden/h.png"] {
            dir.write("inbox/a2b/" + name, "x")
        }
        #expect(spool.scanInbox("a2b").sorted() == ["a.jpg", "sub/g.png"])
    }
}
