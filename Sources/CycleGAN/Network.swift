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
    /// With `winogradScratch`, the Winograd layers transform their filters into it at each call instead
    /// of keeping them (training; the layers of such a network run one at a time).
    public init(
        layers: [Layer], weights: [String: Tensor], trainable: Bool = false, algorithm: Conv2D.Algorithm = .automatic,
        winogradScratch: WinogradScratch? = nil
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
                        algorithm: algorithm, trainable: trainable, winogradScratch: winogradScratch)
                case .convTranspose(let c):
                    transposed[c.name] = ConvTranspose2D(
                        weight: weights["\(c.name).weight"]!, bias: weights["\(c.name).bias"], stride: c.stride,
                        padding: c.padding, outputPadding: c.outputPadding, trainable: trainable)
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
        walk(layers, x, compute: compute)
    }

    private func walk(_ layers: [Layer], _ x: Tensor, compute: Compute) -> Tensor {
        var y = x
        var i = 0
        while i < layers.count {
            switch layers[i] {
            case .conv(let c):
                y = conv(c)(y, padding: c.padding, compute: compute)
            case .convTranspose(let c):
                y = convTranspose(c)(y, compute: compute)
            case .norm(let n):
                // The activation right after a norm runs in the norm's pass over the data.
                let activation = i + 1 < layers.count ? layers[i + 1].activation : nil
                if activation != nil { i += 1 }
                let (g, b) = affine(n)
                y.instanceNorm(gamma: g, beta: b, activation: activation ?? .none, compute: compute)
            case .relu:
                Elementwise.relu(y.data, count: y.count)
            case .leakyReLU(let slope):
                Elementwise.leakyReLU(y.data, count: y.count, slope: slope)
            case .tanh:
                Elementwise.tanh(y.data, count: y.count, compute: compute)
            case .residual(let inner):
                let r = walk(inner, y, compute: compute)
                Elementwise.add(r.data, y.data, count: r.count, compute: compute)
                y = r
            }
            i += 1
        }
        return y
    }
}
