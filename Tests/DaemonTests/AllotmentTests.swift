import Foundation
import Tensor
import Testing

@testable import Daemon

/// Admits `bytes` on a thread of its own; `granted` is signalled once it got in.
final class Admission: @unchecked Sendable {
    let granted = DispatchSemaphore(value: 0)
    private(set) var grant: Allotment.Grant?

    init(_ allotment: Allotment, bytes: Int, limit: Int) {
        Thread.detachNewThread { [self] in
            grant = allotment.admit(bytes: bytes, limit: limit)
            granted.signal()
        }
    }

    /// True when admitted within `seconds`.
    func admitted(within seconds: Double) -> Bool { granted.wait(timeout: .now() + seconds) == .success }
}

@Suite struct AllotmentTests {
    @Test func aLoneImageGetsEveryCoreAndOthersShareThem() {
        let allotment = Allotment(cores: 4)
        let first = allotment.admit(bytes: 10, limit: 100)
        #expect(first.threads == 4)
        let second = allotment.admit(bytes: 10, limit: 100)
        #expect(second.threads == 2)
        let third = allotment.admit(bytes: 10, limit: 100)
        #expect(third.threads == 1)
        for grant in [first, second, third] { allotment.release(grant) }
        #expect(allotment.inFlight == 0)
        #expect(allotment.admit(bytes: 10, limit: 100).threads == 4)
    }

    @Test func anImageWaitsUntilItsMemoryFits() {
        let allotment = Allotment(cores: 2)
        let large = allotment.admit(bytes: 80, limit: 100)
        let waiting = Admission(allotment, bytes: 30, limit: 100)
        #expect(!waiting.admitted(within: 0.3))
        allotment.release(large)
        #expect(waiting.admitted(within: 10))
        #expect(waiting.grant?.threads == 2)
    }

    @Test func anImageOverTheLimitRunsAlone() {
        let allotment = Allotment(cores: 2)
        let huge = allotment.admit(bytes: 500, limit: 100)
        #expect(huge.threads == 2)
        let small = Admission(allotment, bytes: 1, limit: 100)
        #expect(!small.admitted(within: 0.3))
        allotment.release(huge)
        #expect(small.admitted(within: 10))
    }

    @Test func imagesStartInTheOrderTheyAsked() {
        let allotment = Allotment(cores: 2)
        let running = allotment.admit(bytes: 60, limit: 100)
        let large = Admission(allotment, bytes: 60, limit: 100)
        Thread.sleep(forTimeInterval: 0.1)
        // This one would fit now, but the large one asked first.
        let small = Admission(allotment, bytes: 10, limit: 100)
        #expect(!small.admitted(within: 0.3))
        allotment.release(running)
        #expect(large.admitted(within: 10))
        #expect(small.admitted(within: 10))
        #expect(small.grant?.threads == 1)
    }
}

/// Grants that follow the work running now, and the long job (fine-tuning) beside images.
@Suite struct LongJobAllotmentTests {
    @Test func grantsFollowTheWorkRunningNowNotTheOrderOfAdmission() {
        let allotment = Allotment(cores: 4)
        let first = allotment.admit(bytes: 10, limit: 100)
        let second = allotment.admit(bytes: 10, limit: 100)
        let third = allotment.admit(bytes: 10, limit: 100)
        #expect([first, second, third].map(\.threads) == [1, 1, 1])
        allotment.release(third)
        #expect([first, second].map(\.threads) == [2, 2])
        allotment.release(second)
        #expect(first.threads == 4)
        allotment.release(first)
    }

