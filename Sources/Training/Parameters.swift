import CycleGAN
import Tensor

/// A trainable parameter: its value, its gradient and Adam's two moments, each a flat buffer of its own.
final class Parameter {
    let name: String
    let value: Tensor
    let grad: Tensor
    let m: Tensor
    let v: Tensor

    init(name: String, value: Tensor) {
        self.name = name
        self.value = value
        grad = Tensor(shape: value.shape)
        m = Tensor(shape: value.shape)
        v = Tensor(shape: value.shape)
    }

    var count: Int { value.count }
}

/// One of the four networks being trained: its layer list, its parameters,
/// and the kernels built from their current values.
final class TrainableNetwork {
    let layers: [Layer]
    /// In the order of `Layer.parameterShapes`.
    let parameters: [Parameter]
    /// The kernels (and their derived weight forms) for the current values;
    /// `refresh` rebuilds them after an optimizer step.
    var network: Network { built! }
    private var built: Network?

    /// How the convolutions run (`.exact` or `.automatic`, which takes Winograd where it is faster).
    let algorithm: Conv2D.Algorithm
    /// The Winograd layers' filters, transformed at each use: the weights change after every step.
    private let filters = WinogradScratch()

    /// Copies `weights` (reference names) into parameters of its own.
    init(layers: [Layer], weights: [String: Tensor], algorithm: Conv2D.Algorithm = .exact) {
        self.layers = layers
        self.algorithm = algorithm
        parameters = Layer.parameterShapes(of: layers).map { p in
            Parameter(name: p.name, value: weights[p.name]!.copy())
        }
        built = Network(
            layers: layers, weights: Self.values(parameters), trainable: true, algorithm: algorithm,
            winogradScratch: filters)
    }

    /// The current values by reference name (the tensors themselves, not copies).
    var weights: [String: Tensor] { Self.values(parameters) }

    private static func values(_ parameters: [Parameter]) -> [String: Tensor] {
        Dictionary(uniqueKeysWithValues: parameters.map { ($0.name, $0.value) })
    }

    /// Rebuilds every kernel from the current values, so none is stale.
    func refresh() {
        built = nil
        built = Network(
            layers: layers, weights: weights, trainable: true, algorithm: algorithm, winogradScratch: filters)
    }

    func zeroGradients() {
        for p in parameters { p.grad.fill(0) }
    }

    func gradient(_ name: String) -> Tensor? { parameters.first { $0.name == name }?.grad }
}

/// `torch.optim.Adam` over the parameters of one or more networks, with one step count.
struct AdamOptimizer {
    var lr: Float
    var beta1: Float
    var beta2: Float = 0.999
    /// Steps taken so far (PyTorch's `state['step']`, shared by every parameter here).
    var step = 0

    mutating func update(_ networks: [TrainableNetwork], compute: Compute) {
        step += 1
        for net in networks {
            for p in net.parameters {
                Adam.step(
                    value: p.value.data, gradient: p.grad.data, m: p.m.data, v: p.v.data, count: p.count, step: step,
                    lr: lr, beta1: beta1, beta2: beta2, compute: compute)
            }
            net.refresh()
        }
    }
}
