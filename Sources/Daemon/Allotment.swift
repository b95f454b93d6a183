import Foundation
import Tensor

/// The cores and the memory that the work running at the same time shares: images, and at most
/// a few long jobs of lowest priority (fine-tuning) that hold memory for hours.
///
/// A burst of small images goes fastest with one image per core, each on one thread: a 256²
/// image cannot keep two cores busy through every layer, two images on one core each can. A
/// large image should still get the whole machine. So an image's `Grant` is the cores divided
/// among the images running *now*, and it starts only once its memory fits beside the rest:
/// together they never hold more than the limit, and one image alone among images may always
/// start (plan it under `room(limit:)`, so that it fits beside the long jobs). Images start in
/// the order they asked, so a large one waiting for memory is not overtaken for ever by small
/// ones.
///
/// A long job holds its memory from `admitLongJob` to `release`, but its cores are the images':
/// its share (`resume`) blocks while images run or wait, then says how many it may use.
///
/// A grant is a `ThreadShare`: the kernels of `grant.compute` read it each time one starts, so a
/// large image's threads grow when a burst ends and shrink when one starts, and a long job
/// stops at its next kernel, inside a layer, when an image arrives.
public final class Allotment: @unchecked Sendable {
    public let cores: Int
    private let condition = NSCondition()
    // Guarded by `condition`.
    private var images = 0
    private var imagesWaiting = 0
    private var longJobs = 0
    private var longJobBytes = 0
    private var bytesHeld = 0
    private var nextTicket = 0
    private var serving = 0

    public init(cores: Int) {
        self.cores = max(1, cores)
    }

    /// What one piece of work was given; hand it back to `release`.
    public final class Grant: ThreadShare, @unchecked Sendable {
        enum Kind { case image, longJob }
        let kind: Kind
        let bytes: Int
        private unowned let allotment: Allotment

        init(kind: Kind, bytes: Int, allotment: Allotment) {
            self.kind = kind
            self.bytes = bytes
            self.allotment = allotment
        }

        /// The threads this work may use now: an image's share of the cores among the images
        /// running; for a long job, every core when no image runs or waits, else none.
        public var threads: Int { allotment.condition.withLock { allotment.threads(kind) } }

        /// An image's `threads`; a long job's waits while images run or wait (`resume`).
        public func threadsNow() -> Int {
            switch kind {
            case .image: threads
            case .longJob: allotment.resume(self)
            }
        }

        /// Kernels that follow this grant: each reads `threadsNow()` when it starts.
        public var compute: Compute { Compute(share: self, maxThreads: allotment.cores) }
    }

    /// The share of an image about to join the ones running (its generator being built): the
    /// cores divided among them and it.
    public var joining: any ThreadShare { Joining(allotment: self) }

    private struct Joining: ThreadShare {
        let allotment: Allotment
        func threadsNow() -> Int { allotment.condition.withLock { max(1, allotment.cores / (allotment.images + 1)) } }
    }

    /// Blocks until an image's `bytes` fit beside the work running under `limit` (at once when
    /// no other image runs), then returns its grant.
    public func admit(bytes: Int, limit: Int) -> Grant {
        condition.lock()
        defer { condition.unlock() }
        let ticket = nextTicket
        nextTicket += 1
        imagesWaiting += 1
        while serving != ticket || (images > 0 && bytesHeld + bytes > limit) {
            condition.wait()
        }
        imagesWaiting -= 1
        serving += 1
        images += 1
        bytesHeld += bytes
        condition.broadcast()
        return Grant(kind: .image, bytes: bytes, allotment: self)
    }

    /// Blocks until a long job's `bytes` fit beside the work running under `limit` (at once when
    /// nothing runs), then returns its grant. It may not use any core before `resume`.
    public func admitLongJob(bytes: Int, limit: Int) -> Grant {
        condition.lock()
        defer { condition.unlock() }
        while images + imagesWaiting + longJobs > 0 && bytesHeld + bytes > limit {
            condition.wait()
        }
        longJobs += 1
        longJobBytes += bytes
        bytesHeld += bytes
        condition.broadcast()
        return Grant(kind: .longJob, bytes: bytes, allotment: self)
    }

    /// For a long job between its steps: waits while images run or wait (their cores come
    /// first), then returns the threads its next step may use.
    public func resume(_ grant: Grant) -> Int {
        condition.lock()
        defer { condition.unlock() }
        while threads(grant.kind) == 0 { condition.wait() }
        return threads(grant.kind)
    }

    public func release(_ grant: Grant) {
        condition.lock()
        switch grant.kind {
        case .image: images -= 1
        case .longJob:
            longJobs -= 1
            longJobBytes -= grant.bytes
        }
        bytesHeld -= grant.bytes
        condition.broadcast()
        condition.unlock()
    }

    /// The memory an image may plan for under `limit`: what the long jobs leave of it.
    public func room(limit: Int) -> Int {
        condition.withLock { max(0, limit - longJobBytes) }
    }

    /// True while images run or wait: a long job is lending them its cores.
    public var imagesBusy: Bool { condition.withLock { images + imagesWaiting > 0 } }

    /// Images and long jobs admitted and not yet released.
    public var inFlight: Int { condition.withLock { images + longJobs } }

    /// Called with `condition` held.
    private func threads(_ kind: Grant.Kind) -> Int {
        switch kind {
        case .image: max(1, cores / max(1, images))
        case .longJob: images + imagesWaiting > 0 ? 0 : max(1, cores / max(1, longJobs))
        }
    }
}
