import Dispatch

/// How many threads the kernels use. The kernels split work themselves and
/// call OpenBLAS single-threaded from each worker, so that im2col, the GEMMs
/// and the transforms all run in parallel with no serial phase between them.
public struct Compute: Sendable {
    public let threads: Int

    public init(threads: Int? = nil) {
        let cores = max(1, sysconfThreads())
        self.threads = max(1, min(threads ?? cores, 256))
    }

    /// Runs `body(item)` for every item in `0..<count`, spread over the threads.
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

    /// Runs `body(worker, range)` once per worker over contiguous slices of `0..<count`.
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
