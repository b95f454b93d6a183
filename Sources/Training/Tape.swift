import CycleGAN
import Tensor

/// The training walk over a network's layer list: a forward that keeps what
/// the backward needs, then the backward in reverse order.
///
/// A tape is planned once for an input size: every activation, every norm's
/// normalised values x̂ and 1/σ, and the gradient buffers get their memory
/// then and are reused by every later forward of that size (llm.c's way:
/// nothing is allocated per iteration). What is kept, and why:
/// - each convolution's input (its weight gradient needs it);
/// - each norm's x̂ and 1/σ (its backward needs nothing else); the norm
///   writes its output over the convolution's, which nothing needs after it;
/// - an activation's output, which is the next convolution's input anyway:
///   ReLU's and LeakyReLU's masks follow from its sign, tanh's derivative is 1 − y².
final class Tape {
    let inputShape: [Int]
    private let steps: [Step]
    /// Free gradient buffers, each as large as the largest activation.
    private let gradients: GradientPool
    /// The network's input as the last forward saw it.
    private var input: Tensor?

    /// A tape for inputs of `channels`×`height`×`width` through `layers`.
    init(layers: [Layer], channels: Int, height: Int, width: Int) {
        inputShape = [1, channels, height, width]
        var shape = (c: channels, h: height, w: width)
        var largest = channels * height * width
        steps = Self.plan(layers, &shape, &largest)
        gradients = GradientPool(capacity: largest)
    }

    /// The network's output after `forward` (a buffer of the tape: read it before the next forward).
    private(set) var output: Tensor?

    /// Runs `network` on `x` ([1, C, H, W]), keeping the tape; returns the output (owned by the tape).
    @discardableResult
    func forward(_ x: Tensor, network: Network, compute: Compute) -> Tensor {
        precondition(x.shape == inputShape, "tape planned for \(inputShape), given \(x.shape)")
        input = x
        let y = Self.forward(steps, x, network: network, compute: compute)
        output = y
        return y
    }

    /// Backpropagates `outputGradient` (∂L/∂output, same shape as the output) through the last forward.
    /// With `parameters`, gradients of the weights are added into their `grad` buffers; with
    /// `inputGradient`, ∂L/∂input is written there. `outputGradient` is used as scratch.
    func backward(
        _ outputGradient: UnsafeMutablePointer<Float>, network: Network, parameters: TrainableNetwork?,
        inputGradient: UnsafeMutablePointer<Float>?, compute: Compute
    ) {
        guard let input else { preconditionFailure("backward before forward") }
        let g = gradients.take()
        g.update(from: outputGradient, count: steps.last!.output.count)
        let result = Self.backward(
            steps, g, input: input, network: network, parameters: parameters, needInput: inputGradient != nil,
            pool: gradients, compute: compute)
        if let inputGradient { inputGradient.update(from: result, count: input.count) }
        gradients.give(result)
    }

    // MARK: the plan

    /// One layer of the walk, with the buffers the forward fills and the backward reads.
    private enum Step {
        case conv(ConvLayer, output: Tensor, rowMap: [Int32], colMap: [Int32])
        case convTranspose(ConvTransposeLayer, output: Tensor)
        /// Writes activation(x̂·γ + β) over `output` (the previous layer's output).
        case norm(NormLayer, activation: Activation, output: Tensor, xhat: Tensor, rstd: Tensor)
        /// In place on `output` (an activation not fused into a norm, such as the discriminator's first).
        case activation(Activation, output: Tensor)
        case tanh(output: Tensor)
        /// x + f(x): `output` is the inner walk's last buffer, which the sum overwrites.
        case residual([Step], output: Tensor)

        var output: Tensor {
            switch self {
            case .conv(_, let o, _, _), .convTranspose(_, let o), .norm(_, _, let o, _, _), .activation(_, let o),
                .tanh(let o), .residual(_, let o):
                return o
            }
        }
    }

