import CycleGAN
import Tensor

/// The training walk over a network's layer list: a forward that keeps what
/// the backward needs, then the backward in reverse order.
///
/// A tape is planned once for an input size: what it keeps gets its memory then and is
/// reused by every later forward of that size (llm.c's way: nothing is allocated per
/// iteration). It keeps as little as the backward allows:
/// - each norm's normalised values x̂ and 1/σ (its backward needs nothing else). The norm's
///   output act(x̂·γ + β), which the next convolution reads, is not kept: the backward
///   computes it again from x̂ when that convolution's weight gradient and the activation's
///   mask need it;
/// - the outputs no norm follows: a residual block's sum, the discriminator's first
///   activation, the networks' last outputs;
/// - a convolution's output that a norm follows lives only in scratch, until the norm has read it.
/// Scratch and gradient buffers come from a `GradientPool` shared by every tape of a model.
final class Tape {
    let inputShape: [Int]
    private let steps: [Step]
    private let pool: GradientPool
    /// The network's input as the last forward saw it.
    private var input: Tensor?
    private var last: Tensor?

    /// A tape for inputs of `channels`×`height`×`width` through `layers`, taking its scratch
    /// and gradient buffers from `pool` (grown to this tape's largest activation if need be).
    init(layers: [Layer], channels: Int, height: Int, width: Int, gradients pool: GradientPool) {
        inputShape = [1, channels, height, width]
        var shape = Shape(c: channels, h: height, w: width)
        var largest = shape.count
        steps = Self.plan(layers, &shape, &largest)
        pool.reserve(largest)
        self.pool = pool
    }

    /// Runs `network` on `x` ([1, C, H, W]), keeping the tape; returns the output, a buffer of the
    /// tape (read it before the next forward).
    @discardableResult
    func forward(_ x: Tensor, network: Network, compute: Compute) -> Tensor {
        precondition(x.shape == inputShape, "tape planned for \(inputShape), given \(x.shape)")
        input = x
        let out = Self.forward(steps, UnsafePointer(x.data), network: network, pool: pool, compute: compute)
        guard case .kept(let t) = steps.last!.output else { preconditionFailure("a network ends in a kept output") }
        precondition(UnsafePointer(t.data) == out)
        last = t
        return t
    }

    /// Backpropagates `outputGradient` (∂L/∂output, the output's shape) through the last forward.
    /// With `parameters`, gradients of the weights are added into their `grad` buffers; with
    /// `inputGradient`, ∂L/∂input is written there.
    func backward(
        _ outputGradient: UnsafePointer<Float>, network: Network, parameters: TrainableNetwork?,
        inputGradient: UnsafeMutablePointer<Float>?, compute: Compute
    ) {
        guard let input, let last else { preconditionFailure("backward before forward") }
        let g = pool.take()
        g.update(from: outputGradient, count: last.count)
        let result = Self.backward(
            steps, g, input: UnsafePointer(input.data), network: network, parameters: parameters,
            needInput: inputGradient != nil, pool: pool, compute: compute)
        if let inputGradient { inputGradient.update(from: result, count: input.count) }
        pool.give(result)
    }

    // MARK: the plan

    struct Shape: Equatable {
        var c: Int
        var h: Int
        var w: Int
        var count: Int { c * h * w }
        var pixels: Int { h * w }
    }

    /// Where a step's output lives: kept by the tape, or in scratch during the forward only.
    private enum Output {
        case kept(Tensor)
        /// Scratch buffer `slot` of the forward (a norm's output is the same slot as its convolution's).
        case scratch(slot: Int, Shape)
    }

    /// One layer of the walk.
    private enum Step {
        case conv(ConvLayer, input: Shape, rowMap: [Int32], colMap: [Int32], output: Output)
        case convTranspose(ConvTransposeLayer, input: Shape, output: Output)
        /// Reads its convolution's scratch; keeps x̂ and 1/σ; writes act(x̂·γ + β) over the scratch.
        case norm(NormLayer, activation: Activation, xhat: Tensor, rstd: Tensor, output: Output)
        /// In place on the previous output, which is kept (an activation no norm carries, as D's first).
        case activation(Activation, output: Tensor)
        case tanh(output: Tensor)
        /// x + f(x), into a kept buffer.
        case residual([Step], output: Tensor)

