import CycleGAN
import Tensor

/// The eight losses of one iteration, in the order of the reference's names (`LossRecord.lossNames`).
public struct Losses: Equatable, Sendable {
    public var dA = 0.0
    public var gA = 0.0
    public var cycleA = 0.0
    public var idtA = 0.0
    public var dB = 0.0
    public var gB = 0.0
    public var cycleB = 0.0
    public var idtB = 0.0

    /// D_A, G_A, cycle_A, idt_A, D_B, G_B, cycle_B, idt_B.
    public static var names: [String] { LossRecord.lossNames }

    /// In the order of `names`.
    public var values: [Double] { [dA, gA, cycleA, idtA, dB, gB, cycleB, idtB] }
}

/// The reference's GAN objectives for a PatchGAN's logits.
public enum GANMode: String, Codable, Sendable, CaseIterable {
    /// Least squares against 1 (real) and 0 (fake).
    case lsgan
    /// Binary cross-entropy with logits.
    case vanilla

    /// The mean loss of `prediction` against the label; writes scale·∂loss/∂prediction into `gradient`.
    func loss(_ prediction: Tensor, real: Bool, gradient: UnsafeMutablePointer<Float>?, scale: Float) -> Double {
        let target: Float = real ? 1 : 0
        switch self {
        case .lsgan:
            return Double(
                Loss.mse(prediction.data, target: target, count: prediction.count, gradient: gradient, scale: scale))
        case .vanilla:
            return Double(
                Loss.bceWithLogits(
                    prediction.data, target: target, count: prediction.count, gradient: gradient, scale: scale))
        }
    }
}

/// The weights of the losses (the reference's `--lambda_*` and `--gan_mode`).
public struct LossWeights: Codable, Equatable, Sendable {
    public var ganMode: GANMode = .lsgan
    public var lambdaA: Float = 10
    public var lambdaB: Float = 10
    public var lambdaIdentity: Float = 0.5

    public init() {}
}

/// What one iteration shows of its first sample (the reference's visuals).
public struct Visuals {
    public var realA, fakeB, recA, idtB: Tensor
    public var realB, fakeA, recB, idtA: Tensor
}

/// The four networks of a CycleGAN with their optimizers and image pools, and
/// one training iteration as the reference's `optimize_parameters`:
///
/// 1. the generators' step, D_A and D_B frozen: identity, adversarial and
///    cycle losses; G_A and G_B updated together by one Adam;
/// 2. the discriminators' step on real images and pooled fakes (detached);
///    D_A and D_B updated together by another Adam.
///
/// The order inside the generators' step frees memory early: each identity
/// forward is followed by its backward at once, and the two cycles
/// (A → B → A, then B → A → B) run one after the other, so two generator
/// tapes are alive at a time instead of the six PyTorch's graph keeps.
final class CycleGANModel {
    let gA: TrainableNetwork
    let gB: TrainableNetwork
    let dA: TrainableNetwork
    let dB: TrainableNetwork
    var optimizerG: AdamOptimizer
    var optimizerD: AdamOptimizer
    /// Fakes of domain B for D_A, and of domain A for D_B.
    var poolA: ImagePool
    var poolB: ImagePool
    let weights: LossWeights
    private let tapes = TapeCache()
    private let scratch = ScratchTensors()

    init(
        gA: TrainableNetwork, gB: TrainableNetwork, dA: TrainableNetwork, dB: TrainableNetwork,
        optimizerG: AdamOptimizer, optimizerD: AdamOptimizer, poolA: ImagePool, poolB: ImagePool, weights: LossWeights
    ) {
        self.gA = gA
        self.gB = gB
        self.dA = dA
        self.dB = dB
        self.optimizerG = optimizerG
        self.optimizerD = optimizerD
        self.poolA = poolA
        self.poolB = poolB
        self.weights = weights
    }

    var networks: [(role: String, net: TrainableNetwork)] { [("G_A", gA), ("G_B", gB), ("D_A", dA), ("D_B", dB)] }

