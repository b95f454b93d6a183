import Foundation
import Testing

@testable import Tensor

/// A live `Compute`: every kernel reads its share once when it starts, never runs more workers
/// than that answer, and the next kernel follows a share that changed.
@Suite struct ThreadShareTests {
    @Test func workersNeverExceedTheShare() {
        // (the share's answer, maxThreads, the workers expected)
        for (answer, maxThreads, expected) in [(1, 4, 1), (2, 4, 2), (3, 4, 3), (16, 4, 4), (0, 4, 1)] {
            let share = ScriptedShare { _ in answer }
            let compute = Compute(share: share, maxThreads: maxThreads)
            let probe = WorkerProbe()
            compute.forSlices(64) { worker, _ in probe.work(worker) }
            #expect(probe.workers == expected, "forSlices with a share of \(answer)")
            #expect(probe.peak <= expected)
            let items = WorkerProbe()
            compute.forEach(64) { _ in items.work(0) }
            #expect(items.peak <= expected, "forEach with a share of \(answer)")
            if expected == 1 { #expect(items.threads == [pthread_self()], "one thread: the caller's") }
            #expect(share.reads == 2, "each call reads the share once")
        }
    }

    /// The kernels that split work by the thread count or run in phases read the share once per
    /// call (a share that changes at every read would otherwise give a partition, scratch and
    /// workers that disagree), and compute what a fixed count computes.
    @Test(arguments: [Conv2D.Algorithm.winograd, .im2col, .kn2row])
    func aConvolutionReadsItsShareOncePerCall(_ algorithm: Conv2D.Algorithm) {
        let (cin, cout, h, w) = (32, algorithm == .kn2row ? 8 : 32, 40, 36)
        let x = Tensor.random([1, cin, h, w], seed: 1)
        let dY = Tensor.random([1, cout, h, w], seed: 2)
        let conv = Conv2D(
            weight: .random([cout, cin, 3, 3], seed: 3, scale: 0.1), bias: .random([cout], seed: 4), stride: 1,
            algorithm: algorithm, trainable: true)
        func run(_ compute: Compute) -> [Tensor] {
            let y = conv(x, padding: .reflect(1), compute: compute)
            let dX = Tensor(shape: x.shape)
            conv.inputGradient(
                dY.data, inputHeight: h, inputWidth: w, padding: .reflect(1), into: dX.data, compute: compute)
            let dW = Tensor(shape: conv.weight.shape)
            let dB = Tensor(shape: [cout])
            conv.accumulateWeightGradient(
                input: Planes(x), inputHeight: h, inputWidth: w, padding: .reflect(1), outputGradient: dY.data,
                weightGradient: dW.data, biasGradient: dB.data, compute: compute)
            return [y, dX, dW, dB]
        }
        let fixed = run(Compute(threads: 1))
        // 1, 4, 1, 4, ...: a second read inside a call would see another count.
        let share = ScriptedShare { $0 % 2 == 0 ? 1 : 4 }
        let live = run(Compute(share: share, maxThreads: 4))
        #expect(share.reads == 3, "forward, input gradient, weight gradient: one read each")
        for (a, b) in zip(live, fixed) { #expect(a.maxAbsDifference(b) < 1e-3) }
    }

    /// A forward of eight 3×3 layers (Winograd convolutions, instance norms) whose share drops from
    /// 2 to 1 half-way: the kernels after the drop run on one worker, and the result is the same.
    @Test func aShareThatDropsMidForwardIsFollowedFromTheNextKernel() {
        let layers = (0..<8).map { n in
            Conv2D(weight: .random([32, 32, 3, 3], seed: UInt32(10 + n), scale: 0.1), bias: nil, stride: 1)
        }
        let input = Tensor.random([1, 32, 32, 32], seed: 5)
        let probe = Mutexed<[Int]>([])
        /// Each layer: a convolution, an instance norm, then a probe of the workers the next kernel gets.
        func forward(_ compute: Compute) -> Tensor {
            var y = input
            for conv in layers {
                y = conv(y, padding: .reflect(1), compute: compute)
                y.instanceNorm(activation: .relu, compute: compute)
                let workers = WorkerProbe()
                compute.forSlices(16) { worker, _ in workers.work(worker) }
                probe.update { $0.append(workers.workers) }
            }
            return y
        }
        let fixed = forward(Compute(threads: 2))
        probe.update { $0 = [] }
        // Three reads a layer (convolution, norm, probe): the share drops at layer 4's convolution.
        let share = ScriptedShare { $0 < 12 ? 2 : 1 }
        let live = forward(Compute(share: share, maxThreads: 2))
        #expect(share.reads == 24)
        #expect(probe.value == [2, 2, 2, 2, 1, 1, 1, 1])
        #expect(live.maxAbsDifference(fixed) < 1e-3)
    }
}

/// A share whose answer to its n-th read is `answer(n)`; it counts its reads.
final class ScriptedShare: ThreadShare, @unchecked Sendable {
    private let answer: @Sendable (Int) -> Int
    private let lock = NSLock()
    private var count = 0

    init(_ answer: @escaping @Sendable (Int) -> Int) { self.answer = answer }

    func threadsNow() -> Int {
        lock.withLock {
            count += 1
            return answer(count - 1)
        }
    }

    var reads: Int { lock.withLock { count } }
}

/// What the workers of one parallel call did: which ran, at most how many at once, on which threads.
final class WorkerProbe: @unchecked Sendable {
    private let lock = NSLock()
    private var running = 0
    private var seen: Set<Int> = []
    private var maximum = 0
    private var onThreads: Set<pthread_t> = []

    /// A little work as worker `worker`, long enough for the others to overlap it.
    func work(_ worker: Int) {
        lock.withLock {
            running += 1
            maximum = max(maximum, running)
            seen.insert(worker)
            onThreads.insert(pthread_self())
        }
        usleep(500)
        lock.withLock { running -= 1 }
    }

    var workers: Int { lock.withLock { seen.count } }
    var peak: Int { lock.withLock { maximum } }
    var threads: Set<pthread_t> { lock.withLock { onThreads } }
}

/// A value shared with other threads.
final class Mutexed<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: T
    init(_ value: T) { stored = value }
    var value: T { lock.withLock { stored } }
    func update(_ change: (inout T) -> Void) { lock.withLock { change(&stored) } }
}