        var output: Output {
            switch self {
            case .conv(_, _, _, _, let o), .convTranspose(_, _, let o), .norm(_, _, _, _, let o): return o
            case .activation(_, let t), .tanh(let t), .residual(_, let t): return .kept(t)
            }
        }

        var shape: Shape {
            switch output {
            case .kept(let t): return Shape(c: t.shape[1], h: t.shape[2], w: t.shape[3])
            case .scratch(_, let s): return s
            }
        }
    }

    /// Scratch slots: a convolution's output goes to the lowest slot not holding its input or an
    /// enclosing block's input. Three suffice for a residual block inside a chain.
    private static let scratchSlots = 3

    private static func plan(
        _ layers: [Layer], _ shape: inout Shape, _ largest: inout Int, busy: Set<Int> = []
    ) -> [Step] {
        var steps: [Step] = []
        var inputSlot: Int?  // where the current activation lives, when in scratch
        var i = 0
        func nextIsNorm() -> Bool {
            i + 1 < layers.count && { if case .norm = layers[i + 1] { return true } else { return false } }()
        }
        func output(_ s: Shape, scratch: Bool) -> Output {
            largest = max(largest, s.count)
            shape = s
            guard scratch else { return .kept(Tensor(shape: [1, s.c, s.h, s.w])) }
            let taken = busy.union(inputSlot.map { [$0] } ?? [])
            let slot = (0..<scratchSlots).first { !taken.contains($0) }!
            return .scratch(slot: slot, s)
        }
        func slot(of o: Output) -> Int? {
            if case .scratch(let slot, _) = o { return slot }
            return nil
        }
        while i < layers.count {
            let before = shape
            switch layers[i] {
            case .conv(let c):
                let p = c.padding.amount
                let out = output(
                    Shape(
                        c: c.outChannels, h: (before.h + 2 * p - c.kernel) / c.stride + 1,
                        w: (before.w + 2 * p - c.kernel) / c.stride + 1),
                    scratch: nextIsNorm())
                steps.append(
                    .conv(
                        c, input: before, rowMap: paddedIndexMap(length: before.h, padding: c.padding),
                        colMap: paddedIndexMap(length: before.w, padding: c.padding), output: out))
                inputSlot = slot(of: out)
            case .convTranspose(let c):
                let h = (before.h - 1) * c.stride - 2 * c.padding + c.kernel + c.outputPadding
                let w = (before.w - 1) * c.stride - 2 * c.padding + c.kernel + c.outputPadding
                let out = output(Shape(c: c.outChannels, h: h, w: w), scratch: nextIsNorm())
                steps.append(.convTranspose(c, input: before, output: out))
                inputSlot = slot(of: out)
            case .norm(let n):
                guard let previous = steps.last?.output, case .scratch = previous else {
                    preconditionFailure("a norm follows a convolution")
                }
                let activation = i + 1 < layers.count ? layers[i + 1].activation : nil
                if activation != nil { i += 1 }
                steps.append(
                    .norm(
                        n, activation: activation ?? .none, xhat: Tensor(shape: [1, before.c, before.h, before.w]),
                        rstd: Tensor(shape: [n.channels]), output: previous))
            case .relu, .leakyReLU:
                guard let previous = steps.last?.output, case .kept(let t) = previous else {
                    preconditionFailure("an activation of its own follows a kept output")
                }
                steps.append(.activation(layers[i].activation!, output: t))
            case .tanh:
                guard let previous = steps.last?.output, case .kept(let t) = previous else {
                    preconditionFailure("tanh follows a kept output")
                }
                steps.append(.tanh(output: t))
            case .residual(let inner):
                let innerSteps = plan(inner, &shape, &largest, busy: busy.union(inputSlot.map { [$0] } ?? []))
                precondition(shape == before, "a residual block keeps its input's shape")
                let out = output(before, scratch: false)
                guard case .kept(let t) = out else { preconditionFailure() }
                steps.append(.residual(innerSteps, output: t))
                inputSlot = nil
            }
            i += 1
        }
        return steps
    }
}

// MARK: forward and backward, side by side

