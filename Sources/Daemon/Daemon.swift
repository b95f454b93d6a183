import Dispatch
import Foundation
import Logging

/// The running service, put together from parts with one job each:
/// - `Spool` (the folders, every move between them, recovery) and `SpoolLock` (one daemon per spool);
/// - `WatchSource`: the watcher and the claims that turn inbox files into queued work;
/// - `Scheduler` (the run queue) and `Workers` (its threads), which run `ImageJobs`;
/// - `ModelDirections`: the models offered and their reloads;
/// - `TrainingJobs`: the fine-tune job (one at a time), run as the run queue's long job;
/// - `Settings` (the configuration in force), `ServiceStatus` (counters, systemd), `Signals`.
///
/// This type owns their lifecycle: `start()` brings them up in order, a stop (a signal or
/// `shutdown()`) takes them down, and `run()` returns once that has completed. The control
/// surface, `DaemonControl`, is in DaemonControlSurface.swift.
public final class Daemon: @unchecked Sendable {
    public static let version = "0.1.0"

    let spool: Spool
    let settings: Settings
    let scheduler = Scheduler()
    let hub = EventHub()
    let startedAt = Date()
    let models: ModelDirections
    let status: ServiceStatus
    let jobs: ImageJobs
    /// nil when the daemon was started without a training engine (`finetune` is then unsupported).
    let training: TrainingJobs?
    private let watch: WatchSource
    private let reloadConfig: @Sendable () throws -> DaemonConfig
    private let handleSignals: Bool
    /// Reloads run here, one at a time (SIGHUP, `reload()`).
    private let reloads = DispatchQueue(label: "cyclegand.reload")

    // Lifecycle, guarded by `lock`.
    private let lock = NSLock()
    private var spoolLock: SpoolLock?
    private var workers: Workers?
    private var signals: Signals?
    private var stopContinuation: CheckedContinuation<Void, Never>?
    private var stopRequested = false
    private var stopStarted = false

    /// - Parameters:
    ///   - reloadConfig: re-reads the configuration file and re-applies the command-line flags
    ///     (SIGHUP, `reload()`); the default keeps the current configuration.
    ///   - handleSignals: install SIGTERM/SIGINT/SIGHUP handlers (the executable does; tests that
    ///     run the daemon in-process do not).
    ///   - allotment: the cores and memory that images and long jobs share (give the translator
    ///     the same one).
    ///   - trainer: runs `finetune` jobs (nil: the daemon translates only).
    public init(
        config: DaemonConfig, catalog: ModelCatalog, translator: Translator, logger: Logger,
        notifier: SystemdNotifier = SystemdNotifier(), handleSignals: Bool = true,
        allotment: Allotment = Allotment(cores: ProcessInfo.processInfo.activeProcessorCount),
        trainer: TrainingEngine? = nil, reloadConfig: (@Sendable () throws -> DaemonConfig)? = nil
    ) {
        let settings = Settings(config: config, logger: logger)
        let spool = Spool(root: config.root, version: Daemon.version)
        let models = ModelDirections(
            catalog: catalog, translator: translator, spool: spool, settings: settings, hub: hub)
        let hub = self.hub
        let training = trainer.map { engine in
            TrainingJobs(
                engine: engine, settings: settings, hub: hub, allotment: allotment,
                servedVersion: { model in models.models.first { $0.name == model }?.version },
                published: { model in models.reload(reason: "\(model) published") })
        }
        let status = ServiceStatus(
            notifier: notifier, scheduler: scheduler, directions: { models.names }, training: { training?.line() })
        self.training = training
        training?.notifyStatus { status.update() }
        self.settings = settings
        self.spool = spool
        self.models = models
        self.status = status
        self.watch = WatchSource(
            spool: spool, scheduler: scheduler, settings: settings, status: status, models: models)
        self.jobs = ImageJobs(
            spool: spool, translator: translator, settings: settings, models: models, status: status, hub: hub,
            allotment: allotment)
        self.handleSignals = handleSignals
        self.reloadConfig = reloadConfig ?? { [config] in config }
    }

    var log: Logger { settings.log }
    var isStopping: Bool { lock.withLock { stopStarted } }

    // MARK: Run

    /// Starts everything, returns after shutdown. Throws only when it cannot start (spool not
    /// writable, another daemon on the same spool).
    public func run() async throws {
        try start()
        ready()
        await waitForStop()
    }

    /// Tells systemd (READY=1) that the daemon is serving. Call after `start()` and after
    /// anything else the service offers (the control socket) is listening.
    public func ready() {
        status.notifier.ready(status: status.line())
    }

