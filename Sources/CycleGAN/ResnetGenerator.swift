import Tensor

/// A ResNet generator with its weights, ready to translate images.
public final class ResnetGenerator: @unchecked Sendable {
    public let architecture: GeneratorArchitecture
    public let weights: [String: Tensor]

    /// `weights` in reference names; checked against `architecture`.
    public init(architecture: GeneratorArchitecture, weights: [String: Tensor]) throws {
        try architecture.check(weights.mapValues(\.shape))
        self.architecture = architecture
        self.weights = weights
    }

    /// Builds the generator whose architecture the weights' names and shapes describe.
    public convenience init(weights: [String: Tensor]) throws {
        try self.init(architecture: .infer(from: weights.mapValues(\.shape)), weights: weights)
    }

    /// Translates `x` ([1, C, H, W] in [-1, 1]) to an output of the same height and width.
    public func forward(_ x: Tensor) -> Tensor {
        fatalError("not yet")
    }
}
