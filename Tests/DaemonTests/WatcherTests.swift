import Foundation
import Synchronization
import Testing

@testable import Daemon

#if canImport(Glibc)
    import Glibc
#endif

/// The watcher on libinotifytools. These tests belong to `DaemonServiceTests` (serialized) since
/// a process runs one watcher at a time (libinotifytools' state is process-wide).
extension DaemonServiceTests {
    /// Events a watcher reported; the handler can be held, so that the kernel's queue fills.
    final class Recorder: @unchecked Sendable {
        private let condition = NSCondition()
        private var events: [Watcher.Event] = []
        private var held = false

        func hold() { condition.withLock { held = true } }
        func release() {
            condition.lock()
            held = false
            condition.broadcast()
            condition.unlock()
        }

        func record(_ event: Watcher.Event) {
            condition.lock()
            while held { condition.wait() }
            events.append(event)
            condition.unlock()
        }

        var all: [Watcher.Event] { condition.withLock { events } }
    }

    func watcher(_ recorder: Recorder) throws -> Watcher {
        try FS.makeDirectories(dir.path + "/inbox")
        let watcher = Watcher(inboxRoot: dir.path + "/inbox", modelsDir: nil) { recorder.record($0) }
        try watcher.start()
        return watcher
    }

    @Test func theWatcherSeesADirectionFolderCreatedWhileRunning() async throws {
        let recorder = Recorder()
        let watcher = try watcher(recorder)
        defer { watcher.stop() }
        try FS.makeDirectories(dir.path + "/inbox/late")
        dir.write("inbox/late/a.png", "a")  // written in place: IN_CLOSE_WRITE, or found by the scan
        dir.write("inbox/late/.hidden.png", "h")
        dir.write("inbox/late/b.png.part", "p")
        #expect(await eventually { recorder.all.contains(.direction("late")) })
        #expect(
            await eventually {
                recorder.all.contains(.file(direction: "late", relativePath: "a.png"))
                    || recorder.all.contains(.found(direction: "late", relativePath: "a.png"))
            })
        rename(dir.path + "/inbox/late/b.png.part", dir.path + "/inbox/late/b.png")
        #expect(await eventually { recorder.all.contains(.file(direction: "late", relativePath: "b.png")) })
        let names = recorder.all.compactMap { event -> String? in
            switch event {
            case .file(_, let path), .found(_, let path): path
            default: nil
            }
        }
        #expect(Set(names) == ["a.png", "b.png"], "hidden and temporary names are never reported: \(names)")
    }

    @Test func theWatcherSurvivesAnOverflowOfTheKernelsQueue() async throws {
        try FS.makeDirectories(dir.path + "/inbox/a2b")
        let recorder = Recorder()
        let watcher = try watcher(recorder)
        defer { watcher.stop() }
        // Held in its handler, the watcher reads nothing while 2 events per file pile up in the
        // kernel, past its queue (fs.inotify.max_queued_events, 16384 by default).
        recorder.hold()
        dir.write("inbox/a2b/first.png", "1")
        let limit =
            Int(
                (try? String(contentsOfFile: "/proc/sys/fs/inotify/max_queued_events", encoding: .utf8))?
                    .trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 16384
        for n in 0..<(limit / 2 + 500) {
            let fd = open(dir.path + "/inbox/a2b/flood-\(n).png", O_CREAT | O_WRONLY | O_CLOEXEC, 0o644)
            close(fd)
        }
        // A folder made while events are lost is watched after the overflow's rescan.
        try FS.makeDirectories(dir.path + "/inbox/a2b/during")
        recorder.release()
        #expect(await eventually(60) { recorder.all.contains(.rescan) })
        dir.write("inbox/a2b/after.png", "2")
        dir.write("inbox/a2b/during/inside.png", "3")
        #expect(await eventually { recorder.all.contains(.file(direction: "a2b", relativePath: "after.png")) })
        #expect(
            await eventually { recorder.all.contains(.file(direction: "a2b", relativePath: "during/inside.png")) })
    }

    @Test func aSecondWatcherInTheProcessIsRefused() throws {
        let recorder = Recorder()
        let first = try watcher(recorder)
        defer { first.stop() }
        let second = Watcher(inboxRoot: dir.path + "/inbox", modelsDir: nil) { _ in }
        #expect(throws: Watcher.Failure.self) { try second.start() }
    }

    @Test func filesDroppedWhileTheDaemonWasDownAreFoundAtStart() async throws {
        try await running(try makeDaemon()) {
            drop("before.png", "before")
            #expect(await eventually { dir.read("spool/outbox/a2b/before.png") == "BEFORE" })
        }
        let lockFile = open(dir.path + "/spool/.cyclegand.lock", O_RDWR | O_CLOEXEC)
        #expect(flock(lockFile, LOCK_EX | LOCK_NB) == 0, "a stopped daemon lets go of its spool")
        close(lockFile)
        // Down: files arrive, one in a new folder, one in a new direction's inbox (no model yet).
        let old = Date().addingTimeInterval(-60)
        for file in ["spool/inbox/a2b/down.png", "spool/inbox/a2b/sub/deep.png"] {
            dir.write(file, (file as NSString).lastPathComponent)
            try FileManager.default.setAttributes([.modificationDate: old], ofItemAtPath: dir.path + "/" + file)
        }
        try await running(try makeDaemon()) {
            #expect(await eventually { dir.read("spool/outbox/a2b/down.png") == "DOWN.PNG" })
            #expect(await eventually { dir.read("spool/outbox/a2b/sub/deep.png") == "DEEP.PNG" })
            #expect(dir.files("spool/inbox/a2b").isEmpty)
        }
    }
}

/// A long job (fine-tuning) on the run queue: lowest priority, on a thread of its own, so that
/// images go on while it runs; `jobs` lists it, `cancel` and a stop end it.
final class SteppingJob: LongJob, @unchecked Sendable {
    let label = "tiny fine-tune"
    let bytes = 1 << 20
    private let lock = NSLock()
    private var stepsRun = 0
    var steps: Int { lock.withLock { stepsRun } }

    func run(slot: LongJobSlot, cancel: CancellationFlag) throws {
        while !cancel.isCancelled {
            #expect(slot.compute.threads >= 1)
            lock.withLock { stepsRun += 1 }
            Thread.sleep(forTimeInterval: 0.01)
        }
        throw DaemonError(.cancelled, "cancelled")
    }
}

extension DaemonServiceTests {
    @Test func aLongJobRunsBesideImagesAndEndsOnCancel() async throws {
        let daemon = try makeDaemon()
        let long = SteppingJob()
        try await running(daemon) {
            let id = try daemon.submit(long)
            #expect(await eventually { long.steps > 3 })
            #expect((await daemon.jobs()).contains { $0.id == id && $0.kind == .training && $0.state == .running })
            drop("beside.png", "beside")
            #expect(await eventually { dir.read("spool/outbox/a2b/beside.png") == "BESIDE" })
            #expect(await daemon.cancel(id: id).outcome == .cancelRequested)
            #expect(await eventually { await daemon.jobs().isEmpty })
            // A stop ends a running one too.
            _ = try daemon.submit(SteppingJob())
            #expect(await eventually { await !daemon.jobs().isEmpty })
        }
    }
}
