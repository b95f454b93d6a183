import Tensor

/// The reference `NLayerDiscriminator` (PatchGAN) with its weights: for each
/// 70×70-ish patch of the input, one score of how real it looks.
public final class PatchDiscriminator: @unchecked Sendable {
    public let architecture: DiscriminatorArchitecture
    public let weights: [String: Tensor]
    private let convs: [(stage: DiscriminatorArchitecture.Stage, conv: Conv2D, gamma: Tensor?, beta: Tensor?)]

    public init(architecture: DiscriminatorArchitecture, weights: [String: Tensor]) throws {
        let expected = architecture.parameterShapes()
        let names = Set(expected.map(\.name))
        let problems =
            expected.compactMap { p in weights[p.name]?.shape == p.shape ? nil : "\(p.name) should be \(p.shape)" }
            + weights.keys.filter { !names.contains($0) }.sorted().map { "unexpected \($0)" }
        if !problems.isEmpty { throw ArchitectureError.mismatch(problems.prefix(8).joined(separator: "; ")) }
        self.architecture = architecture
        self.weights = weights
        convs = architecture.stages.map { st in
            (
                st,
                Conv2D(
                    weight: weights["model.\(st.index).weight"]!, bias: weights["model.\(st.index).bias"],
                    stride: st.stride),
                weights["model.\(st.index + 1).weight"], weights["model.\(st.index + 1).bias"]
            )
        }
    }

    /// Builds the discriminator whose architecture the weights' names and shapes describe.
    public convenience init(weights: [String: Tensor]) throws {
        try self.init(architecture: .infer(from: weights.mapValues(\.shape)), weights: weights)
    }

    /// Scores `x` ([1, C, H, W] in [-1, 1]): a [1, 1, H', W'] map of patch logits.
    public func forward(_ x: Tensor, compute: Compute = Compute()) -> Tensor {
        var y = x
        for (stage, conv, gamma, beta) in convs {
            y = conv(y, padding: .zero(1), compute: compute)
            let activation: Activation = stage.leaky ? .leakyReLU(0.2) : .none
            if stage.norm {
                y.instanceNorm(gamma: gamma, beta: beta, activation: activation, compute: compute)
            } else if stage.leaky {
                Elementwise.leakyReLU(y.data, count: y.count, slope: 0.2)
            }
        }
        return y
    }
}
