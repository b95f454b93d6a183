import CycleGAN
import Foundation
import Models
import Tensor

/// Where a run stands, as a checkpoint saves it: with the tensors beside it
/// (networks, Adam moments, pools) it is everything a resumed run needs to
/// continue exactly as the uninterrupted one would have.
struct TrainingState: Codable {
    static let formatVersion = 1

    var formatVersion = TrainingState.formatVersion
    var options: TrainingOptions
    var domains: [String]
    var generatorA: GeneratorArchitecture
    var generatorB: GeneratorArchitecture
    var discriminatorA: DiscriminatorArchitecture
    var discriminatorB: DiscriminatorArchitecture
    /// The epoch in progress (the next to start when `batchesDone` is 0).
    var epoch: Int
    /// Batches of `epoch` already trained.
    var batchesDone: Int
    /// Images of `epoch` already trained (the reference's epoch_iter).
    var epochIter: Int
    /// Images trained in the whole run (the reference's total_iters).
    var totalIters: Int
    /// Iterations (optimizer steps of each kind) in the whole run.
    var iterations: Int
    var adamStepsG: Int
    var adamStepsD: Int
    var poolA: PoolState
    var poolB: PoolState
    /// Images skipped as unreadable so far.
    var skipped: Int

    struct PoolState: Codable {
        var size: Int
        var count: Int
        var random: SplitMix64
    }
}

extension CycleGANModel {
    /// The tensors a checkpoint holds: `G_A/<name>`, `adam_G.m/G_A/<name>`, `adam_G.v/…`, `pool_A/<i>`.
    func checkpointTensors() -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for (role, net) in networks {
            let adam = role.hasPrefix("G") ? "adam_G" : "adam_D"
            for p in net.parameters {
                out["\(role)/\(p.name)"] = p.value
                out["\(adam).m/\(role)/\(p.name)"] = p.m
                out["\(adam).v/\(role)/\(p.name)"] = p.v
            }
        }
        for (i, t) in poolA.images.enumerated() { out["pool_A/\(i)"] = t }
        for (i, t) in poolB.images.enumerated() { out["pool_B/\(i)"] = t }
        return out
    }

    /// Restores what `checkpointTensors` saved (the networks must have been built with the saved architectures).
    func restore(_ tensors: [String: Tensor], state: TrainingState) throws {
        func take(_ name: String, into t: Tensor) throws {
            guard let src = tensors[name], src.shape == t.shape else {
                throw TrainingError.damagedCheckpoint("\(name) is missing or has the wrong shape")
            }
            t.data.update(from: src.data, count: t.count)
        }
        for (role, net) in networks {
            let adam = role.hasPrefix("G") ? "adam_G" : "adam_D"
            for p in net.parameters {
                try take("\(role)/\(p.name)", into: p.value)
                try take("\(adam).m/\(role)/\(p.name)", into: p.m)
                try take("\(adam).v/\(role)/\(p.name)", into: p.v)
            }
            net.refresh()
        }
        optimizerG.step = state.adamStepsG
        optimizerD.step = state.adamStepsD
        func pool(_ prefix: String, _ s: TrainingState.PoolState) throws -> ImagePool {
            let images = try (0..<s.count).map { i -> Tensor in
                guard let t = tensors["\(prefix)/\(i)"] else {
                    throw TrainingError.damagedCheckpoint("\(prefix)/\(i) is missing")
                }
                return t.copy()
            }
            return ImagePool(size: s.size, images: images, random: s.random)
        }
        poolA = try pool("pool_A", state.poolA)
        poolB = try pool("pool_B", state.poolB)
    }
}

/// What can stop a training run before it starts or while it runs, with what to do about it.
public enum TrainingError: Error, CustomStringConvertible {
    case badOptions([String])
    case modelExists(String)
    case noSuchModel(String)
    case damagedCheckpoint(String)
    case incompatible(String)

    public var description: String {
        switch self {
        case .badOptions(let p): return "cannot train with these options:\n  " + p.joined(separator: "\n  ")
        case .modelExists(let s), .noSuchModel(let s), .incompatible(let s): return s
        case .damagedCheckpoint(let s):
            return "the training checkpoint is damaged (\(s)); remove its training/checkpoint folder to start over"
        }
    }
}