    /// One iteration over a batch of pairs; returns the batch's mean losses (and the first pair's visuals).
    /// `yield` is called between layers' worth of work where a caller may pause the iteration.
    func optimize(
        realA: [Tensor], realB: [Tensor], wantVisuals: Bool = false, compute: Compute
    ) -> (losses: Losses, visuals: Visuals?) {
        precondition(!realA.isEmpty && realA.count == realB.count)
        let scale = 1 / Float(realA.count)
        var losses = Losses()
        var visuals: Visuals?
        var fakesB: [Tensor] = []
        var fakesA: [Tensor] = []

        // 1. Generators (D_A, D_B only pass gradients through).
        gA.zeroGradients()
        gB.zeroGradients()
        for (i, (a, b)) in zip(realA, realB).enumerated() {
            let wanted = wantVisuals && i == 0
            let idt = identity(a: a, b: b, scale: scale, keep: wanted, losses: &losses)
            let (fakeB, recA) = cycle(
                real: a, forward: gA, back: gB, critic: dA, lambda: weights.lambdaA, scale: scale, keep: wanted,
                adversarial: &losses.gA, cycleLoss: &losses.cycleA)
            let (fakeA, recB) = cycle(
                real: b, forward: gB, back: gA, critic: dB, lambda: weights.lambdaB, scale: scale, keep: wanted,
                adversarial: &losses.gB, cycleLoss: &losses.cycleB)
            fakesB.append(fakeB)
            fakesA.append(fakeA)
            if wanted, let idt, let recA, let recB {
                visuals = Visuals(
                    realA: a.copy(), fakeB: fakeB.copy(), recA: recA, idtB: idt.b, realB: b.copy(),
                    fakeA: fakeA.copy(), recB: recB, idtA: idt.a)
            }
        }
        optimizerG.update([gA, gB], compute: compute)

        // 2. Discriminators, on real images and on fakes drawn through the pools.
        dA.zeroGradients()
        dB.zeroGradients()
        for (a, b, fakeB, fakeA) in zip4(realA, realB, fakesB, fakesA) {
            losses.dA += discriminate(dA, real: b, fake: poolA.query(fakeB), scale: scale, compute: compute)
            losses.dB += discriminate(dB, real: a, fake: poolB.query(fakeA), scale: scale, compute: compute)
        }
        optimizerD.update([dA, dB], compute: compute)

        let n = Double(realA.count)
        for k in [\Losses.dA, \.gA, \.cycleA, \.idtA, \.dB, \.gB, \.cycleB, \.idtB] { losses[keyPath: k] /= n }
        return (losses, visuals)

        func identity(a: Tensor, b: Tensor, scale: Float, keep: Bool, losses: inout Losses) -> (a: Tensor, b: Tensor)? {
            guard weights.lambdaIdentity > 0 else {
                return keep ? (Tensor(shape: b.shape), Tensor(shape: a.shape)) : nil
            }
            // idt_A = G_A(real_B) ≈ real_B, weighted by λ_B; idt_B = G_B(real_A) ≈ real_A, by λ_A.
            let idtA = reconstruct(
                b, through: gA, target: b, weight: weights.lambdaB * weights.lambdaIdentity, scale: scale,
                loss: &losses.idtA)
            let keptA = keep ? idtA.copy() : nil
            let idtB = reconstruct(
                a, through: gB, target: a, weight: weights.lambdaA * weights.lambdaIdentity, scale: scale,
                loss: &losses.idtB)
            return keep ? (keptA!, idtB.copy()) : nil
        }

        /// L1(net(x), target)·weight, backpropagated into net's parameters at once.
        func reconstruct(
            _ x: Tensor, through net: TrainableNetwork, target: Tensor, weight: Float, scale: Float, loss: inout Double
        ) -> Tensor {
            let tape = tapes.tape(0, layers: net.layers, shape: x.shape)
            let y = tape.forward(x, network: net.network, compute: compute)
            let g = scratch.tensor("grad.image", shape: y.shape)
            loss += Double(
                weight * Loss.l1(y.data, target.data, count: y.count, gradient: g.data, scale: weight * scale))
            tape.backward(g.data, network: net.network, parameters: net, inputGradient: nil, compute: compute)
            return y
        }

        /// fake = forward(real), rec = back(fake): the adversarial loss of fake under `critic` and the cycle
        /// loss of rec, both backpropagated into `forward` and `back`. Returns fake (a copy) and rec.
        func cycle(
            real: Tensor, forward: TrainableNetwork, back: TrainableNetwork, critic: TrainableNetwork, lambda: Float,
            scale: Float, keep: Bool, adversarial: inout Double, cycleLoss: inout Double
        ) -> (fake: Tensor, rec: Tensor?) {
            let first = tapes.tape(0, layers: forward.layers, shape: real.shape)
            let fake = first.forward(real, network: forward.network, compute: compute).copy()
            let second = tapes.tape(1, layers: back.layers, shape: fake.shape)
            let rec = second.forward(fake, network: back.network, compute: compute)

            // Cycle: λ·L1(rec, real), through `back` into fake.
            let gRec = scratch.tensor("grad.image", shape: rec.shape)
            cycleLoss += Double(
                lambda * Loss.l1(rec.data, real.data, count: rec.count, gradient: gRec.data, scale: lambda * scale))
            let gFake = scratch.tensor("grad.fake", shape: fake.shape)
            second.backward(
                gRec.data, network: back.network, parameters: back, inputGradient: gFake.data, compute: compute)
            let kept = keep ? rec.copy() : nil

            // Adversarial: the critic (frozen) should call fake real; its gradient flows into fake only.
            let critique = tapes.tape(2, layers: critic.layers, shape: fake.shape)
            let prediction = critique.forward(fake, network: critic.network, compute: compute)
            let gPrediction = scratch.tensor("grad.prediction", shape: prediction.shape)
            adversarial += weights.ganMode.loss(prediction, real: true, gradient: gPrediction.data, scale: scale)
            let gCritic = scratch.tensor("grad.critic", shape: fake.shape)
            critique.backward(
                gPrediction.data, network: critic.network, parameters: nil, inputGradient: gCritic.data,
                compute: compute)
            Elementwise.add(gFake.data, gCritic.data, count: fake.count, compute: compute)

            first.backward(
                gFake.data, network: forward.network, parameters: forward, inputGradient: nil, compute: compute)
            return (fake, kept)
        }
    }

