import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The daemon's fine-tune job, one at a time: started by `finetune` (or found unfinished in a
/// model's folder at start), run as the run queue's long job, steered by `training` requests, and
/// reported in `status`, in events and on systemd's STATUS= line.
///
/// Who may steer it: the uid that started it, or the daemon's own.
final class TrainingJobs: @unchecked Sendable {
    /// Room kept for one image beside a training job: a 512² image whole, or any image streamed
    /// in bands (docs/DAEMON.md, memory).
    static let imageReserve = 256 << 20

    let engine: TrainingEngine
    private let settings: Settings
    private let hub: EventHub
    private let allotment: Allotment
    private let servedVersion: @Sendable (String) -> Int?
    private let published: @Sendable (String) -> Void
    /// Tells systemd's STATUS= line (set once, by the daemon, after both exist).
    private let statusChanged = NSLock()
    private var onStatusChange: (@Sendable () -> Void)?
    /// Held through `prepare`, so that two requests at once cannot both pass the one-job check.
    private let starting = NSLock()
    private let lock = NSLock()
    // Guarded by `lock`.
    private var current: (id: String, request: FineTuneRequest, control: TrainingJobControl)?

    init(
        engine: TrainingEngine, settings: Settings, hub: EventHub, allotment: Allotment,
        servedVersion: @escaping @Sendable (String) -> Int?, published: @escaping @Sendable (String) -> Void
    ) {
        self.engine = engine
        self.settings = settings
        self.hub = hub
        self.allotment = allotment
        self.servedVersion = servedVersion
        self.published = published
    }

    /// Checks the request and prepares its job; `submit` queues it. Throws `busy` while another
    /// runs, and says what memory a job needs when it cannot fit beside an image.
    func prepare(_ request: FineTuneRequest, id: String, isStopping: @escaping @Sendable () -> Bool) throws
        -> LongJob
    {
        // A malformed request hears what is wrong with it, whether or not a job runs.
        let bytes = try engine.check(request)
        starting.lock()
        defer { starting.unlock() }
        if let running = lock.withLock({ current }), !running.control.snapshot.state.isOver {
            throw DaemonError(
                .busy,
                "a fine-tune job is running already (\(running.id), model \(running.request.model)); "
                    + "one runs at a time: `training stop` ends it")
        }
        let limit = settings.config.memoryLimit
        if limit > 0, UInt64(bytes + Self.imageReserve) > limit {
            throw DaemonError(
                .tooLarge,
                "this fine-tune needs about \(bytes >> 20) MiB, and an image beside it \(Self.imageReserve >> 20) MiB, "
                    + "over the daemon's memory_limit of \(limit >> 20) MiB: raise memory_limit in the daemon's "
                    + "configuration (then `reload`), or lower crop_size")
        }
        var status = TrainingJobStatus(state: .queued)
        status.id = id
        status.model = request.model
        status.owner = request.owner
        let control = TrainingJobControl(status: status) { [weak self] s, event in self?.changed(s, event) }
        lock.withLock { current = (id, request, control) }
        return FineTuneJob(
            id: id, request: request, bytes: bytes, engine: engine, control: control, settings: settings,
            isStopping: isStopping)
    }

    /// What `status` shows: the job now (or the last one, done or failed), with the version served.
    func status() -> TrainingJobStatus {
        guard let job = lock.withLock({ current }) else { return .idle }
        var s = job.control.snapshot
        if s.state == .running, allotment.imagesBusy { s.state = .yielding }
        s.servedVersion = servedVersion(job.request.model)
        return s
    }

    /// `training` {action}: pause, resume, stop (publishing unless `publish` is false) or publish.
    func act(_ action: String, publish: Bool, peer uid: UInt32) throws -> TrainingJobStatus {
        guard let job = lock.withLock({ current }) else {
            throw DaemonError(.notFound, "no fine-tune job is running (`finetune` starts one)")
        }
        if action != "status" {
            guard uid == job.request.owner || uid == getuid() else {
                throw DaemonError(
                    .forbidden,
                    "job \(job.id) was started by uid \(job.request.owner); only it or the daemon's uid may \(action) it"
                )
            }
            guard !job.control.snapshot.state.isOver else {
                throw DaemonError(.notFound, "job \(job.id) has ended (\(job.control.snapshot.state.rawValue))")
            }
        }
        switch action {
        case "status": break
        case "pause": job.control.pause()
        case "resume": job.control.resume()
        case "stop": job.control.stop(publish: publish)
        case "publish": job.control.publish()
        default:
            throw DaemonError(
                .badRequest, "training: unknown action '\(action)'; one of status, pause, resume, stop, publish")
        }
        return status()
    }

    /// The systemd STATUS= part: "fine-tune horse2zebra epoch 3/200 it 1200 ETA 2h".
    func line() -> String? {
        let s = status()
        guard s.state != .idle, let model = s.model else { return nil }
        var parts = ["fine-tune \(model) \(s.state.rawValue)"]
        if let e = s.epoch, let last = s.lastEpoch { parts.append("epoch \(e)/\(last)") }
        if let i = s.iterations { parts.append("it \(i)" + (s.plannedIterations.map { "/\($0)" } ?? "")) }
        if let eta = s.etaSeconds { parts.append("ETA \(Int(eta / 60)) min") }
        return parts.joined(separator: " ")
    }

    func notifyStatus(_ body: @escaping @Sendable () -> Void) {
        statusChanged.withLock { onStatusChange = body }
    }

    private func changed(_ s: TrainingJobStatus, _ event: DaemonEvent.Kind?) {
        if event == .modelPublished, let model = s.model { published(model) }
        statusChanged.withLock { onStatusChange }?()
        guard let event else { return }
        var shown = s
        if let model = s.model { shown.servedVersion = servedVersion(model) }
        hub.publish(DaemonEvent(kind: event, jobId: s.id, jobKind: .training, training: shown))
    }
}

extension TrainingJobStatus.State {
    var isOver: Bool { self == .done || self == .failed || self == .idle }
}

/// The long job that runs one fine-tune in the run queue's long-job lane.
private struct FineTuneJob: LongJob {
    let id: String
    let request: FineTuneRequest
    let bytes: Int
    let engine: TrainingEngine
    let control: TrainingJobControl
    let settings: Settings
    let isStopping: @Sendable () -> Bool

    var label: String { "finetune \(request.model)" }

    func run(slot: LongJobSlot, cancel: CancellationFlag) throws {
        control.started(cancel: cancel)
        do {
            let how = try engine.run(request, id: id, slot: slot, control: control)
            if isStopping() {
                // Checkpointed; the next start continues it.
                control.ended(.stopping, message: "checkpointed as the daemon stopped; it continues after a restart")
                settings.log.notice("fine-tune \(id) of \(request.model) checkpointed for the restart")
                return
            }
            engine.finish(model: request.model)
            control.ended(.done, message: how)
            settings.log.notice("fine-tune \(id) of \(request.model): \(how)")
        } catch {
            engine.finish(model: request.model)
            let message = (error as? DaemonError)?.message ?? "\(error)"
            control.ended(.failed, message: message)
            settings.log.error("fine-tune \(id) of \(request.model) failed: \(message)")
            throw error
        }
    }
}
