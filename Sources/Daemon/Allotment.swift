import Foundation

/// The cores and the memory that the images translated at the same time share.
///
/// A burst of small images goes fastest with one image per core, each on one thread: a
/// 256² image cannot keep two cores busy through every layer, two images on one core each
/// can. A large image should still get the whole machine. So each image, when it starts,
/// gets the cores divided among the images running then (itself included), and it starts
/// only once its memory fits beside theirs: together they never hold more than the memory
/// limit, and one image alone may always use all of it. Images start in the order they
/// asked, so a large one waiting for memory is not overtaken for ever by small ones.
public final class Allotment: @unchecked Sendable {
    public let cores: Int
    private let condition = NSCondition()
    private var running = 0
    private var bytesHeld = 0
    private var nextTicket = 0
    private var serving = 0

    public init(cores: Int) {
        self.cores = max(1, cores)
    }

    /// What one image was given; hand it back to `release`.
    public struct Grant: Sendable {
        public let threads: Int
        let bytes: Int
    }

    /// Blocks until `bytes` fit beside the images running under `limit` (at once when none
    /// runs), then returns the threads this image may use.
    public func admit(bytes: Int, limit: Int) -> Grant {
        condition.lock()
        defer { condition.unlock() }
        let ticket = nextTicket
        nextTicket += 1
        while serving != ticket || (running > 0 && bytesHeld + bytes > limit) {
            condition.wait()
        }
        serving += 1
        running += 1
        bytesHeld += bytes
        condition.broadcast()
        return Grant(threads: max(1, cores / running), bytes: bytes)
    }

    public func release(_ grant: Grant) {
        condition.lock()
        running -= 1
        bytesHeld -= grant.bytes
        condition.broadcast()
        condition.unlock()
    }

    /// Images admitted and not yet released.
    public var inFlight: Int { condition.withLock { running } }
}
