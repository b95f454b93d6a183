import Tensor

/// A ResNet generator with its weights, ready to translate images.
public final class ResnetGenerator: @unchecked Sendable {
    public let architecture: GeneratorArchitecture
    public let weights: [String: Tensor]
    public let layers: Layers

    /// The convolutions, built once from the weights (Winograd filters included).
    public struct Layers: @unchecked Sendable {
        public var first: Conv2D
        public var down: [Conv2D]
        public var blocks: [(Conv2D, Conv2D)]
        public var up: [ConvTranspose2D]
        public var last: Conv2D
        /// γ and β of the norm after each conv, in forward order (nil when not affine).
        public var norms: [(Tensor?, Tensor?)]
    }

    /// `weights` in reference names; checked against `architecture`.
    public init(architecture: GeneratorArchitecture, weights: [String: Tensor]) throws {
        try architecture.check(weights.mapValues(\.shape))
        self.architecture = architecture
        self.weights = weights
        func conv(_ i: String, stride: Int) -> Conv2D {
            Conv2D(weight: weights["\(i).weight"]!, bias: weights["\(i).bias"], stride: stride)
        }
        func norm(_ i: String) -> (Tensor?, Tensor?) { (weights["\(i).weight"], weights["\(i).bias"]) }
        var norms = [norm("model.2"), norm("model.5"), norm("model.8")]
        var blocks: [(Conv2D, Conv2D)] = []
        for b in 0..<architecture.blocks {
            let p = "model.\(GeneratorArchitecture.firstBlockIndex + b).conv_block"
            blocks.append((conv("\(p).1", stride: 1), conv("\(p).5", stride: 1)))
            norms += [norm("\(p).2"), norm("\(p).6")]
        }
        let (u1, u2) = architecture.upIndices
        let up = [u1, u2].map { i in
            ConvTranspose2D(
                weight: weights["model.\(i).weight"]!, bias: weights["model.\(i).bias"], stride: 2, padding: 1,
                outputPadding: 1)
        }
        norms += [norm("model.\(u1 + 1)"), norm("model.\(u2 + 1)")]
        layers = Layers(
            first: conv("model.1", stride: 1), down: [conv("model.4", stride: 2), conv("model.7", stride: 2)],
            blocks: blocks, up: up, last: conv("model.\(architecture.lastConvIndex)", stride: 1), norms: norms)
    }

    /// Builds the generator whose architecture the weights' names and shapes describe.
    public convenience init(weights: [String: Tensor]) throws {
        try self.init(architecture: .infer(from: weights.mapValues(\.shape)), weights: weights)
    }

    /// The size the network runs at for an image of `height`×`width`: both sides
    /// a multiple of 4 (two stride-2 downsamplings and back) and at least 8 (so
    /// that the reflection pads have something to reflect at the lowest resolution).
    public static func workingSize(height: Int, width: Int) -> (Int, Int) {
        func side(_ n: Int) -> Int { max((n + 3) / 4 * 4, 8) }
        return (side(height), side(width))
    }

    /// Translates `x` ([1, C, H, W] in [-1, 1]) to an output of the same height
    /// and width. Other sizes are padded at the bottom and right by reflection
    /// to `workingSize`, and the output is cropped back.
    public func forward(_ x: Tensor, compute: Compute = Compute()) -> Tensor {
        let h = x.shape[x.rank - 2]
        let w = x.shape[x.rank - 1]
        let (wh, ww) = Self.workingSize(height: h, width: w)
        if (wh, ww) == (h, w) { return forwardRaw(x, compute: compute) }
        let padded = x.reflectionPadded(top: 0, bottom: wh - h, left: 0, right: ww - w)
        return forwardRaw(padded, compute: compute).cropped(height: h, width: w)
    }

    /// The network exactly as PyTorch runs it, on a size it accepts.
    public func forwardRaw(_ x: Tensor, compute: Compute = Compute()) -> Tensor {
        var norms = layers.norms.makeIterator()
        func normReLU(_ t: Tensor, relu: Bool = true) {
            let (g, b) = norms.next()!
            t.instanceNorm(gamma: g, beta: b, activation: relu ? .relu : .none, compute: compute)
        }
        var y = layers.first(x, padding: .reflect(3), compute: compute)
        normReLU(y)
        for conv in layers.down {
            y = conv(y, padding: .zero(1), compute: compute)
            normReLU(y)
        }
        for (c1, c2) in layers.blocks {
            let h = c1(y, padding: .reflect(1), compute: compute)
            normReLU(h)
            let r = c2(h, padding: .reflect(1), compute: compute)
            normReLU(r, relu: false)
            Elementwise.add(r.data, y.data, count: r.count, compute: compute)
            y = r
        }
        for convT in layers.up {
            y = convT(y, compute: compute)
            normReLU(y)
        }
        y = layers.last(y, padding: .reflect(3), compute: compute)
        Elementwise.tanh(y.data, count: y.count, compute: compute)
        return y
    }
}
