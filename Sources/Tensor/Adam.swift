import Foundation

/// torch.optim.Adam, one step of its single-tensor CPU path (amsgrad off, no weight decay), with its order of
/// operations so that the values agree with PyTorch's to the last bits or nearly:
///
///     m ← lerp(m, g, 1 − β1)          v ← v·β2 + ((1 − β2)·g)·g   (both fused as torch's vector code)
///     step_size = lr / (1 − β1^t)    denom = √v / √(1 − β2^t) + eps
///     value ← value − step_size · m / denom
public enum Adam {
    /// `step` is t, counted from 1. Runs over slices of the tensor in parallel (each element on its own).
    public static func step(
        value: UnsafeMutablePointer<Float>, gradient: UnsafePointer<Float>, m: UnsafeMutablePointer<Float>,
        v: UnsafeMutablePointer<Float>, count: Int, step: Int, lr: Float, beta1: Float, beta2: Float = 0.999,
        eps: Float = 1e-8, compute: Compute
    ) {
        precondition(step >= 1, "Adam steps count from 1")
        // torch takes the hyper-parameters as Python floats (Double) and works out the bias corrections in
        // Double; from Float(0.999) instead of 0.999, 1 − β2 would be off by 2e-5 of itself. The decimals
        // the Floats were written as are those Doubles.
        let (b1, b2, rate) = (decimal(beta1), decimal(beta2), decimal(lr))
        let t = Double(step)
        let stepSize = rate / (1 - pow(b1, t))
        let correction2 = (1 - pow(b2, t)).squareRoot()
        // The scalars as the Float tensor ops see them.
        let weight = Float(1 - b1)
        let decay2 = Float(b2)
        let fresh2 = Float(1 - b2)
        let divisor = Float(correction2)
        let negativeStep = Float(-stepSize)
        // torch's vectorised lerp: base + coeff·(end − start), fused, coeff = w or w − 1 from the nearer end.
        let small = abs(weight) < 0.5
        let coeff = small ? weight : weight - 1
        compute.forSlices(count) { _, slice in
            for i in slice {
                let g = gradient[i]
                let mi = m[i]
                let mNew = (small ? mi : g).addingProduct(coeff, g - mi)
                m[i] = mNew
                let vNew = (v[i] * decay2).addingProduct(fresh2 * g, g)
                v[i] = vNew
                let denom = vNew.squareRoot() / divisor + eps
                value[i] = value[i] + negativeStep * mNew / denom
            }
        }
    }

    private static func decimal(_ x: Float) -> Double { Double("\(x)") ?? Double(x) }
}