extension Tape {
    /// Each step's input is the previous step's output (the first's is `x`); returns the last output.
    private static func forward(
        _ steps: [Step], _ x: UnsafePointer<Float>, network: Network, pool: GradientPool, compute: Compute
    ) -> UnsafePointer<Float> {
        let scratch = (0..<scratchSlots).map { _ in pool.take() }
        defer { for s in scratch { pool.give(s) } }
        return forward(steps, x, scratch: scratch, network: network, compute: compute)
    }

    private static func forward(
        _ steps: [Step], _ x: UnsafePointer<Float>, scratch: [UnsafeMutablePointer<Float>], network: Network,
        compute: Compute
    ) -> UnsafePointer<Float> {
        var x = x
        for step in steps {
            let out = buffer(step.output, scratch)
            switch step {
            case .conv(let c, let s, let rowMap, let colMap, _):
                // [Cin, H, W] → [Cout, Ho, Wo]
                network.conv(c).forward(planes(x, s), rowMap: rowMap, colMap: colMap, into: out, compute: compute)
            case .convTranspose(let c, let s, _):
                // [Cin, H, W] → [Cout, s·H, s·W]
                network.convTranspose(c).forward(
                    planes(x, s), inputHeight: s.h, inputWidth: s.w, inputRowBase: 0, outRows: 0..<step.shape.h,
                    into: out, compute: compute)
            case .norm(let n, let activation, let xhat, let rstd, _):
                // [C, P] → x̂, 1/σ kept; out ← act(x̂·γ + β), over the convolution's output
                let (gamma, beta) = network.affine(n)
                InstanceNorm.trainingForward(
                    x, channels: n.channels, pixels: step.shape.pixels, gamma: gamma?.data, beta: beta?.data,
                    activation: activation, xhat: xhat.data, rstd: rstd.data, y: out, compute: compute)
            case .activation(let activation, let t):
                switch activation {
                case .relu: Elementwise.relu(t.data, count: t.count)
                case .leakyReLU(let slope): Elementwise.leakyReLU(t.data, count: t.count, slope: slope)
                case .none: break
                }
            case .tanh(let t):
                Elementwise.tanh(t.data, count: t.count, compute: compute)
            case .residual(let inner, let t):
                // out ← f(x) + x
                let f = forward(inner, x, scratch: scratch, network: network, compute: compute)
                t.data.update(from: f, count: t.count)
                Elementwise.add(t.data, x, count: t.count, compute: compute)
            }
            x = UnsafePointer(out)
        }
        return x
    }

