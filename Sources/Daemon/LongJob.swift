import Foundation

/// Work that is not an image (the fine-tuning job): of lowest priority, run on a worker thread
/// of its own, holding `bytes` of the daemon's memory limit from start to end, and lending its
/// cores to images whenever they wait (`Allotment`).
public protocol LongJob: Sendable {
    /// What `jobs` shows as its input (the model it trains, say).
    var label: String { get }
    /// Memory it holds while it runs, counted against the daemon's `memory_limit`.
    var bytes: Int { get }
    /// Runs the job in steps. Before each step it asks `slot.threads()`, which waits while
    /// images run or wait and then says how many threads the step may use. It should end soon
    /// after `cancel` is set (a `cancel` request, or the daemon stopping).
    func run(slot: LongJobSlot, cancel: CancellationFlag) throws
}

/// A running long job's share of the machine.
public struct LongJobSlot: Sendable {
    let allotment: Allotment
    let grant: Allotment.Grant

    /// Threads for the next step: waits while images run or wait, since their cores come first.
    public func threads() -> Int { allotment.resume(grant) }
}