    /// Suspends until a shutdown has completed (the current image finished or the grace period
    /// ran out). Call it once.
    public func waitForStop() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let alreadyRequested = lock.withLock {
                stopContinuation = c
                return stopRequested
            }
            if alreadyRequested { beginStop() }
        }
    }

    /// Prepares the spool, recovers work/ from the last run, loads the models, starts watching,
    /// queues what is waiting and starts the workers and signal handlers. Throws when the spool
    /// cannot be used (not writable, another daemon holds it).
    public func start() throws {
        let config = settings.config
        do {
            try spool.prepare()
        } catch {
            throw DaemonError(
                .internal, "cannot create the spool under \(config.root): \(error). Check --root and its permissions.")
        }
        let spoolLock = try SpoolLock.take(spool)
        let recovery = spool.recover(keepOriginals: config.keepOriginals)
        if recovery.requeue.count + recovery.completed.count + recovery.failed.count + recovery.orphans.count > 0 {
            log.notice(
                "recovered work/: \(recovery.requeue.count) re-queued, \(recovery.completed.count) already translated, \(recovery.failed.count) failed, \(recovery.orphans.count) orphans"
            )
        }
        watch.rescan(models.reload(reason: "start").added)
        try watch.start(modelsFolder: models.folder, recovered: recovery.requeue)
        let workers = Workers(count: config.workerCount, scheduler: scheduler) { [jobs] in jobs.run($0) }
        continueUnfinishedTraining()
        let signals =
            handleSignals
            ? Signals(
                stop: { [weak self] name in self?.requestStop(signalName: name) },
                reload: { [weak self] in
                    self?.log.notice("SIGHUP: reloading configuration and models")
                    _ = try? self?.reloadAll()
                }) : nil
        lock.withLock {
            self.spoolLock = spoolLock
            self.workers = workers
            self.signals = signals
        }
        status.startWatchdog()
        status.update()
        log.notice(
            "cyclegand \(Daemon.version) watching \(spool.inboxRoot)/{\(models.names.joined(separator: ","))}; results in \(config.root)/outbox/; \(config.workerCount) worker(s)"
        )
    }

    /// A fine-tune job the last run left unfinished (a restart, a kill) continues from its checkpoint.
    private func continueUnfinishedTraining() {
        guard let training else { return }
        for (id, request) in training.engine.unfinishedJobs() {
            do {
                let job = try training.prepare(request, id: id) { [weak self] in self?.isStopping ?? true }
                scheduler.submit(
                    .init(id: id, priority: .training, direction: "", label: job.label, payload: .long(job)))
                log.notice("continuing fine-tune \(id) of \(request.model) from its last checkpoint")
            } catch {
                log.error("cannot continue fine-tune \(id) of \(request.model): \(error); it is dropped")
                training.engine.finish(model: request.model)
            }
        }
    }

    // MARK: Reload

    /// Re-reads the configuration (what only a restart can change keeps its value, with a
    /// warning) and rescans the models.
    func reloadAll() throws -> ReloadReply {
        status.notifier.reloading()
        defer { status.notifier.ready(status: status.line()) }
        let fresh: DaemonConfig
        do {
            fresh = try reloadConfig()
        } catch {
            log.error("reload: \(error); keeping the current configuration")
            throw DaemonError(.badRequest, "reload failed: \(error)")
        }
        let kept = settings.apply(fresh)
        if !kept.isEmpty {
            log.warning("reload: \(kept.joined(separator: ", ")) changed; restart the daemon to apply")
        }
        let reply = models.reload(reason: "reload")
        watch.rescan(reply.added)
        status.update()
        return reply
    }

    /// Runs `reloadAll` on the reload queue.
    func reloadInBackground() async throws -> ReloadReply {
        try await withCheckedThrowingContinuation { continuation in
            reloads.async { [self] in continuation.resume(with: Result { try reloadAll() }) }
        }
    }

    // MARK: Stop

    private func requestStop(signalName: String) {
        let again = lock.withLock {
            defer { stopRequested = true }
            return stopRequested
        }
        if again {
            log.notice("\(signalName) again: exiting now; unfinished images stay in work/ for the next start")
            finishStop()
            return
        }
        let timeout = Int(settings.config.stopTimeout)
        log.notice("\(signalName): finishing the images being translated (up to \(timeout) s), then exiting")
        beginStop()
    }

    /// Stops taking work, fails the queued interactive requests, waits for the running images
    /// (up to the grace period) and ends `waitForStop()`. Does nothing before `waitForStop()`
    /// is called (it then stops at once) or when a stop has begun already.
    func beginStop() {
        let begin = lock.withLock {
            stopRequested = true
            guard !stopStarted, stopContinuation != nil else { return false }
            stopStarted = true
            return true
        }
        guard begin else { return }
        status.notifier.stopping()
        let thread = Thread { [self] in
            watch.stop()
            models.cancelPending()
            // A long job runs for hours: it is asked to end now, not waited for.
            scheduler.cancelRunning(.training)
            for job in scheduler.stop() {
                if case .interactive(let request) = job.payload {
                    request.resolve(
                        .failure(DaemonError(.shuttingDown, "the daemon is stopping; try again after it restarts")))
                }
                // Watch jobs stay in work/ and are re-queued at the next start.
            }
            let deadline = Date().addingTimeInterval(settings.config.stopTimeout)
            if !scheduler.waitIdle(until: deadline) {
                log.warning(
                    "the current image did not finish in time; it stays in work/ and is translated at the next start")
            }
            finishStop()
        }
        thread.name = "cyclegand-stop"
        thread.start()
    }

    /// Ends `waitForStop()` (once) and lets go of what the daemon holds.
    private func finishStop() {
        let (continuation, signals) = lock.withLock {
            defer {
                stopContinuation = nil
                spoolLock = nil
                self.signals = nil
            }
            return (stopContinuation, self.signals)
        }
        guard let continuation else { return }
        signals?.cancel()
        status.stopWatchdog()
        hub.finish()
        log.notice("stopped")
        continuation.resume()
    }
}
