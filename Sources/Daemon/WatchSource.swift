import Dispatch
import Foundation

/// The watch folders as a source of work: the inotify watcher, the files found by scans
/// (claimed once they have settled, on timers of its own), and the claim that moves each file
/// from its inbox into work/ and queues it. Owns the watcher and the settle timers' queue.
final class WatchSource: @unchecked Sendable {
    private let spool: Spool
    private let scheduler: Scheduler
    private let settings: Settings
    private let status: ServiceStatus
    private let models: ModelDirections
    private let timers = DispatchQueue(label: "cyclegand.settle")
    private let lock = NSLock()
    // Guarded by `lock`.
    private var watcher: Watcher?
    private var stopping = false

    /// A file found by a scan that was modified within this many seconds may still be open for
    /// writing: it is looked at again later.
    static let settleSeconds = 1.0

    init(
        spool: Spool, scheduler: Scheduler, settings: Settings, status: ServiceStatus, models: ModelDirections
    ) {
        self.spool = spool
        self.scheduler = scheduler
        self.settings = settings
        self.status = status
        self.models = models
    }

    /// Starts watching inbox/ and the models folder, then queues the recovered items and every
    /// file that waits in an inbox (it arrived while the daemon was down).
    func start(modelsFolder: String?, recovered: [WorkItem]) throws {
        let watcher = Watcher(inboxRoot: spool.inboxRoot, modelsDir: modelsFolder) { [weak self] event in
            self?.handle(event)
        }
        try watcher.start()
        lock.withLock { self.watcher = watcher }
        for item in recovered { submit(item) }
        rescan()
    }

    /// Stops watching and claiming (the settle timers that are left do nothing).
    func stop() {
        let watcher = lock.withLock {
            stopping = true
            return self.watcher
        }
        watcher?.stop()
    }

    private var isStopping: Bool { lock.withLock { stopping } }

    private func handle(_ event: Watcher.Event) {
        switch event {
        case .file(let direction, let path):
            claim(direction: direction, relativePath: path)
        case .found(let direction, let path):
            claimWhenSettled(direction: direction, relativePath: path)
        case .direction(let direction):
            try? spool.ensureDirection(direction)
        case .rescan:
            settings.log.warning("inotify queue overflowed; rescanning every inbox")
            rescan()
        case .modelsChanged:
            // Files that waited in a new direction's inbox (made by hand before its model) go now.
            models.scheduleReload { [weak self] reply in
                self?.rescan(reply.added)
                self?.status.update()
            }
        }
    }

    /// Takes every file waiting in the inboxes of `directions` (all when nil).
    func rescan(_ directions: [String]? = nil) {
        for direction in directions ?? spool.inboxDirections() {
            for path in spool.scanInbox(direction) { claimWhenSettled(direction: direction, relativePath: path) }
        }
    }

    private func claim(direction: String, relativePath: String) {
        guard !isStopping else { return }
        do {
            if let item = try spool.claim(direction: direction, relativePath: relativePath) {
                submit(item)
            }
        } catch {
            settings.log.error("cannot claim inbox/\(direction)/\(relativePath): \(error)")
        }
    }

    private func submit(_ item: WorkItem) {
        scheduler.submit(
            .init(
                id: item.id, priority: .watch, direction: item.direction, label: item.relativePath,
                payload: .watch(item)))
        status.update()
    }

    /// Claims a file found by a scan (not announced by inotify) once nobody seems to write it
    /// any more. (If its writer closes it meanwhile, IN_CLOSE_WRITE claims it first and the
    /// later look finds nothing.)
    private func claimWhenSettled(direction: String, relativePath: String) {
        let path = spool.inbox(direction) + "/" + relativePath
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path),
            let modified = attributes[.modificationDate] as? Date
        else { return }
        let age = Date().timeIntervalSince(modified)
        if age >= Self.settleSeconds || age < -60 {
            claim(direction: direction, relativePath: relativePath)
            return
        }
        guard !isStopping else { return }
        timers.asyncAfter(deadline: .now() + Self.settleSeconds - max(0, age) + 0.05) { [weak self] in
            self?.claimWhenSettled(direction: direction, relativePath: relativePath)
        }
    }
}