    @Test func aLongJobHoldsMemoryAndGivesItsCoresBackWhileImagesWait() {
        let allotment = Allotment(cores: 2)
        let long = allotment.admitLongJob(bytes: 60, limit: 100)
        #expect(allotment.resume(long) == 2 && long.threads == 2)
        // Images are planned under what the long job leaves.
        #expect(allotment.room(limit: 100) == 40)
        let image = allotment.admit(bytes: 30, limit: 100)
        #expect(long.threads == 0 && image.threads == 2)
        // The long job's next step waits until the image is done, then has every core again.
        let resumed = DispatchSemaphore(value: 0)
        let threads = Mutexed(0)
        Thread.detachNewThread {
            threads.set(allotment.resume(long))
            resumed.signal()
        }
        #expect(resumed.wait(timeout: .now() + 0.3) == .timedOut)
        allotment.release(image)
        #expect(resumed.wait(timeout: .now() + 10) == .success)
        #expect(threads.value == 2)
        // A second image that does not fit beside the long job and the first waits for memory.
        let first = allotment.admit(bytes: 30, limit: 100)
        let waiting = Admission(allotment, bytes: 30, limit: 100)
        #expect(!waiting.admitted(within: 0.3))
        #expect(long.threads == 0, "an image waits: the long job has no core")
        allotment.release(first)
        #expect(waiting.admitted(within: 10))
        allotment.release(waiting.grant!)
        allotment.release(long)
        #expect(allotment.inFlight == 0 && allotment.room(limit: 100) == 100)
    }

    @Test func anImagesKernelsFollowTheImagesRunningNow() {
        let allotment = Allotment(cores: 4)
        let large = allotment.admit(bytes: 10, limit: 100)
        let compute = large.compute
        #expect(compute.threads == 4 && compute.maxThreads == 4)
        #expect(allotment.joining.threadsNow() == 2, "a generator built beside one image gets half")
        let burst = (0..<3).map { _ in allotment.admit(bytes: 10, limit: 100) }
        #expect(compute.threads == 1, "a burst starts: the large image's next kernel shrinks")
        allotment.release(burst[0])
        #expect(compute.threads == 1)
        for grant in burst.dropFirst() { allotment.release(grant) }
        #expect(compute.threads == 4, "the burst ends: it grows again")
        allotment.release(large)
    }

    @Test func aLongJobsKernelWaitsWhileAnImageRunsAndResumesAfterIt() {
        let allotment = Allotment(cores: 2)
        let long = allotment.admitLongJob(bytes: 10, limit: 100)
        let slot = LongJobSlot(grant: long)
        #expect(slot.compute.threads == 2, "alone, the long job has every core")
        let image = allotment.admit(bytes: 10, limit: 100)
        #expect(image.compute.threads == 2, "an image comes first")
        // The long job's next kernel does not start while the image runs ...
        let finished = DispatchSemaphore(value: 0)
        let workers = Mutexed(Set<Int>())
        Thread.detachNewThread {
            slot.compute.forSlices(8) { worker, _ in workers.update { $0.insert(worker) } }
            finished.signal()
        }
        #expect(finished.wait(timeout: .now() + 0.3) == .timedOut)
        #expect(workers.value.isEmpty)
        // ... and runs on every core once it is done.
        allotment.release(image)
        #expect(finished.wait(timeout: .now() + 10) == .success)
        #expect(workers.value == [0, 1])
        allotment.release(long)
    }

    @Test func aLongJobWaitsForItsMemory() {
        let allotment = Allotment(cores: 2)
        let image = allotment.admit(bytes: 70, limit: 100)
        let long = LongAdmission(allotment, bytes: 50, limit: 100)
        #expect(!long.admitted(within: 0.3))
        allotment.release(image)
        #expect(long.admitted(within: 10))
    }
}

/// A value shared with another thread.
final class Mutexed<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: T
    init(_ value: T) { stored = value }
    var value: T { lock.withLock { stored } }
    func set(_ value: T) { lock.withLock { stored = value } }
    func update(_ change: (inout T) -> Void) { lock.withLock { change(&stored) } }
}

/// Admits a long job on a thread of its own.
private final class LongAdmission: @unchecked Sendable {
    let granted = DispatchSemaphore(value: 0)

    init(_ allotment: Allotment, bytes: Int, limit: Int) {
        Thread.detachNewThread { [self] in
            _ = allotment.admitLongJob(bytes: bytes, limit: limit)
            granted.signal()
        }
    }

    func admitted(within seconds: Double) -> Bool { granted.wait(timeout: .now() + seconds) == .success }
}