    private static func plan(
        _ layers: [Layer], _ shape: inout (c: Int, h: Int, w: Int), _ largest: inout Int
    ) -> [Step] {
        var steps: [Step] = []
        var current: Tensor?
        var i = 0
        func fresh(_ c: Int, _ h: Int, _ w: Int) -> Tensor {
            shape = (c, h, w)
            largest = max(largest, c * h * w)
            return Tensor(shape: [1, c, h, w])
        }
        while i < layers.count {
            switch layers[i] {
            case .conv(let c):
                let p = c.padding.amount
                let rowMap = paddedIndexMap(length: shape.h, padding: c.padding)
                let colMap = paddedIndexMap(length: shape.w, padding: c.padding)
                let out = fresh(
                    c.outChannels, (shape.h + 2 * p - c.kernel) / c.stride + 1,
                    (shape.w + 2 * p - c.kernel) / c.stride + 1)
                steps.append(.conv(c, output: out, rowMap: rowMap, colMap: colMap))
                current = out
            case .convTranspose(let c):
                let h = (shape.h - 1) * c.stride - 2 * c.padding + c.kernel + c.outputPadding
                let w = (shape.w - 1) * c.stride - 2 * c.padding + c.kernel + c.outputPadding
                let out = fresh(c.outChannels, h, w)
                steps.append(.convTranspose(c, output: out))
                current = out
            case .norm(let n):
                guard let out = current else { preconditionFailure("a norm needs a layer before it") }
                let activation = i + 1 < layers.count ? layers[i + 1].activation : nil
                if activation != nil { i += 1 }
                steps.append(
                    .norm(
                        n, activation: activation ?? .none, output: out, xhat: Tensor(shape: out.shape),
                        rstd: Tensor(shape: [n.channels])))
            case .relu, .leakyReLU:
                guard let out = current else { preconditionFailure("an activation needs a layer before it") }
                steps.append(.activation(layers[i].activation!, output: out))
            case .tanh:
                guard let out = current else { preconditionFailure("tanh needs a layer before it") }
                steps.append(.tanh(output: out))
            case .residual(let inner):
                let before = shape
                let innerSteps = plan(inner, &shape, &largest)
                precondition(shape == before, "a residual block keeps its input's shape")
                guard let out = innerSteps.last?.output else { preconditionFailure("an empty residual block") }
                steps.append(.residual(innerSteps, output: out))
                current = out
            }
            i += 1
        }
        return steps
    }
}

// MARK: forward and backward, side by side

extension Tape {
    /// Each step's input is the previous step's output (the first's is `x`).
    private static func forward(_ steps: [Step], _ x: Tensor, network: Network, compute: Compute) -> Tensor {
        var x = x
        for step in steps {
            switch step {
            case .conv(let c, let out, let rowMap, let colMap):
                // [Cin, H, W] → [Cout, Ho, Wo]
                network.conv(c).forward(Planes(x), rowMap: rowMap, colMap: colMap, into: out.data, compute: compute)
            case .convTranspose(let c, let out):
                // [Cin, H, W] → [Cout, s·H, s·W]
                network.convTranspose(c).forward(
                    Planes(x), inputHeight: x.shape[2], inputWidth: x.shape[3], inputRowBase: 0,
                    outRows: 0..<out.shape[2], into: out.data, compute: compute)
            case .norm(let n, let activation, let out, let xhat, let rstd):
                // [C, P] → x̂, 1/σ kept; out ← act(x̂·γ + β)
                let (gamma, beta) = network.affine(n)
                InstanceNorm.trainingForward(
                    out.data, channels: n.channels, pixels: out.shape[2] * out.shape[3], gamma: gamma?.data,
                    beta: beta?.data, activation: activation, xhat: xhat.data, rstd: rstd.data, y: out.data,
                    compute: compute)
            case .activation(let activation, let out):
                switch activation {
                case .relu: Elementwise.relu(out.data, count: out.count)
                case .leakyReLU(let slope): Elementwise.leakyReLU(out.data, count: out.count, slope: slope)
                case .none: break
                }
            case .tanh(let out):
                Elementwise.tanh(out.data, count: out.count, compute: compute)
            case .residual(let inner, let out):
                // out ← f(x) + x
                _ = forward(inner, x, network: network, compute: compute)
                Elementwise.add(out.data, x.data, count: out.count, compute: compute)
            }
            x = step.output
        }
        return x
    }

