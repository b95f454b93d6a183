import Foundation

/// Decodes samples on a thread of its own, up to `depth` ahead of the trainer, so that reading
/// images runs alongside compute. Samples come in the order (epoch, index), from a given
/// position on, across epoch ends, until `stop()` (or the prefetcher going away).
///
/// Since a sample is a pure function of (seed, epoch, index), what was read ahead and thrown
/// away at a stop changes nothing for a run resumed from the same position.
public final class Prefetcher: @unchecked Sendable {
    public let dataset: UnalignedDataset
    private let queue: Queue

    /// Starts reading sample `index` of `epoch` and what follows.
    public init(dataset: UnalignedDataset, seed: UInt64, epoch: Int, index: Int = 0, depth: Int = 4) {
        precondition(depth >= 1 && index >= 0 && index < dataset.count, "prefetch from \(index) with depth \(depth)")
        self.dataset = dataset
        queue = Queue(depth: depth)
        // The thread holds the queue and the dataset, not this object, so that dropping the
        // prefetcher stops it.
        let thread = Thread { [queue] in
            queue.produce(from: (epoch, index), count: dataset.count) { epoch, index in
                try dataset.sample(seed: seed, epoch: epoch, index: index)
            }
        }
        thread.name = "cyclegand-data"
        thread.start()
    }

    deinit { stop() }

    /// The next sample, waiting for it if it is not decoded yet. Throws the dataset's error when a
    /// domain has no usable image left (every later call throws it too).
    public func next() throws -> Sample { try queue.take() }

    /// Stops the thread and waits for it to finish the sample it is on. `next()` then fails.
    public func stop() { queue.stop() }

    public var skipped: [SkippedFile] { dataset.skipped }
    public var skippedCount: Int { dataset.skippedCount }

    /// The samples between the thread and the trainer, under one condition.
    private final class Queue: @unchecked Sendable {
        private let depth: Int
        private let condition = NSCondition()
        private var ready: [Result<Sample, any Error>] = []
        private var stopping = false
        private var running = true

        init(depth: Int) { self.depth = depth }

        func produce(from start: (epoch: Int, index: Int), count: Int, _ make: (Int, Int) throws -> Sample) {
            var (epoch, index) = start
            defer {
                condition.withLock { running = false }
                condition.broadcast()
            }
            while true {
                let go = condition.withLock {
                    while ready.count >= depth && !stopping { condition.wait() }
                    return !stopping
                }
                guard go else { return }
                let made = Result { try make(epoch, index) }
                condition.withLock { ready.append(made) }
                condition.broadcast()
                if case .failure = made { return }
                index += 1
                if index == count { (epoch, index) = (epoch + 1, 0) }
            }
        }

        func take() throws -> Sample {
            condition.lock()
            defer { condition.unlock() }
            while ready.isEmpty && running && !stopping { condition.wait() }
            guard let first = ready.first else { throw PrefetchStopped() }
            // A failure stays at the head: the data cannot go on past it.
            if case .failure(let error) = first { throw error }
            ready.removeFirst()
            condition.broadcast()
            return try first.get()
        }

        func stop() {
            condition.withLock {
                stopping = true
                condition.broadcast()
                while running { condition.wait() }
                ready.removeAll()
            }
        }
    }
}

/// `Prefetcher.next()` after `stop()`.
public struct PrefetchStopped: Error, CustomStringConvertible {
    public var description: String { "the training data prefetcher was stopped" }
}
