import Foundation

/// The worker threads: each takes the next job from the run queue, runs it and takes the next,
/// until the queue stops (`Scheduler.stop()`), when the threads end by themselves.
final class Workers: @unchecked Sendable {
    private var threads: [Thread] = []

    /// Starts `count` threads (at least one) that hand each job to `run`.
    init(count: Int, scheduler: Scheduler, run: @escaping @Sendable (Scheduler.Job) -> Void) {
        for n in 0..<max(1, count) {
            let thread = Thread {
                while let job = scheduler.next() {
                    run(job)
                    scheduler.finished(job)
                }
            }
            thread.name = "cyclegand-worker-\(n)"
            // The network code may recurse or keep large frames; give it a main-thread-sized stack.
            thread.stackSize = 8 << 20
            threads.append(thread)
            thread.start()
        }
    }
}
