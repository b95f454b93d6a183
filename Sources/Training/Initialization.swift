import CycleGAN
import Foundation
import Tensor

/// The reference's `init_weights`: convolution weights drawn as `--init_type`
/// with `--init_gain`, biases zero, affine norms at γ = 1, β = 0 (PyTorch's
/// own defaults, which the reference leaves alone for instance norm).
public enum InitType: String, Codable, Sendable, CaseIterable {
    case normal, xavier, kaiming, orthogonal

    /// Fresh weights for `layers`, in reference names, from `random`.
    func weights(for layers: [Layer], gain: Double, random: inout SplitMix64) -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for (name, shape) in Layer.parameterShapes(of: layers) {
            let t = Tensor(shape: shape)
            if name.hasSuffix(".weight") && shape.count == 4 {
                fill(t, gain: gain, random: &random)
            } else if name.hasSuffix(".weight") {
                t.fill(1)  // an affine norm's γ
            }
            out[name] = t
        }
        return out
    }

    /// PyTorch's fans: fan_in = size(1)·k·k, fan_out = size(0)·k·k (for a
    /// transposed convolution's [in, out, k, k] weight that reads in and out swapped, as in PyTorch).
    private func fill(_ t: Tensor, gain: Double, random: inout SplitMix64) {
        let receptive = t.shape[2] * t.shape[3]
        let fanIn = Double(t.shape[1] * receptive)
        let fanOut = Double(t.shape[0] * receptive)
        switch self {
        case .normal:
            for i in 0..<t.count { t.data[i] = Float(random.normal() * gain) }
        case .xavier:
            let std = gain * (2 / (fanIn + fanOut)).squareRoot()
            for i in 0..<t.count { t.data[i] = Float(random.normal() * std) }
        case .kaiming:
            let std = (2 / fanIn).squareRoot()
            for i in 0..<t.count { t.data[i] = Float(random.normal() * std) }
        case .orthogonal:
            orthogonal(t, rows: t.shape[0], columns: t.count / t.shape[0], gain: gain, random: &random)
        }
    }

    /// Rows (or columns, whichever are fewer) orthonormal, as `torch.nn.init.orthogonal_`:
    /// Gram–Schmidt in Double on a normal matrix, then scaled by `gain`.
    private func orthogonal(_ t: Tensor, rows: Int, columns: Int, gain: Double, random: inout SplitMix64) {
        let (n, m) = rows <= columns ? (rows, columns) : (columns, rows)
        var q = [Double](repeating: 0, count: n * m)
        for i in 0..<(n * m) { q[i] = random.normal() }
        for i in 0..<n {
            for j in 0..<i {
                var dot = 0.0
                for k in 0..<m { dot += q[i * m + k] * q[j * m + k] }
                for k in 0..<m { q[i * m + k] -= dot * q[j * m + k] }
            }
            var norm = 0.0
            for k in 0..<m { norm += q[i * m + k] * q[i * m + k] }
            let inv = 1 / max(norm.squareRoot(), 1e-12)
            for k in 0..<m { q[i * m + k] *= inv }
        }
        for r in 0..<rows {
            for c in 0..<columns {
                let v = rows <= columns ? q[r * columns + c] : q[c * rows + r]
                t.data[r * columns + c] = Float(v * gain)
            }
        }
    }
}
