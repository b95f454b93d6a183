import Tensor

/// A network's layers with its weights and the kernels built from them.
///
/// The kernels (Winograd filters, tap-major and phase-split copies of the
/// weights) are derived from the weights once, here; a trainer that changes
/// the weights builds a new `Network` after each optimizer step, so a derived
/// form can never be stale.
public final class Network: @unchecked Sendable {
    public let layers: [Layer]
    /// In reference names.
    public let weights: [String: Tensor]
    private let convs: [String: Conv2D]
    private let transposed: [String: ConvTranspose2D]

    /// `weights` must hold every parameter of `layers` (checked by the architectures).
    /// `trainable` also builds what the kernels' backward passes need; `algorithm` is the
    /// convolutions' (`.exact` rounds as PyTorch's direct convolutions do, see `Conv2D.Algorithm`).
    /// The derived forms are built on `compute`'s threads. With `winogradScratch`, the Winograd layers
    /// transform their filters into it at each call instead of keeping them (training; the layers of such
    /// a network run one at a time).
    public init(
        layers: [Layer], weights: [String: Tensor], trainable: Bool = false, algorithm: Conv2D.Algorithm = .automatic,
        winogradScratch: WinogradScratch? = nil, compute: Compute = Compute()
    ) {
        self.layers = layers
        self.weights = weights
        var convs: [String: Conv2D] = [:]
        var transposed: [String: ConvTranspose2D] = [:]
        func build(_ layers: [Layer]) {
            for layer in layers {
                switch layer {
                case .conv(let c):
                    convs[c.name] = Conv2D(
                        weight: weights["\(c.name).weight"]!, bias: weights["\(c.name).bias"], stride: c.stride,
                        algorithm: algorithm, trainable: trainable, winogradScratch: winogradScratch,
                        compute: compute)
                case .convTranspose(let c):
                    transposed[c.name] = ConvTranspose2D(
                        weight: weights["\(c.name).weight"]!, bias: weights["\(c.name).bias"], stride: c.stride,
                        padding: c.padding, outputPadding: c.outputPadding, trainable: trainable, compute: compute)
                case .residual(let inner):
                    build(inner)
                case .norm, .relu, .leakyReLU, .tanh:
                    break
                }
            }
        }
        build(layers)
        self.convs = convs
        self.transposed = transposed
    }

    public func conv(_ layer: ConvLayer) -> Conv2D { convs[layer.name]! }
    public func convTranspose(_ layer: ConvTransposeLayer) -> ConvTranspose2D { transposed[layer.name]! }
    /// γ and β of a norm (nil when it is not affine).
    public func affine(_ layer: NormLayer) -> (gamma: Tensor?, beta: Tensor?) {
        (weights["\(layer.name).weight"], weights["\(layer.name).bias"])
    }

    /// The whole-image forward pass of `x` ([1, C, H, W]), as PyTorch runs it.
    /// Activations are updated in place where the layer allows it.
    public func forward(_ x: Tensor, compute: Compute = Compute()) -> Tensor {
        forward(x, compute: compute, progress: { _ in })
    }

    /// `forward`, where `progress` hears the fraction done (0 < f ≤ 1) after each step (a layer, a norm with its
    /// activation, a residual sum), weighted by the steps' multiply-adds (`work`) so that equal
    /// fractions take about equal time; it may throw to stop the pass.
    public func forward(
        _ x: Tensor, compute: Compute = Compute(), progress: (Double) throws -> Void
    ) rethrows -> Tensor {
        let shape = Shape(channels: x.shape[x.rank - 3], height: x.shape[x.rank - 2], width: x.shape[x.rank - 1])
        var meter = Meter(total: work(layers, shape).macs)
        return try walk(layers, x, compute: compute, meter: &meter, progress: progress)
    }

    /// An activation's size, for counting work without running the layers.
    public struct Shape: Sendable, Equatable {
        public var channels: Int
        public var height: Int
        public var width: Int

        public init(channels: Int, height: Int, width: Int) {
            self.channels = channels
            self.height = height
            self.width = width
        }

        public var values: Double { Double(channels * height * width) }
    }

    /// The multiply-adds of `layers` on an input of `shape` (an elementwise step counts one per
    /// value) and the shape they give.
    public func work(_ layers: [Layer], _ shape: Shape) -> (macs: Double, shape: Shape) {
        var total = 0.0
        var s = shape
        for layer in layers {
            let step = work(layer, s)
            total += step.macs
            s = step.shape
        }
        return (total, s)
    }

    /// The multiply-adds of one layer on an input of `shape`, and the shape it gives.
    public func work(_ layer: Layer, _ shape: Shape) -> (macs: Double, shape: Shape) {
        switch layer {
        case .conv(let c):
            let (h, w) = conv(c).outputSize(height: shape.height, width: shape.width, padding: c.padding)
            let out = Shape(channels: c.outChannels, height: h, width: w)
            return (out.values * Double(c.inChannels * c.kernel * c.kernel), out)
        case .convTranspose(let c):
            let (h, w) = convTranspose(c).outputSize(height: shape.height, width: shape.width)
            return (
                shape.values * Double(c.outChannels * c.kernel * c.kernel),
                Shape(channels: c.outChannels, height: h, width: w)
            )
        case .norm, .relu, .leakyReLU, .tanh:
            return (shape.values, shape)
        case .residual(let inner):
            return (work(inner, shape).macs + shape.values, shape)
        }
    }

    /// Work done so far in a forward pass, out of its total.
    private struct Meter {
        let total: Double
        var done = 0.0

        /// The fraction done after `macs` more.
        mutating func add(_ macs: Double) -> Double {
            done += macs
            return total > 0 ? min(done / total, 1) : 1
        }
    }

    private func walk(
        _ layers: [Layer], _ x: Tensor, compute: Compute, meter: inout Meter, progress: (Double) throws -> Void
    ) rethrows -> Tensor {
        var y = x
        var i = 0
        while i < layers.count {
            let before = Shape(channels: y.shape[1], height: y.shape[2], width: y.shape[3])
            switch layers[i] {
            case .conv(let c):
                y = conv(c)(y, padding: c.padding, compute: compute)
                try progress(meter.add(work(layers[i], before).macs))
            case .convTranspose(let c):
                y = convTranspose(c)(y, compute: compute)
                try progress(meter.add(work(layers[i], before).macs))
            case .norm(let n):
                // The activation right after a norm runs in the norm's pass over the data.
                let activation = i + 1 < layers.count ? layers[i + 1].activation : nil
                if activation != nil { i += 1 }
                let (g, b) = affine(n)
                y.instanceNorm(gamma: g, beta: b, activation: activation ?? .none, compute: compute)
                try progress(meter.add(before.values * (activation == nil ? 1 : 2)))
            case .relu:
                Elementwise.relu(y.data, count: y.count)
                try progress(meter.add(before.values))
            case .leakyReLU(let slope):
                Elementwise.leakyReLU(y.data, count: y.count, slope: slope)
                try progress(meter.add(before.values))
            case .tanh:
                Elementwise.tanh(y.data, count: y.count, compute: compute)
                try progress(meter.add(before.values))
            case .residual(let inner):
                let r = try walk(inner, y, compute: compute, meter: &meter, progress: progress)
                Elementwise.add(r.data, y.data, count: r.count, compute: compute)
                y = r
                try progress(meter.add(before.values))
            }
            i += 1
        }
        return y
    }
}
