import Foundation

/// The losses of CycleGAN, as PyTorch's with the default mean reduction. Each returns the mean loss (summed in
/// Double) and, when `gradient` is non-nil, overwrites gradient[i] = scale·∂mean/∂x[i] (scale: the loss's
/// weight, or the gradient arriving from above).
public enum Loss {
    /// MSELoss against a constant target (LSGAN's real/fake labels).
    public static func mse(
        _ x: UnsafePointer<Float>, target: Float, count: Int, gradient: UnsafeMutablePointer<Float>?, scale: Float
    ) -> Float {
        let t = Double(target)
        var sum = 0.0
        for i in 0..<count {
            let d = Double(x[i]) - t
            sum += d * d
        }
        if let gradient {
            // PyTorch: 2/N · (x − t) · grad_output.
            let norm = Float(2 / Double(count))
            for i in 0..<count { gradient[i] = norm * (x[i] - target) * scale }
        }
        return Float(sum / Double(count))
    }

    /// BCEWithLogitsLoss against a constant target, in the stable form
    /// (1 − t)·x − log σ(x) = (1 − t)·x + max(−x, 0) + log(1 + e^−|x|); ∂/∂x = σ(x) − t.
    public static func bceWithLogits(
        _ x: UnsafePointer<Float>, target: Float, count: Int, gradient: UnsafeMutablePointer<Float>?, scale: Float
    ) -> Float {
        let t = Double(target)
        var sum = 0.0
        for i in 0..<count {
            let v = Double(x[i])
            sum += (1 - t) * v + max(-v, 0) + log1p(exp(-abs(v)))
        }
        if let gradient {
            let norm = scale / Float(count)
            for i in 0..<count {
                let v = Double(x[i])
                let sigmoid = v >= 0 ? 1 / (1 + exp(-v)) : exp(v) / (1 + exp(v))
                gradient[i] = Float(sigmoid - t) * norm
            }
        }
        return Float(sum / Double(count))
    }

    /// L1Loss between x and y (the cycle and identity losses); the gradient is sign(x − y)·scale/N, sign(0) = 0.
    public static func l1(
        _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, count: Int, gradient: UnsafeMutablePointer<Float>?,
        scale: Float
    ) -> Float {
        var sum = 0.0
        for i in 0..<count { sum += abs(Double(x[i]) - Double(y[i])) }
        if let gradient {
            let norm = scale / Float(count)
            for i in 0..<count {
                let d = x[i] - y[i]
                gradient[i] = d > 0 ? norm : (d < 0 ? -norm : 0)
            }
        }
        return Float(sum / Double(count))
    }
}
