import Dispatch
import Foundation

/// What the daemon has done (images written and failed) and how it tells systemd: the STATUS=
/// line when it changes, and the watchdog's keep-alive on a timer it owns.
final class ServiceStatus: @unchecked Sendable {
    let notifier: SystemdNotifier
    private let scheduler: Scheduler
    private let directions: @Sendable () -> [String]
    private let training: @Sendable () -> String?
    private let lock = NSLock()
    // Guarded by `lock`.
    private var done = 0
    private var failures = 0
    private var lastLine = ""
    private var watchdog: DispatchSourceTimer?

    init(
        notifier: SystemdNotifier, scheduler: Scheduler, directions: @escaping @Sendable () -> [String],
        training: @escaping @Sendable () -> String? = { nil }
    ) {
        self.notifier = notifier
        self.scheduler = scheduler
        self.directions = directions
        self.training = training
    }

    var processed: Int { lock.withLock { done } }
    var failed: Int { lock.withLock { failures } }

    func imageDone() {
        lock.withLock { done += 1 }
        update()
    }

    func imageFailed() {
        lock.withLock { failures += 1 }
        update()
    }

    /// Watch-folder jobs waiting per direction, every known direction included.
    func queues(_ snapshot: Scheduler.Snapshot) -> [String: Int] {
        var counts = Dictionary(uniqueKeysWithValues: directions().map { ($0, 0) })
        for job in snapshot.queued where job.priority == .watch { counts[job.direction, default: 0] += 1 }
        return counts
    }

    func line() -> String {
        let snapshot = scheduler.snapshot()
        let waiting = queues(snapshot).sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }
        let (written, lost) = lock.withLock { (done, failures) }
        let images =
            "queued: \(waiting.isEmpty ? "no directions" : waiting.joined(separator: ", ")); running \(snapshot.running.count); done \(written), failed \(lost)"
        return training().map { images + "; " + $0 } ?? images
    }

    /// Sends the status line to systemd when it changed.
    func update() {
        guard notifier.isActive else { return }
        let line = line()
        let changed = lock.withLock {
            defer { lastLine = line }
            return lastLine != line
        }
        if changed { notifier.status(line) }
    }

    func startWatchdog() {
        guard let interval = notifier.watchdogInterval else { return }
        let timer = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "cyclegand.watchdog"))
        timer.schedule(deadline: .now() + interval, repeating: interval)
        timer.setEventHandler { [notifier] in notifier.watchdog() }
        timer.resume()
        lock.withLock { watchdog = timer }
    }

    func stopWatchdog() {
        lock.withLock { watchdog }?.cancel()
    }
}
