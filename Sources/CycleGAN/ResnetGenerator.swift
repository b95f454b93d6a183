import Tensor

/// A ResNet generator with its weights, ready to translate images.
public final class ResnetGenerator: @unchecked Sendable {
    public let architecture: GeneratorArchitecture
    /// The layers with their kernels, built once from the weights (Winograd filters included).
    public let network: Network

    /// In reference names.
    public var weights: [String: Tensor] { network.weights }

    /// `weights` in reference names; checked against `architecture`. The kernels' forms of the
    /// weights (Winograd filters) are built on `compute`'s threads.
    public init(architecture: GeneratorArchitecture, weights: [String: Tensor], compute: Compute = Compute()) throws {
        try architecture.check(weights.mapValues(\.shape))
        self.architecture = architecture
        network = Network(layers: architecture.sequential, weights: weights, compute: compute)
    }

    /// Builds the generator whose architecture the weights' names and shapes describe.
    public convenience init(weights: [String: Tensor], compute: Compute = Compute()) throws {
        try self.init(architecture: .infer(from: weights.mapValues(\.shape)), weights: weights, compute: compute)
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
        forward(x, compute: compute, progress: { _ in })
    }

    /// `forward`, telling `progress` how far it is (see `Network.forward(_:compute:progress:)`).
    public func forward(
        _ x: Tensor, compute: Compute = Compute(), progress: (Double) throws -> Void
    ) rethrows -> Tensor {
        let h = x.shape[x.rank - 2]
        let w = x.shape[x.rank - 1]
        let (wh, ww) = Self.workingSize(height: h, width: w)
        if (wh, ww) == (h, w) { return try network.forward(x, compute: compute, progress: progress) }
        let padded = x.reflectionPadded(top: 0, bottom: wh - h, left: 0, right: ww - w)
        return try network.forward(padded, compute: compute, progress: progress).cropped(height: h, width: w)
    }
}
