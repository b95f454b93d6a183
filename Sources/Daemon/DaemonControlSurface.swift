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
            current: snapshot.running.map { $0.info() }, workers: config.workerCount,
            training: training?.status() ?? .idle,
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

    public func finetune(_ request: FineTuneRequest) async throws -> TrainingJobStatus {
        guard let training else { throw DaemonError(.unsupported, "this daemon was started without training support") }
        if isStopping { throw DaemonError(.shuttingDown, "the daemon is stopping; try again after it restarts") }
        let id = spool.newID()
        let job = try training.prepare(request, id: id) { [weak self] in self?.isStopping ?? true }
        _ = try submit(job, id: id)
        log.notice("fine-tune \(id) of \(request.model) queued for uid \(request.owner)")
        return training.status()
    }

    public func training(action: String, publish: Bool, peer: UInt32) async throws -> TrainingJobStatus {
        guard let training else { throw DaemonError(.unsupported, "this daemon was started without training support") }
        let status = try training.act(action, publish: publish, peer: peer)
        if action != "status" { log.notice("training \(action) by uid \(peer)") }
        self.status.update()
        return status
    }

    public func rollback(model: String, version: Int) async throws -> Int {
        guard let training else { throw DaemonError(.unsupported, "this daemon was started without training support") }
        let now = try training.engine.rollback(model: model, version: version)
        models.reload(reason: "rollback of \(model) to version \(version)")
        log.notice("\(model) rolled back to version \(now)")
        return now
    }

    public func uploadTrainingImage(model: String, domain: String, name: String, bytes: Data, clear: Bool)
        async throws -> Int
    {
        guard let training else { throw DaemonError(.unsupported, "this daemon was started without training support") }
        let s = training.status()
        if s.model == model, !s.state.isOver {
            throw DaemonError(
                .busy, "a fine-tune of \(model) is running (\(s.id ?? "")); upload its images before it starts")
        }
        return try training.engine.storeUpload(model: model, domain: domain, name: name, bytes: bytes, clear: clear)
    }

    /// Queues a long job (fine-tuning) behind every image; returns its id for `jobs` and `cancel`.
    public func submit(_ long: LongJob, id: String? = nil) throws -> String {
        if isStopping { throw DaemonError(.shuttingDown, "the daemon is stopping; try again after it restarts") }
        let id = id ?? spool.newID()
        scheduler.submit(.init(id: id, priority: .training, direction: "", label: long.label, payload: .long(long)))
        status.update()
        return id
    }
}