    /// 0.5·(GAN(D(real), real) + GAN(D(fake), fake)), backpropagated into D's parameters; returns the loss.
    private func discriminate(_ d: TrainableNetwork, real: Tensor, fake: Tensor, scale: Float, compute: Compute)
        -> Double
    {
        var loss = 0.0
        for (x, isReal) in [(real, true), (fake, false)] {
            let tape = tapes.tape(2, layers: d.layers, shape: x.shape)
            let prediction = tape.forward(x, network: d.network, compute: compute)
            let g = scratch.tensor("grad.prediction", shape: prediction.shape)
            loss += 0.5 * weights.ganMode.loss(prediction, real: isReal, gradient: g.data, scale: 0.5 * scale)
            tape.backward(g.data, network: d.network, parameters: d, inputGradient: nil, compute: compute)
        }
        return loss
    }
}

/// Tapes by slot, each re-planned only when its layers or input shape change.
private final class TapeCache {
    private var slots: [Int: (layers: [Layer], tape: Tape)] = [:]
    /// One set of gradient buffers for every tape: backward passes run one at a time.
    private let gradients = GradientPool()

    /// Generators whose norms differ only in being affine (a fine-tuned vintagify G_A beside a new G_B)
    /// have the same activations and share a tape: compare the layers without that flag.
    func tape(_ slot: Int, layers: [Layer], shape: [Int]) -> Tape {
        let key = Self.skeleton(layers)
        if let s = slots[slot], s.tape.inputShape == shape, s.layers == key { return s.tape }
        slots[slot] = nil  // free the old buffers before planning the new ones
        let tape = Tape(layers: layers, channels: shape[1], height: shape[2], width: shape[3], gradients: gradients)
        slots[slot] = (key, tape)
        return tape
    }

    private static func skeleton(_ layers: [Layer]) -> [Layer] {
        layers.map { layer in
            switch layer {
            case .norm(var n):
                n.affine = false
                return .norm(n)
            case .residual(let inner): return .residual(skeleton(inner))
            default: return layer
            }
        }
    }
}

/// Named scratch tensors, reallocated only when the shape asked for changes.
private final class ScratchTensors {
    private var tensors: [String: Tensor] = [:]

    func tensor(_ name: String, shape: [Int]) -> Tensor {
        if let t = tensors[name], t.shape == shape { return t }
        let t = Tensor(shape: shape)
        tensors[name] = t
        return t
    }
}

private func zip4<A, B, C, D>(_ a: [A], _ b: [B], _ c: [C], _ d: [D]) -> [(A, B, C, D)] {
    (0..<a.count).map { (a[$0], b[$0], c[$0], d[$0]) }
}
