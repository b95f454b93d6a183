import Dispatch

/// A share of the cores that may change while it is used: an image's among the images running
/// now, a long job's that is nothing while images run or wait. Kernels ask it once when they
/// start (`Compute.now()`), so a grant follows the work running at each kernel, never mid-kernel.
public protocol ThreadShare: Sendable {
    /// The threads the caller may use now (it is clamped to at least 1). May block until there
    /// are some: a long job yields its cores that way, inside a layer.
    func threadsNow() -> Int
}

/// How many threads the kernels use: a fixed count, or a live `ThreadShare` read when a kernel
/// starts. The kernels split work themselves and call OpenBLAS single-threaded from each worker,
/// so that im2col, the GEMMs and the transforms all run in parallel with no serial phase between
/// them. A kernel that partitions by `threads` or runs more than one parallel phase takes
/// `now()` first, so that its partition, its per-worker scratch and its workers agree.
public struct Compute: Sendable {
    /// The most threads this ever uses (what per-worker scratch is sized for).
    public let maxThreads: Int
    private let fixed: Int
    private let share: (any ThreadShare)?

    public init(threads: Int? = nil) {
        let cores = max(1, sysconfThreads())
        fixed = max(1, min(threads ?? cores, 256))
        maxThreads = fixed
        share = nil
    }

    /// Threads read from `share` at each kernel, clamped to 1...`maxThreads`.
    public init(share: any ThreadShare, maxThreads: Int) {
        self.maxThreads = max(1, min(maxThreads, 256))
        fixed = self.maxThreads
        self.share = share
    }

    private init(snapshot: Int, maxThreads: Int) {
        self.maxThreads = maxThreads
        fixed = snapshot
        share = nil
    }

    /// The threads now: the fixed count, or the share's answer (which may block).
    public var threads: Int {
        guard let share else { return fixed }
        return max(1, min(share.threadsNow(), maxThreads))
    }

    /// This Compute with its thread count read once and fixed: what one kernel call runs with.
    public func now() -> Compute {
        share == nil ? self : Compute(snapshot: threads, maxThreads: maxThreads)
    }

    /// Runs `body(item)` for every item in `0..<count`, spread over the threads (read once).
    /// Items are dealt round-robin, so neighbouring items run at the same time.
    public func forEach(_ count: Int, _ body: (Int) -> Void) {
        if count <= 0 { return }
        let workers = min(threads, count)
        if workers == 1 {
            for i in 0..<count { body(i) }
            return
        }
        withoutActuallyEscaping(body) { body in
            let shared = Unchecked(body)
            DispatchQueue.concurrentPerform(iterations: workers) { w in
                var i = w
                while i < count {
                    shared.value(i)
                    i += workers
                }
            }
        }
    }

    /// Runs `body(worker, range)` once per worker over contiguous slices of `0..<count`
    /// (the threads read once).
    public func forSlices(_ count: Int, _ body: (Int, Range<Int>) -> Void) {
        if count <= 0 { return }
        let workers = min(threads, count)
        if workers == 1 {
            body(0, 0..<count)
            return
        }
        withoutActuallyEscaping(body) { body in
            let shared = Unchecked(body)
            DispatchQueue.concurrentPerform(iterations: workers) { w in
                shared.value(w, (count * w / workers)..<(count * (w + 1) / workers))
            }
        }
    }
}

/// The kernels hand each worker disjoint slices of shared buffers; this box
/// lets that closure cross into `concurrentPerform`, which cannot see it.
private struct Unchecked<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

#if canImport(Glibc)
    import Glibc
    private func sysconfThreads() -> Int { Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))) }
#else
    import Foundation
    private func sysconfThreads() -> Int { ProcessInfo.processInfo.activeProcessorCount }
#endif
