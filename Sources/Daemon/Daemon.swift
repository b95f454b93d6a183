import Dispatch
import Foundation
import Logging

#if canImport(Glibc)
    import Glibc
#endif

/// The running service: spool, watcher, scheduler and worker threads, signals and systemd
/// notifications. `run()` returns once a shutdown (signal or `shutdown()`) has completed.
public final class Daemon: DaemonControl, @unchecked Sendable {
    public static let version = "0.1.0"

    private let spool: Spool
    private let catalog: ModelCatalog
    private let translator: Translator
    private let reloadConfig: @Sendable () throws -> DaemonConfig
    private let notifier: SystemdNotifier
    private let scheduler = Scheduler()
    private let hub = EventHub()
    private let startedAt = Date()
    private let handleSignals: Bool

    // Mutable state, guarded by `lock`.
    private let lock = NSLock()
    private var config: DaemonConfig
    private var logger: Logger
    private var scan = ModelScan(models: [], directions: [])
    private var processed = 0
    private var failedCount = 0
    private var stopping = false
    private var lastStatus = ""
    private var stopContinuation: CheckedContinuation<Void, Never>?
    private var stopRequested = false

    private var watcher: Watcher?
    private var workers: [Thread] = []
    private var signalSources: [DispatchSourceSignal] = []
    private var watchdogTimer: DispatchSourceTimer?
    private var pendingModelReload: DispatchWorkItem?
    private var lockFD: Int32 = -1
    private let background = DispatchQueue(label: "cyclegand.daemon")

    /// - Parameters:
    ///   - reloadConfig: re-reads the configuration file and re-applies the command-line flags
    ///     (SIGHUP, `reload()`); the default keeps the current configuration.
    ///   - handleSignals: install SIGTERM/SIGINT/SIGHUP handlers (the executable does; tests that
    ///     run the daemon in-process do not).
    public init(
        config: DaemonConfig, catalog: ModelCatalog, translator: Translator, logger: Logger,
        notifier: SystemdNotifier = SystemdNotifier(), handleSignals: Bool = true,
        reloadConfig: (@Sendable () throws -> DaemonConfig)? = nil
    ) {
        self.config = config
        self.catalog = catalog
        self.translator = translator
        self.logger = logger
        self.notifier = notifier
        self.handleSignals = handleSignals
        self.spool = Spool(root: config.root, version: Daemon.version)
        self.reloadConfig = reloadConfig ?? { [config] in config }
    }

    deinit {
        if lockFD >= 0 { close(lockFD) }
    }