    /// `g` holds ∂L/∂(output of the last step); returns a pool buffer with ∂L/∂x (garbage unless
    /// `needInput`). `g` itself is consumed (given back to the pool or returned).
    private static func backward(
        _ steps: [Step], _ g: UnsafeMutablePointer<Float>, input x: Tensor, network: Network,
        parameters: TrainableNetwork?, needInput: Bool, pool: GradientPool, compute: Compute
    ) -> UnsafeMutablePointer<Float> {
        var g = g
        for k in stride(from: steps.count - 1, through: 0, by: -1) {
            let input = k == 0 ? x : steps[k - 1].output
            // The first layer's input gradient is needed only when the caller asks for it.
            let wantInput = k > 0 || needInput
            switch steps[k] {
            case .conv(let c, _, _, _):
                let conv = network.conv(c)
                let h = input.shape[2]
                let w = input.shape[3]
                if let parameters {
                    conv.accumulateWeightGradient(
                        input: Planes(input), inputHeight: h, inputWidth: w, padding: c.padding,
                        outputGradient: g, weightGradient: parameters.gradient("\(c.name).weight")!.data,
                        biasGradient: parameters.gradient("\(c.name).bias")?.data, compute: compute)
                }
                if wantInput {
                    let d = pool.take()
                    conv.inputGradient(g, inputHeight: h, inputWidth: w, padding: c.padding, into: d, compute: compute)
                    pool.give(g)
                    g = d
                }
            case .convTranspose(let c, _):
                let conv = network.convTranspose(c)
                let h = input.shape[2]
                let w = input.shape[3]
                if let parameters {
                    conv.accumulateWeightGradient(
                        input: Planes(input), inputHeight: h, inputWidth: w, outputGradient: g,
                        weightGradient: parameters.gradient("\(c.name).weight")!.data,
                        biasGradient: parameters.gradient("\(c.name).bias")?.data, compute: compute)
                }
                if wantInput {
                    let d = pool.take()
                    conv.inputGradient(g, inputHeight: h, inputWidth: w, into: d, compute: compute)
                    pool.give(g)
                    g = d
                }
            case .norm(let n, let activation, let out, let xhat, let rstd):
                activationBackward(activation, g, output: out, compute: compute)
                let (gamma, _) = network.affine(n)
                InstanceNorm.backward(
                    g, xhat: xhat.data, rstd: rstd.data, gamma: gamma?.data, channels: n.channels,
                    pixels: out.shape[2] * out.shape[3], dx: g,
                    dGamma: parameters?.gradient("\(n.name).weight")?.data,
                    dBeta: parameters?.gradient("\(n.name).bias")?.data, compute: compute)
            case .activation(let activation, let out):
                activationBackward(activation, g, output: out, compute: compute)
            case .tanh(let out):
                Elementwise.tanhBackward(g, output: out.data, count: out.count, compute: compute)
            case .residual(let inner, let out):
                // ∂x = ∂out (the skip) + the inner walk's ∂x.
                let skip = pool.take()
                skip.update(from: g, count: out.count)
                let d = backward(
                    inner, g, input: input, network: network, parameters: parameters, needInput: true, pool: pool,
                    compute: compute)
                Elementwise.add(d, skip, count: out.count, compute: compute)
                pool.give(skip)
                g = d
            }
        }
        return g
    }

    private static func activationBackward(
        _ activation: Activation, _ g: UnsafeMutablePointer<Float>, output: Tensor, compute: Compute
    ) {
        switch activation {
        case .none: break
        case .relu: Elementwise.reluBackward(g, output: output.data, count: output.count, compute: compute)
        case .leakyReLU(let slope):
            Elementwise.leakyReLUBackward(g, output: output.data, count: output.count, slope: slope, compute: compute)
        }
    }
}

/// Gradient buffers of one size, taken and given back during a backward; they
/// stay allocated for the next one.
private final class GradientPool {
    let capacity: Int
    private var free: [UnsafeMutablePointer<Float>] = []
    private var all: [UnsafeMutablePointer<Float>] = []

    init(capacity: Int) { self.capacity = capacity }

    func take() -> UnsafeMutablePointer<Float> {
        if let p = free.popLast() { return p }
        let p = UnsafeMutablePointer<Float>.allocate(capacity: capacity)
        all.append(p)
        return p
    }

    func give(_ p: UnsafeMutablePointer<Float>) { free.append(p) }

    deinit { for p in all { p.deallocate() } }
}
