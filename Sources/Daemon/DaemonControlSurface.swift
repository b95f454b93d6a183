import FileOutput
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The daemon's control surface: what the socket server, the CLI and tests call. Requests are
/// checked here, queued on the run queue and answered by the workers (`ImageJobs`).
extension Daemon: DaemonControl {
    public func status() async -> DaemonStatus {
        let snapshot = scheduler.snapshot()
        let memory = ProcessMemory.read()
        let config = settings.config
        return DaemonStatus(
            version: Daemon.version, pid: getpid(), uptimeSeconds: Date().timeIntervalSince(startedAt),
            root: config.root, queues: status.queues(snapshot),
            interactiveQueue: snapshot.queued.filter { $0.priority == .interactive }.count,
            current: snapshot.running.map { $0.info() }, workers: config.workerCount, training: .idle,
            memory: MemoryUse(
                residentBytes: memory.resident, peakResidentBytes: memory.peak, limitBytes: config.memoryLimit),
            processed: status.processed, failed: status.failed, stopping: isStopping)
    }

    public func models() async -> [ModelInfo] { models.models }

    public func directions() async -> [DirectionInfo] { models.directions }

    public func translate(_ request: TranslateRequest) async throws -> TranslateReply {
        try await translate(request, progress: { _ in })
    }

    public func translate(
        _ request: TranslateRequest, progress: @escaping @Sendable (TranslationProgress) -> Void
    ) async throws -> TranslateReply {
        if let problem = request.quality.flatMap(Quality.problem) { throw DaemonError(.badRequest, problem) }
        if isStopping {
            throw DaemonError(.shuttingDown, "the daemon is stopping; try again after it restarts")
        }
        let id = spool.newID()
        let label = "<inline>"
        progress(TranslationProgress(job: id, fraction: 0))
        return try await withCheckedThrowingContinuation { continuation in
            let job = InteractiveJob(
                request: request, progress: { progress(TranslationProgress(job: id, fraction: $0)) },
                continuation: continuation)
            scheduler.submit(
                .init(
                    id: id, priority: .interactive, direction: request.direction, label: label,
                    payload: .interactive(job)))
            status.update()
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
            case .watch(let item): jobs.fail(item, error)
            case .interactive(let request): request.resolve(.failure(error))
            case .long: settings.log.notice("long job \(id) (\(job.label)) cancelled before it started")
            }
            status.update()
        }
        return CancelReply(id: id, outcome: outcome)
    }

    public func reload() async throws -> ReloadReply {
        try await reloadInBackground()
    }

    public func shutdown() async {
        log.notice("shutdown requested")
        beginStop()
    }

    public func events() -> AsyncStream<DaemonEvent> { hub.subscribe() }

    /// Queues a long job (fine-tuning) behind every image; returns its id for `jobs` and `cancel`.
    public func submit(_ long: LongJob) throws -> String {
        if isStopping { throw DaemonError(.shuttingDown, "the daemon is stopping; try again after it restarts") }
        let id = spool.newID()
        scheduler.submit(.init(id: id, priority: .training, direction: "", label: long.label, payload: .long(long)))
        status.update()
        return id
    }
}