    private var currentConfig: DaemonConfig { lock.withLock { config } }
    private var log: Logger { lock.withLock { logger } }

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
        notifier.ready(status: statusLine())
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
        let config = currentConfig
        do {
            try spool.prepare()
        } catch {
            throw DaemonError(
                .internal, "cannot create the spool under \(config.root): \(error). Check --root and its permissions.")
        }
        try takeSpoolLock()
        let recovery = spool.recover(keepOriginals: config.keepOriginals)
        if recovery.requeue.count + recovery.completed.count + recovery.failed.count + recovery.orphans.count > 0 {
            log.notice(
                "recovered work/: \(recovery.requeue.count) re-queued, \(recovery.completed.count) already translated, \(recovery.failed.count) failed, \(recovery.orphans.count) orphans"
            )
        }
        reloadModels(reason: "start")
        let watcher = Watcher(inboxRoot: spool.inboxRoot, modelsDir: catalog.modelsDirectory?.path) {
            [weak self] event in
            self?.watcherEvent(event)
        }
        try watcher.start()
        self.watcher = watcher
        for item in recovery.requeue { submit(item) }
        rescanInboxes()
        startWorkers(count: config.workerCount)
        if handleSignals { installSignalHandlers() }
        startWatchdog()
        let directions = lock.withLock { scan.directions.map(\.name) }
        log.notice(
            "cyclegand \(Daemon.version) watching \(spool.inboxRoot)/{\(directions.joined(separator: ","))}; results in \(config.root)/outbox/; \(config.workerCount) worker(s)"
        )
    }

    /// Refuses a second daemon on the same spool (flock on root/.cyclegand.lock).
    private func takeSpoolLock() throws {
        let path = spool.root + "/.cyclegand.lock"
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw DaemonError(.internal, "cannot open \(path): \(String(cString: strerror(errno)))") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            throw DaemonError(
                .busy, "another cyclegand is already using the spool \(spool.root); stop it or choose another --root")
        }
        let pid = "\(getpid())\n"
        _ = ftruncate(fd, 0)
        _ = pid.withCString { write(fd, $0, strlen($0)) }
        lockFD = fd
    }

    private func startWorkers(count: Int) {
        for n in 0..<max(1, count) {
            let thread = Thread { [self] in workerLoop() }
            thread.name = "cyclegand-worker-\(n)"
            // The network code may recurse or keep large frames; give it a main-thread-sized stack.
            thread.stackSize = 8 << 20
            workers.append(thread)
            thread.start()
        }
    }

    private func workerLoop() {
        while let job = scheduler.next() {
            switch job.payload {
            case .watch(let item): process(item, job: job)
            case .interactive(let request): process(request, job: job)
            }
            scheduler.finished(job)
            updateStatus()
        }
    }

    // MARK: Watch folders

    private func watcherEvent(_ event: Watcher.Event) {
        switch event {
        case .file(let direction, let path):
            claim(direction: direction, relativePath: path)
        case .found(let direction, let path):
            claimWhenSettled(direction: direction, relativePath: path)
        case .direction(let direction):
            try? spool.ensureDirection(direction)
        case .rescan:
            log.warning("inotify queue overflowed; rescanning every inbox")
            rescanInboxes()
        case .modelsChanged:
            scheduleModelReload()
        }
    }

    private func claim(direction: String, relativePath: String) {
        guard !lock.withLock({ stopping }) else { return }
        do {
            if let item = try spool.claim(direction: direction, relativePath: relativePath) {
                submit(item)
            }
        } catch {
            log.error("cannot claim inbox/\(direction)/\(relativePath): \(error)")
        }
    }

    private func submit(_ item: WorkItem) {
        scheduler.submit(
            .init(
                id: item.id, priority: .watch, direction: item.direction, label: item.relativePath,
                payload: .watch(item)))
        updateStatus()
    }

    /// Claims a file found by a scan (not announced by inotify) once nobody seems to write it
    /// any more: a file modified within the last `settleSeconds` may still be open for writing, so
    /// it is looked at again later. (If its writer closes it meanwhile, IN_CLOSE_WRITE claims it
    /// first and the later look finds nothing.)
    private func claimWhenSettled(direction: String, relativePath: String) {
        let path = spool.inbox(direction) + "/" + relativePath
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path),
            let modified = attributes[.modificationDate] as? Date
        else { return }
        let age = Date().timeIntervalSince(modified)
        if age >= Daemon.settleSeconds || age < -60 {
            claim(direction: direction, relativePath: relativePath)
            return
        }
        guard !lock.withLock({ stopping }) else { return }
        background.asyncAfter(deadline: .now() + Daemon.settleSeconds - max(0, age) + 0.05) { [weak self] in
            self?.claimWhenSettled(direction: direction, relativePath: relativePath)
        }
    }

    static let settleSeconds = 1.0

    private func rescanInboxes() {
        for direction in spool.inboxDirections() {
            for path in spool.scanInbox(direction) { claimWhenSettled(direction: direction, relativePath: path) }
        }
    }

    private func process(_ item: WorkItem, job: Scheduler.Job) {
        let (config, known) = lock.withLock { () -> (DaemonConfig, Bool) in
            (self.config, scan.directions.contains { $0.name == item.direction })
        }
        guard known else {
            let models = lock.withLock { scan.directions.map(\.name) }
            fail(
                item,
                DaemonError(
                    .noModel,
                    "no model offers the direction \"\(item.direction)\" (known: \(models.isEmpty ? "none" : models.joined(separator: ", "))); import a model for it or move the file to another inbox"
                ))
            return
        }
        let (format, outputName) = OutputNaming.resolve(inputName: item.name, configured: config.outputFormat)
        let options = TranslationOptions(
            format: format, quality: config.quality, memoryLimit: config.memoryLimit, maxPixels: config.maxPixels)
        var temporary: String?
        do {
            if job.cancel.isCancelled { throw DaemonError(.cancelled, "cancelled before it started") }
            let temp = spool.temporaryOutput(for: item, outputName: outputName)
            temporary = temp
            let result = try translate(
                input: item.input, output: temp, direction: item.direction, options: options, cancel: job.cancel)
            // A cancel that came while the image was being translated still keeps it out of the outbox.
            if job.cancel.isCancelled { throw DaemonError(.cancelled, "cancelled on request while it was translated") }
            let written = try spool.commitOutput(
                item, temporary: temp, outputName: outputName, policy: config.onConflict)
            temporary = nil
            try spool.finish(item, keepOriginal: config.keepOriginals)
            lock.withLock { processed += 1 }
            log.info(
                "\(item.direction) \(item.relativePath) \(result.width)x\(result.height) \(Int(result.milliseconds.rounded())) ms -> outbox/\(item.direction)/\(written)"
            )
            hub.publish(
                DaemonEvent(
                    kind: .imageDone, jobId: item.id, jobKind: .watch, direction: item.direction,
                    input: item.relativePath,
                    output: spool.outbox(item.direction) + "/" + written, width: result.width, height: result.height,
                    milliseconds: result.milliseconds))
        } catch {
            if let temporary { FS.remove(temporary) }
            fail(item, Daemon.daemonError(error))
        }
    }

    private func fail(_ item: WorkItem, _ error: DaemonError) {
        lock.withLock { failedCount += 1 }
        do {
            let path = try spool.fail(item, error: error)
            log.warning(
                "\(item.direction) \(item.relativePath) failed (\(error.code.rawValue)): \(error.message) -> \(path)")
        } catch {
            log.error("\(item.direction) \(item.relativePath) failed and could not be moved to failed/: \(error)")
        }
        hub.publish(
            DaemonEvent(
                kind: .imageFailed, jobId: item.id, jobKind: .watch, direction: item.direction,
                input: item.relativePath,
                error: error))
    }

    private func translate(
        input: String, output: String, direction: String, options: TranslationOptions, cancel: CancellationFlag
    ) throws -> TranslationResult {
        try translator.translate(
            input: URL(fileURLWithPath: input), output: URL(fileURLWithPath: output), direction: direction,
            options: options, cancel: cancel)
    }

    static func daemonError(_ error: Error) -> DaemonError {
        if let e = error as? DaemonError { return e }
        if let e = error as? FS.Failure { return DaemonError(.writeFailed, e.description) }
        return DaemonError(.translationFailed, String(describing: error))
    }

    // MARK: Interactive

    private func process(_ job: InteractiveJob, job entry: Scheduler.Job) {
        let started = Date()
        do {
            let reply = try runInteractive(job.request, id: entry.id, cancel: entry.cancel)
            lock.withLock { processed += 1 }
            log.info(
                "\(reply.direction) \(entry.label) \(reply.width)x\(reply.height) \(Int(reply.milliseconds.rounded())) ms -> \(reply.output ?? "<inline>") (interactive)"
            )
            hub.publish(
                DaemonEvent(
                    kind: .imageDone, jobId: entry.id, jobKind: .interactive, direction: reply.direction,
                    input: entry.label,
                    output: reply.output, width: reply.width, height: reply.height, milliseconds: reply.milliseconds))
            job.resolve(.success(reply))
        } catch {
            let e = Daemon.daemonError(error)
            lock.withLock { failedCount += 1 }
            log.warning(
                "\(entry.direction) \(entry.label) failed (\(e.code.rawValue)) after \(Int(Date().timeIntervalSince(started) * 1000)) ms: \(e.message) (interactive)"
            )
            hub.publish(
                DaemonEvent(
                    kind: .imageFailed, jobId: entry.id, jobKind: .interactive, direction: entry.direction,
                    input: entry.label,
                    error: e))
            job.resolve(.failure(e))
        }
    }

    private func runInteractive(_ request: TranslateRequest, id: String, cancel: CancellationFlag) throws
        -> TranslateReply
    {
        let config = currentConfig
        guard lock.withLock({ scan.directions.contains { $0.name == request.direction } }) else {
            throw DaemonError(.notFound, "no model offers the direction \"\(request.direction)\"")
        }
        if cancel.isCancelled { throw DaemonError(.cancelled, "cancelled before it started") }
        let scratch = try spool.interactiveScratch(id: id)
        defer { try? FileManager.default.removeItem(atPath: scratch) }

        let input: String
        if let path = request.input {
            input = path
        } else {
            let name = (request.inputName.map { ($0 as NSString).lastPathComponent } ?? "input.png")
            input = scratch + "/" + (IncomingName.isIgnored(name) ? "input.png" : name)
            try FS.writeAtomically(request.inputBytes ?? Data(), to: input)
        }
        let configured = request.format ?? config.outputFormat
        let format: OutputFormat
        if let output = request.output, configured == .same {
            format =
                OutputNaming.format(forExtension: (output as NSString).pathExtension)
                ?? OutputNaming.resolve(inputName: input, configured: .same).0
        } else {
            format = OutputNaming.resolve(inputName: input, configured: configured).0
        }
        let options = TranslationOptions(
            format: format, quality: request.quality ?? config.quality,
            memoryLimit: request.memoryLimit ?? config.memoryLimit, maxPixels: config.maxPixels)
        let ext = format.fileExtension!

        if let output = request.output {
            let folder = (output as NSString).deletingLastPathComponent
            let temp = (folder.isEmpty ? "." : folder) + "/" + Spool.tempPrefix + id + "." + ext
            do {
                let result = try translate(
                    input: input, output: temp, direction: request.direction, options: options, cancel: cancel)
                if cancel.isCancelled { throw DaemonError(.cancelled, "cancelled on request while it was translated") }
                try FS.fsyncPath(temp)
                if request.overwrite == true {
                    try FS.rename(temp, output)
                } else if !(try FS.moveNoReplace(temp, output)) {
                    throw DaemonError(.badRequest, "\(output) already exists; choose a new name or allow overwriting")
                }
                try? FS.fsyncPath(folder.isEmpty ? "." : folder, directory: true)
                return TranslateReply(
                    id: id, direction: request.direction, output: output, outputBytes: nil, format: format,
                    width: result.width, height: result.height, milliseconds: result.milliseconds)
            } catch {
                FS.remove(temp)
                throw error
            }
        }
        let out = scratch + "/output." + ext
        let result = try translate(
            input: input, output: out, direction: request.direction, options: options, cancel: cancel)
        if cancel.isCancelled { throw DaemonError(.cancelled, "cancelled on request while it was translated") }
        guard let bytes = FileManager.default.contents(atPath: out) else {
            throw DaemonError(.internal, "the translator reported success but wrote no \(out)")
        }
        return TranslateReply(
            id: id, direction: request.direction, output: nil, outputBytes: bytes, format: format, width: result.width,
            height: result.height, milliseconds: result.milliseconds)
    }

    // MARK: Models and configuration

    private func scheduleModelReload() {
        // A model import writes several files; wait until the folder has been quiet for a moment.
        let work = DispatchWorkItem { [weak self] in self?.reloadModels(reason: "models folder changed") }
        lock.withLock {
            pendingModelReload?.cancel()
            pendingModelReload = work
        }
        background.asyncAfter(deadline: .now() + 0.5, execute: work)
    }

    /// Rescans the models folder; creates inboxes for new directions. Returns (all, added, removed).
    @discardableResult
    private func reloadModels(reason: String) -> ReloadReply {
        let newScan: ModelScan
        do {
            newScan = try catalog.scan()
        } catch {
            log.error("cannot read the models folder (\(reason)): \(error); keeping the models loaded before")
            let names = lock.withLock { scan.directions.map(\.name) }
            return ReloadReply(directions: names, added: [], removed: [])
        }
        let old = lock.withLock {
            let old = scan
            scan = newScan
            return old
        }
        for problem in newScan.problems { log.warning("model skipped: \(problem)") }
        let oldNames = Set(old.directions.map(\.name))
        let newNames = newScan.directions.map(\.name)
        for name in newNames {
            do {
                try spool.ensureDirection(name)
            } catch {
                log.error("cannot create the inbox for \(name): \(error)")
            }
        }
        translator.modelsChanged()
        let added = newNames.filter { !oldNames.contains($0) }
        let removed = oldNames.subtracting(newNames).sorted()
        if !added.isEmpty || !removed.isEmpty {
            log.notice(
                "directions (\(reason)): \(newNames.joined(separator: ", "))\(added.isEmpty ? "" : "; new: " + added.joined(separator: ", "))\(removed.isEmpty ? "" : "; gone: " + removed.joined(separator: ", "))"
            )
            hub.publish(DaemonEvent(kind: .directionsChanged, directions: newNames))
            // Files that waited in a new direction's inbox (created by hand before its model) go now.
            for direction in added {
                for path in spool.scanInbox(direction) { claimWhenSettled(direction: direction, relativePath: path) }
            }
        }
        updateStatus()
        return ReloadReply(directions: newNames, added: added, removed: removed)
    }

    private func reloadAll() throws -> ReloadReply {
        notifier.reloading()
        defer { notifier.ready(status: statusLine()) }
        let fresh: DaemonConfig
        do {
            fresh = try reloadConfig()
        } catch {
            log.error("reload: \(error); keeping the current configuration")
            throw DaemonError(.badRequest, "reload failed: \(error)")
        }
        let needRestart = lock.withLock { () -> [String] in
            var changed: [String] = []
            if fresh.root != config.root { changed.append("root") }
            if fresh.modelsDir != config.modelsDir { changed.append("models_dir") }
            if fresh.socket != config.socket { changed.append("socket") }
            if fresh.socketGroup != config.socketGroup { changed.append("socket_group") }
            if fresh.workers != config.workers { changed.append("workers") }
            if fresh.threads != config.threads { changed.append("threads") }
            var applied = fresh
            applied.root = config.root
            applied.modelsDir = config.modelsDir
            applied.socket = config.socket
            applied.socketGroup = config.socketGroup
            applied.workers = config.workers
            applied.threads = config.threads
            config = applied
            logger.logLevel = applied.logLevel
            return changed
        }
        if !needRestart.isEmpty {
            log.warning("reload: \(needRestart.joined(separator: ", ")) changed; restart the daemon to apply")
        }
        return reloadModels(reason: "reload")
    }

    // MARK: Signals, systemd

    private func installSignalHandlers() {
        for sig in [SIGTERM, SIGINT, SIGHUP] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: background)
            source.setEventHandler { [weak self] in
                guard let self else { return }
                if sig == SIGHUP {
                    log.notice("SIGHUP: reloading configuration and models")
                    _ = try? reloadAll()
                } else {
                    requestStop(signalName: sig == SIGTERM ? "SIGTERM" : "SIGINT")
                }
            }
            source.resume()
            signalSources.append(source)
        }
    }

    private func startWatchdog() {
        guard let interval = notifier.watchdogInterval else { return }
        let timer = DispatchSource.makeTimerSource(queue: background)
        timer.schedule(deadline: .now() + interval, repeating: interval)
        timer.setEventHandler { [notifier] in notifier.watchdog() }
        timer.resume()
        watchdogTimer = timer
    }

    private func statusLine() -> String {
        let snapshot = scheduler.snapshot()
        let names = lock.withLock { scan.directions.map(\.name) }
        var counts: [String: Int] = Dictionary(uniqueKeysWithValues: names.map { ($0, 0) })
        for job in snapshot.queued where job.priority == .watch { counts[job.direction, default: 0] += 1 }
        let queues = counts.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        let (done, failed) = lock.withLock { (processed, failedCount) }
        return
            "queued: \(queues.isEmpty ? "no directions" : queues); running \(snapshot.running.count); done \(done), failed \(failed)"
    }

    private func updateStatus() {
        guard notifier.isActive else { return }
        let line = statusLine()
        let changed = lock.withLock {
            defer { lastStatus = line }
            return lastStatus != line
        }
        if changed { notifier.status(line) }
    }

    // MARK: Stop

    private func requestStop(signalName: String) {
        let again = lock.withLock {
            defer { stopRequested = true }
            return stopRequested
        }
        if again {
            log.notice("\(signalName) again: exiting now; unfinished images stay in work/ for the next start")
            exit(0)
        }
        let timeout = Int(currentConfig.stopTimeout)
        log.notice("\(signalName): finishing the images being translated (up to \(timeout) s), then exiting")
        beginStop()
    }

    private func beginStop() {
        let c: CheckedContinuation<Void, Never>? = lock.withLock {
            stopRequested = true
            guard !stopping, stopContinuation != nil else { return nil }
            stopping = true
            let c = stopContinuation
            stopContinuation = nil
            return c
        }
        guard let c else { return }
        notifier.stopping()
        let thread = Thread { [self] in
            watcher?.stop()
            lock.withLock { pendingModelReload?.cancel() }
            for job in scheduler.stop() {
                if case .interactive(let request) = job.payload {
                    request.resolve(
                        .failure(DaemonError(.shuttingDown, "the daemon is stopping; try again after it restarts")))
                }
                // Watch jobs stay in work/ and are re-queued at the next start.
            }
            let deadline = Date().addingTimeInterval(currentConfig.stopTimeout)
            if !scheduler.waitIdle(until: deadline) {
                log.warning(
                    "the current image did not finish in time; it stays in work/ and is translated at the next start")
            }
            watchdogTimer?.cancel()
            hub.finish()
            log.notice("stopped")
            c.resume()
        }
        thread.start()
    }

    // MARK: DaemonControl

    public func status() async -> DaemonStatus {
        let snapshot = scheduler.snapshot()
        let memory = ProcessMemory.read()
        return lock.withLock {
            var queues: [String: Int] = Dictionary(uniqueKeysWithValues: scan.directions.map { ($0.name, 0) })
            for job in snapshot.queued where job.priority == .watch { queues[job.direction, default: 0] += 1 }
            return DaemonStatus(
                version: Daemon.version, pid: getpid(), uptimeSeconds: Date().timeIntervalSince(startedAt),
                root: config.root,
                queues: queues, interactiveQueue: snapshot.queued.filter { $0.priority == .interactive }.count,
                current: snapshot.running.map { $0.info() }, workers: config.workerCount, training: .idle,
                memory: MemoryUse(
                    residentBytes: memory.resident, peakResidentBytes: memory.peak, limitBytes: config.memoryLimit),
                processed: processed, failed: failedCount, stopping: stopping)
        }
    }

    public func models() async -> [ModelInfo] { lock.withLock { scan.models } }

    public func directions() async -> [DirectionInfo] { lock.withLock { scan.directions } }

    public func translate(_ request: TranslateRequest) async throws -> TranslateReply {
        guard (request.input == nil) != (request.inputBytes == nil) else {
            throw DaemonError(.badRequest, "give exactly one of input (a path) or input bytes")
        }
        if let quality = request.quality, !(1...100).contains(quality) {
            throw DaemonError(.badRequest, "quality must be within 1...100, not \(quality)")
        }
        if let input = request.input, !FS.isRegularFile(input) {
            throw DaemonError(.notFound, "input \(input) is not a regular file")
        }
        if let output = request.output {
            let folder = (output as NSString).deletingLastPathComponent
            guard FS.isDirectory(folder.isEmpty ? "." : folder) else {
                throw DaemonError(.notFound, "the output folder \(folder) does not exist")
            }
            if request.overwrite != true && FS.exists(output) {
                throw DaemonError(.badRequest, "\(output) already exists; choose a new name or allow overwriting")
            }
        }
        if lock.withLock({ stopping }) {
            throw DaemonError(.shuttingDown, "the daemon is stopping; try again after it restarts")
        }
        let id = spool.newID()
        let label = request.input ?? "<inline>"
        return try await withCheckedThrowingContinuation { continuation in
            let job = InteractiveJob(request: request, continuation: continuation)
            scheduler.submit(
                .init(
                    id: id, priority: .interactive, direction: request.direction, label: label,
                    payload: .interactive(job)))
            updateStatus()
        }
    }

    public func jobs() async -> [JobInfo] {
        let snapshot = scheduler.snapshot()
        return (snapshot.running + snapshot.queued).map { $0.info() }
    }

    public func cancel(id: String) async -> CancelReply {
        let (outcome, job) = scheduler.cancel(id: id)
        if let job {
            let error = DaemonError(.cancelled, "cancelled on request before it started")
            switch job.payload {
            case .watch(let item): fail(item, error)
            case .interactive(let request): request.resolve(.failure(error))
            }
            updateStatus()
        }
        return CancelReply(id: id, outcome: outcome)
    }

    public func reload() async throws -> ReloadReply {
        try await withCheckedThrowingContinuation { continuation in
            background.async { [self] in
                continuation.resume(with: Result { try reloadAll() })
            }
        }
    }

    public func shutdown() async {
        log.notice("shutdown requested")
        beginStop()
    }

    public func events() -> AsyncStream<DaemonEvent> { hub.subscribe() }
}