    /// `g` holds ∂L/∂(output of the last step); returns a pool buffer with ∂L/∂x (garbage unless
    /// `needInput`). `g` itself is consumed (given back to the pool or returned). `x` is the walk's input.
    private static func backward(
        _ steps: [Step], _ g: UnsafeMutablePointer<Float>, input x: UnsafePointer<Float>, network: Network,
        parameters: TrainableNetwork?, needInput: Bool, pool: GradientPool, compute: Compute
    ) -> UnsafeMutablePointer<Float> {
        var g = g
        // A norm's output, computed again from its x̂: by the layer after it (its input), then by
        // the norm itself (its activation's mask).
        var recomputed: (index: Int, buffer: UnsafeMutablePointer<Float>)?
        defer { if let r = recomputed { pool.give(r.buffer) } }
        func value(_ k: Int) -> UnsafePointer<Float> {
            if k < 0 { return x }
            switch steps[k] {
            case .norm(let n, let activation, let xhat, _, _):
                if let r = recomputed, r.index == k { return UnsafePointer(r.buffer) }
                let buffer = recomputed?.buffer ?? pool.take()
                let (gamma, beta) = network.affine(n)
                InstanceNorm.output(
                    xhat: xhat.data, channels: n.channels, pixels: steps[k].shape.pixels, gamma: gamma?.data,
                    beta: beta?.data, activation: activation, into: buffer, compute: compute)
                recomputed = (k, buffer)
                return UnsafePointer(buffer)
            default:
                guard case .kept(let t) = steps[k].output else {
                    preconditionFailure("a convolution's scratch output is read by its norm only")
                }
                return UnsafePointer(t.data)
            }
        }
        for k in stride(from: steps.count - 1, through: 0, by: -1) {
            // The first layer's input gradient is needed only when the caller asks for it.
            let wantInput = k > 0 || needInput
            switch steps[k] {
            case .conv(let c, let s, _, _, _):
                let conv = network.conv(c)
                if let parameters {
                    conv.accumulateWeightGradient(
                        input: planes(value(k - 1), s), inputHeight: s.h, inputWidth: s.w, padding: c.padding,
                        outputGradient: g, weightGradient: parameters.gradient("\(c.name).weight")!.data,
                        biasGradient: parameters.gradient("\(c.name).bias")?.data, compute: compute)
                }
                if wantInput {
                    let d = pool.take()
                    conv.inputGradient(
                        g, inputHeight: s.h, inputWidth: s.w, padding: c.padding, into: d, compute: compute)
                    pool.give(g)
                    g = d
                }
            case .convTranspose(let c, let s, _):
                let conv = network.convTranspose(c)
                if let parameters {
                    conv.accumulateWeightGradient(
                        input: planes(value(k - 1), s), inputHeight: s.h, inputWidth: s.w, outputGradient: g,
                        weightGradient: parameters.gradient("\(c.name).weight")!.data,
                        biasGradient: parameters.gradient("\(c.name).bias")?.data, compute: compute)
                }
                if wantInput {
                    let d = pool.take()
                    conv.inputGradient(g, inputHeight: s.h, inputWidth: s.w, into: d, compute: compute)
                    pool.give(g)
                    g = d
                }
            case .norm(let n, let activation, let xhat, let rstd, _):
                let shape = steps[k].shape
                activation.backward(g, output: value(k), count: shape.count, compute: compute)
                let (gamma, _) = network.affine(n)
                InstanceNorm.backward(
                    g, xhat: xhat.data, rstd: rstd.data, gamma: gamma?.data, channels: n.channels,
                    pixels: shape.pixels, dx: g, dGamma: parameters?.gradient("\(n.name).weight")?.data,
                    dBeta: parameters?.gradient("\(n.name).bias")?.data, compute: compute)
            case .activation(let activation, let t):
                activation.backward(g, output: t.data, count: t.count, compute: compute)
            case .tanh(let t):
                Elementwise.tanhBackward(g, output: t.data, count: t.count, compute: compute)
            case .residual(let inner, let t):
                // ∂x = ∂out (the skip) + the inner walk's ∂x.
                let skip = pool.take()
                skip.update(from: g, count: t.count)
                let d = backward(
                    inner, g, input: value(k - 1), network: network, parameters: parameters, needInput: true,
                    pool: pool, compute: compute)
                Elementwise.add(d, skip, count: t.count, compute: compute)
                pool.give(skip)
                g = d
            }
        }
        return g
    }

    private static func buffer(_ o: Output, _ scratch: [UnsafeMutablePointer<Float>]) -> UnsafeMutablePointer<Float> {
        switch o {
        case .kept(let t): return t.data
        case .scratch(let slot, _): return scratch[slot]
        }
    }

    private static func planes(_ p: UnsafePointer<Float>, _ s: Shape) -> Planes {
        Planes(source: p, channels: s.c, channelStride: s.pixels, rowStride: s.w)
    }
}

/// Gradient buffers, taken and given back during a backward; they stay allocated for the next
/// one. Every buffer holds `capacity` floats, the largest activation of the tapes that use it.
final class GradientPool {
    private(set) var capacity = 0
    private var free: [UnsafeMutablePointer<Float>] = []
    private var taken = 0

    /// Makes every buffer hold at least `count` floats (between backward passes only).
    func reserve(_ count: Int) {
        guard count > capacity else { return }
        precondition(taken == 0, "gradient buffers resized during a backward")
        for p in free { p.deallocate() }
        free.removeAll()
        capacity = count
    }

    func take() -> UnsafeMutablePointer<Float> {
        taken += 1
        return free.popLast() ?? .allocate(capacity: capacity)
    }

    func give(_ p: UnsafeMutablePointer<Float>) {
        taken -= 1
        free.append(p)
    }

    deinit { for p in free { p.deallocate() } }
}
