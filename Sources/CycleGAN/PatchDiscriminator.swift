import Tensor

/// The reference `NLayerDiscriminator` (PatchGAN) with its weights: for each
/// 70×70-ish patch of the input, one score of how real it looks.
public final class PatchDiscriminator: @unchecked Sendable {
    public let architecture: DiscriminatorArchitecture
    public let network: Network

    /// In reference names.
    public var weights: [String: Tensor] { network.weights }

    public init(architecture: DiscriminatorArchitecture, weights: [String: Tensor]) throws {
        let expected = architecture.parameterShapes()
        let names = Set(expected.map(\.name))
        let problems =
            expected.compactMap { p in weights[p.name]?.shape == p.shape ? nil : "\(p.name) should be \(p.shape)" }
            + weights.keys.filter { !names.contains($0) }.sorted().map { "unexpected \($0)" }
        if !problems.isEmpty { throw ArchitectureError.mismatch(problems.prefix(8).joined(separator: "; ")) }
        self.architecture = architecture
        network = Network(layers: architecture.sequential, weights: weights)
    }

    /// Builds the discriminator whose architecture the weights' names and shapes describe.
    public convenience init(weights: [String: Tensor]) throws {
        try self.init(architecture: .infer(from: weights.mapValues(\.shape)), weights: weights)
    }

    /// Scores `x` ([1, C, H, W] in [-1, 1]): a [1, 1, H', W'] map of patch logits.
    public func forward(_ x: Tensor, compute: Compute = Compute()) -> Tensor {
        network.forward(x, compute: compute)
    }
}
