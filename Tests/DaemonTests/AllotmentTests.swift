import Foundation
import Testing

@testable import Daemon

/// Admits `bytes` on a thread of its own; `granted` is signalled once it got in.
private final class Admission: @unchecked Sendable {
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
