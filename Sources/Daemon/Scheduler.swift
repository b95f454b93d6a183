import Foundation

/// The run queue: interactive requests before watch-folder files before long jobs (training),
/// first come first served within a priority. Worker threads block in `next(_:)`, the image
/// workers for images and one thread for long jobs; everything else only enqueues, cancels or
/// looks.
final class Scheduler: @unchecked Sendable {
    enum Priority: Int, CaseIterable {
        case interactive = 0
        case watch = 1
        case training = 2
    }

    /// What a worker thread takes: images (interactive, then watch folders) or long jobs.
    enum Lane {
        case images, longJobs

        func takes(_ priority: Priority) -> Bool { (priority == .training) == (self == .longJobs) }
    }

    final class Job: @unchecked Sendable {
        enum Payload {
            case watch(WorkItem)
            case interactive(InteractiveJob)
            case long(LongJob)
        }
        let id: String
        let priority: Priority
        let direction: String
        /// What `jobs` shows as the input: the inbox-relative path or the request's input.
        let label: String
        let payload: Payload
        let queuedAt = Date()
        let cancel = CancellationFlag()
        // Guarded by the scheduler's lock.
        fileprivate(set) var startedAt: Date?

        init(id: String, priority: Priority, direction: String, label: String, payload: Payload) {
            self.id = id
            self.priority = priority
            self.direction = direction
            self.label = label
            self.payload = payload
        }
    }

    private let condition = NSCondition()
    private var queues: [[Job]] = Priority.allCases.map { _ in [] }
    private var running: [String: Job] = [:]
    private var stopping = false

    func submit(_ job: Job) {
        condition.lock()
        queues[job.priority.rawValue].append(job)
        // Every waiting worker looks: one woken alone might be of the other lane.
        condition.broadcast()
        condition.unlock()
    }

    /// The next job to run, or nil once `stop()` was called (queued jobs then stay where they
    /// are: watch files in work/ for the next start, interactive ones are failed by the caller).
    func next(_ lane: Lane = .images) -> Job? {
        condition.lock()
        defer { condition.unlock() }
        while true {
            if stopping { return nil }
            if let p = Priority.allCases.first(where: { lane.takes($0) && !queues[$0.rawValue].isEmpty })?.rawValue {
                let job = queues[p].removeFirst()
                job.startedAt = Date()
                running[job.id] = job
                return job
            }
            condition.wait()
        }
    }

    /// Flags every running job of `priority` as cancelled (a stopping daemon's long jobs).
    func cancelRunning(_ priority: Priority) {
        condition.withLock {
            for job in running.values where job.priority == priority { job.cancel.cancel() }
        }
    }

    func finished(_ job: Job) {
        condition.lock()
        running[job.id] = nil
        condition.broadcast()
        condition.unlock()
    }

    /// Removes a queued job (returned, so the caller can settle it) or flags a running one.
    func cancel(id: String) -> (CancelReply.Outcome, Job?) {
        condition.lock()
        defer { condition.unlock() }
        for p in queues.indices {
            if let i = queues[p].firstIndex(where: { $0.id == id }) {
                return (.cancelled, queues[p].remove(at: i))
            }
        }
        if let job = running[id] {
            job.cancel.cancel()
            return (.cancelRequested, nil)
        }
        return (.notFound, nil)
    }

    struct Snapshot {
        var queued: [Job]
        var running: [Job]
    }

    func snapshot() -> Snapshot {
        condition.lock()
        defer { condition.unlock() }
        return Snapshot(queued: queues.flatMap { $0 }, running: running.values.sorted { $0.id < $1.id })
    }

    /// Stops handing out jobs and returns the ones still queued.
    func stop() -> [Job] {
        condition.lock()
        stopping = true
        let left = queues.flatMap { $0 }
        queues = Priority.allCases.map { _ in [] }
        condition.broadcast()
        condition.unlock()
        return left
    }

    /// Waits until no job is running or the deadline passes; true when idle.
    func waitIdle(until deadline: Date) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while !running.isEmpty {
            if !condition.wait(until: deadline) { return running.isEmpty }
        }
        return true
    }
}

extension Scheduler.Job {
    var kind: JobInfo.Kind {
        switch priority {
        case .interactive: .interactive
        case .watch: .watch
        case .training: .training
        }
    }

    func info() -> JobInfo {
        JobInfo(
            id: id, kind: kind,
            state: startedAt == nil ? .queued : .running, direction: direction, input: label,
            queuedAt: queuedAt, startedAt: startedAt)
    }
}

/// An interactive request waiting for its worker; the worker resumes the caller.
final class InteractiveJob: @unchecked Sendable {
    let request: TranslateRequest
    /// Hears the translator's progress (0 to 1).
    let progress: @Sendable (Double) -> Void
    private let lock = NSLock()
    private var continuation: CheckedContinuation<TranslateReply, Error>?

    init(
        request: TranslateRequest, progress: @escaping @Sendable (Double) -> Void,
        continuation: CheckedContinuation<TranslateReply, Error>
    ) {
        self.request = request
        self.progress = progress
        self.continuation = continuation
    }

    /// Resumes the waiting caller once; later calls do nothing.
    func resolve(_ result: Result<TranslateReply, Error>) {
        let c = lock.withLock {
            let c = continuation
            continuation = nil
            return c
        }
        c?.resume(with: result)
    }
}
