import Foundation

/// The worker threads: each takes the next job from the run queue, runs it and takes the next,
/// until the queue stops (`Scheduler.stop()`), when the threads end by themselves. `count`
/// threads take images; one more takes long jobs, so that a fine-tuning run never holds an
/// image's thread.
final class Workers: @unchecked Sendable {
    private var threads: [Thread] = []

    /// Starts `count` image threads (at least one) and the long jobs' thread, which hand each
    /// job to `run`.
    init(count: Int, scheduler: Scheduler, run: @escaping @Sendable (Scheduler.Job) -> Void) {
        let lanes = Array(repeating: Scheduler.Lane.images, count: max(1, count)) + [.longJobs]
        for (n, lane) in lanes.enumerated() {
            let thread = Thread {
                while let job = scheduler.next(lane) {
                    run(job)
                    scheduler.finished(job)
                }
            }
            thread.name = lane == .images ? "cyclegand-worker-\(n)" : "cyclegand-long-jobs"
            // The network code may recurse or keep large frames; give it a main-thread-sized stack.
            thread.stackSize = 8 << 20
            threads.append(thread)
            thread.start()
        }
    }
}
