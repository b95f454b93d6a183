import Foundation
import Tensor

/// Work that is not an image (the fine-tuning job): of lowest priority, run on a worker thread
/// of its own, holding `bytes` of the daemon's memory limit from start to end, and lending its
/// cores to images whenever they wait (`Allotment`).
public protocol LongJob: Sendable {
    /// What `jobs` shows as its input (the model it trains, say).
    var label: String { get }
    /// Memory it holds while it runs, counted against the daemon's `memory_limit`.
    var bytes: Int { get }
    /// Runs the job, its kernels on `slot.compute`: each kernel waits while images run or wait,
    /// then uses the job's share of the cores. It should end soon after `cancel` is set (a
    /// `cancel` request, or the daemon stopping).
    func run(slot: LongJobSlot, cancel: CancellationFlag) throws
}

/// A running long job's share of the machine.
public struct LongJobSlot: Sendable {
    let grant: Allotment.Grant

    /// The job's kernels: each waits while images run or wait, since their cores come first,
    /// then takes the cores they leave.
    public var compute: Compute { grant.compute }
}
