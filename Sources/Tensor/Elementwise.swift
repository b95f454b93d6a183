import Foundation

/// Per-channel sums for instance norm, accumulated in Double so that bands of
/// rows can be added up in any order and still give the whole image's statistics.
public struct ChannelMoments: Sendable {
    public var sum: [Double]
    public var sumOfSquares: [Double]
    public var count: Int

    public init(channels: Int) {
        sum = [Double](repeating: 0, count: channels)
        sumOfSquares = [Double](repeating: 0, count: channels)
        count = 0
    }

    /// Adds `pixels` values of each of the channels, plane c at `data + c·channelStride`.
    public mutating func accumulate(
        _ data: UnsafePointer<Float>, channelStride: Int, pixels: Int, compute: Compute
    ) {
        let channels = sum.count
        sum.withUnsafeMutableBufferPointer { s in
            sumOfSquares.withUnsafeMutableBufferPointer { q in
                let s = s.baseAddress!
                let q = q.baseAddress!
                compute.forEach(channels) { c in
                    let x = data + c * channelStride
                    var a = 0.0
                    var b = 0.0
                    for i in 0..<pixels {
                        let v = Double(x[i])
                        a += v
                        b += v * v
                    }
                    s[c] += a
                    q[c] += b
                }
            }
        }
        count += pixels
    }

    /// Per channel, the mean, the scale and the shift that normalise:
    /// y = (x − mean)·scale + shift equals (x − mean)/√(var + eps)·γ + β with the
    /// biased variance, as PyTorch. Subtracting the mean first (rather than folding
    /// it into the shift) keeps a constant channel exactly zero, as PyTorch does.
    public func normalization(eps: Float, gamma: Tensor?, beta: Tensor?) -> Normalization {
        let n = Double(count)
        var out = Normalization(channels: sum.count)
        for c in 0..<sum.count {
            let mean = sum[c] / n
            let variance = max(sumOfSquares[c] / n - mean * mean, 0)
            out.mean[c] = Float(mean)
            out.scale[c] = Float(1 / (variance + Double(eps)).squareRoot() * Double(gamma?.data[c] ?? 1))
            out.shift[c] = beta?.data[c] ?? 0
        }
        return out
    }
}

/// y = (x − mean)·scale + shift, per channel.
public struct Normalization: Sendable {
    public var mean: [Float]
    public var scale: [Float]
    public var shift: [Float]

    init(channels: Int) {
        mean = [Float](repeating: 0, count: channels)
        scale = [Float](repeating: 1, count: channels)
        shift = [Float](repeating: 0, count: channels)
    }
}

/// What follows a norm in the networks.
public enum Activation: Sendable {
    case none
    case relu
    case leakyReLU(Float)

    /// In place on the gradient g of the activation's output y: g becomes the gradient of its input.
    public func backward(
        _ g: UnsafeMutablePointer<Float>, output y: UnsafePointer<Float>, count: Int, compute: Compute
    ) {
        switch self {
        case .none: return
        case .relu: Elementwise.reluBackward(g, output: y, count: count, compute: compute)
        case .leakyReLU(let slope):
            Elementwise.leakyReLUBackward(g, output: y, count: count, slope: slope, compute: compute)
        }
    }
}

public enum Elementwise {
    /// x ← act((x − mean[c])·scale[c] + shift[c]) for each channel plane.
    public static func normalize(
        _ data: UnsafeMutablePointer<Float>, channelStride: Int, pixels: Int,
        _ norm: Normalization, activation: Activation, compute: Compute
    ) {
        compute.forEach(norm.mean.count) { c in
            let x = data + c * channelStride
            let m = norm.mean[c]
            let a = norm.scale[c]
            let b = norm.shift[c]
            switch activation {
            case .none:
                for i in 0..<pixels { x[i] = (x[i] - m) * a + b }
            case .relu:
                for i in 0..<pixels { x[i] = max((x[i] - m) * a + b, 0) }
            case .leakyReLU(let slope):
                for i in 0..<pixels {
                    let v = (x[i] - m) * a + b
                    x[i] = v > 0 ? v : v * slope
                }
            }
        }
    }

    public static func relu(_ x: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { x[i] = max(x[i], 0) }
    }

    /// g ← g·(y > 0), from the forward's output y.
    public static func reluBackward(
        _ g: UnsafeMutablePointer<Float>, output y: UnsafePointer<Float>, count: Int, compute: Compute
    ) {
        compute.forSlices(count) { _, slice in
            var i = slice.lowerBound
            while i + 8 <= slice.upperBound {
                let v = UnsafeRawPointer(g + i).loadUnaligned(as: SIMD8<Float>.self)
                let out = v.replacing(
                    with: 0, where: UnsafeRawPointer(y + i).loadUnaligned(as: SIMD8<Float>.self) .<= 0)
                UnsafeMutableRawPointer(g + i).storeBytes(of: out, as: SIMD8<Float>.self)
                i += 8
            }
            for j in i..<slice.upperBound { g[j] = y[j] > 0 ? g[j] : 0 }
        }
    }

    public static func leakyReLU(_ x: UnsafeMutablePointer<Float>, count: Int, slope: Float) {
        for i in 0..<count { x[i] = x[i] > 0 ? x[i] : x[i] * slope }
    }

    /// g ← g·(y > 0 ? 1 : slope), from the forward's output y (positive slope: y > 0 exactly where x > 0).
    public static func leakyReLUBackward(
        _ g: UnsafeMutablePointer<Float>, output y: UnsafePointer<Float>, count: Int, slope: Float, compute: Compute
    ) {
        compute.forSlices(count) { _, slice in
            var i = slice.lowerBound
            while i + 8 <= slice.upperBound {
                let v = UnsafeRawPointer(g + i).loadUnaligned(as: SIMD8<Float>.self)
                let negative = UnsafeRawPointer(y + i).loadUnaligned(as: SIMD8<Float>.self) .<= 0
                UnsafeMutableRawPointer(g + i).storeBytes(
                    of: v.replacing(with: v * slope, where: negative), as: SIMD8<Float>.self)
                i += 8
            }
            for j in i..<slice.upperBound { g[j] = y[j] > 0 ? g[j] : g[j] * slope }
        }
    }

    public static func tanh(_ x: UnsafeMutablePointer<Float>, count: Int, compute: Compute) {
        let chunk = 16_384
        compute.forEach((count + chunk - 1) / chunk) { b in
            for i in (b * chunk)..<min(count, (b + 1) * chunk) { x[i] = Foundation.tanh(x[i]) }
        }
    }

    /// g ← g·(1 − y²), from the forward's output y.
    public static func tanhBackward(
        _ g: UnsafeMutablePointer<Float>, output y: UnsafePointer<Float>, count: Int, compute: Compute
    ) {
        compute.forSlices(count) { _, slice in
            var i = slice.lowerBound
            while i + 8 <= slice.upperBound {
                let v = UnsafeRawPointer(g + i).loadUnaligned(as: SIMD8<Float>.self)
                let t = UnsafeRawPointer(y + i).loadUnaligned(as: SIMD8<Float>.self)
                UnsafeMutableRawPointer(g + i).storeBytes(of: v * (1 - t * t), as: SIMD8<Float>.self)
                i += 8
            }
            for j in i..<slice.upperBound { g[j] = g[j] * (1 - y[j] * y[j]) }
        }
    }

    /// sums[c] += Σ_p x[c·pixels + p], added up in Double (a bias's gradient).
    public static func accumulateChannelSums(
        _ x: UnsafePointer<Float>, channels: Int, pixels: Int, into sums: UnsafeMutablePointer<Float>,
        compute: Compute
    ) {
        compute.forEach(channels) { c in
            sums[c] += Float(sum(x + c * pixels, count: pixels))
        }
    }

    /// Σ x[i] in Double, over four running sums (fixed order: the same bits every time).
    @inline(__always)
    static func sum(_ x: UnsafePointer<Float>, count: Int) -> Double {
        var s = SIMD4<Double>()
        var i = 0
        while i + 4 <= count {
            s += SIMD4(Double(x[i]), Double(x[i + 1]), Double(x[i + 2]), Double(x[i + 3]))
            i += 4
        }
        var total = s.sum()
        while i < count {
            total += Double(x[i])
            i += 1
        }
        return total
    }

    /// x ← x + y.
    public static func add(_ x: UnsafeMutablePointer<Float>, _ y: UnsafePointer<Float>, count: Int, compute: Compute) {
        compute.forSlices(count) { _, slice in
            for i in slice { x[i] += y[i] }
        }
    }
}

/// Instance norm for training: the forward keeps what the backward needs.
public enum InstanceNorm {
    /// x [C, P] (P = H·W) → y [C, P] = activation(xhat·γ + β) (γ, β nil when not affine), with the statistics
    /// of the inference path (`ChannelMoments`: Double, biased variance, eps inside the square root).
    /// Saves xhat [C, P] = (x − mean)·rstd and rstd [C] for `backward`. y may be x; xhat may not.
    public static func trainingForward(
        _ x: UnsafePointer<Float>, channels: Int, pixels: Int, gamma: UnsafePointer<Float>?,
        beta: UnsafePointer<Float>?, activation: Activation, eps: Float = 1e-5,
        xhat: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>, y: UnsafeMutablePointer<Float>,
        compute: Compute
    ) {
        let compute = compute.now()
        var moments = ChannelMoments(channels: channels)
        moments.accumulate(x, channelStride: pixels, pixels: pixels, compute: compute)
        let m = moments
        let n = Double(pixels)
        compute.forEach(channels) { c in
            let mean = m.sum[c] / n
            let variance = max(m.sumOfSquares[c] / n - mean * mean, 0)
            let r = Float(1 / (variance + Double(eps)).squareRoot())
            rstd[c] = r
            let mu = Float(mean)
            let g = gamma?[c] ?? 1
            let b = beta?[c] ?? 0
            let (src, xh, out) = (x + c * pixels, xhat + c * pixels, y + c * pixels)
            let slope: Float
            switch activation {
            case .none: slope = 1
            case .relu: slope = 0
            case .leakyReLU(let s): slope = s
            }
            var i = 0
            while i + 8 <= pixels {
                let v = (UnsafeRawPointer(src + i).loadUnaligned(as: SIMD8<Float>.self) - mu) * r
                UnsafeMutableRawPointer(xh + i).storeBytes(of: v, as: SIMD8<Float>.self)
                let o = v * g + b
                UnsafeMutableRawPointer(out + i).storeBytes(
                    of: o.replacing(with: o * slope, where: o .<= 0), as: SIMD8<Float>.self)
                i += 8
            }
            for j in i..<pixels {
                let v = (src[j] - mu) * r
                xh[j] = v
                let o = v * g + b
                out[j] = o > 0 ? o : o * slope
            }
        }
    }

    /// y [C, P] = activation(xhat·γ + β) again from the saved xhat: what `trainingForward` wrote into y,
    /// for a tape that keeps only xhat (the next layer's input and the activation's mask come back from it).
    public static func output(
        xhat: UnsafePointer<Float>, channels: Int, pixels: Int, gamma: UnsafePointer<Float>?,
        beta: UnsafePointer<Float>?, activation: Activation, into y: UnsafeMutablePointer<Float>, compute: Compute
    ) {
        // The same arithmetic as `trainingForward`, so the values are the same to the bit.
        let slope: Float
        switch activation {
        case .none: slope = 1
        case .relu: slope = 0
        case .leakyReLU(let s): slope = s
        }
        compute.forEach(channels) { c in
            let g = gamma?[c] ?? 1
            let b = beta?[c] ?? 0
            let (xh, out) = (xhat + c * pixels, y + c * pixels)
            var i = 0
            while i + 8 <= pixels {
                let o = UnsafeRawPointer(xh + i).loadUnaligned(as: SIMD8<Float>.self) * g + b
                UnsafeMutableRawPointer(out + i).storeBytes(
                    of: o.replacing(with: o * slope, where: o .<= 0), as: SIMD8<Float>.self)
                i += 8
            }
            for j in i..<pixels {
                let o = xh[j] * g + b
                out[j] = o > 0 ? o : o * slope
            }
        }
    }

    /// dy is ∂L/∂(xhat·γ + β) (the activation's backward already applied). Overwrites dx [C, P] (may be dy):
    /// dx = rstd·γ·(dy − mean(dy) − xhat·mean(dy·xhat)). Adds dγ += Σ dy·xhat and dβ += Σ dy when non-nil.
    public static func backward(
        _ dy: UnsafePointer<Float>, xhat: UnsafePointer<Float>, rstd: UnsafePointer<Float>,
        gamma: UnsafePointer<Float>?, channels: Int, pixels: Int, dx: UnsafeMutablePointer<Float>,
        dGamma: UnsafeMutablePointer<Float>?, dBeta: UnsafeMutablePointer<Float>?, compute: Compute
    ) {
        let n = Double(pixels)
        compute.forEach(channels) { c in
            let (g, xh, out) = (dy + c * pixels, xhat + c * pixels, dx + c * pixels)
            // Runs of 256 summed in Float lanes (vectorised), the runs in Double.
            var sumDy = 0.0
            var sumDyXhat = 0.0
            var i = 0
            while i < pixels {
                let end = min(pixels, i + 256)
                var sums = SIMD8<Float>()
                var products = SIMD8<Float>()
                while i + 8 <= end {
                    let d = UnsafeRawPointer(g + i).loadUnaligned(as: SIMD8<Float>.self)
                    sums += d
                    products += d * UnsafeRawPointer(xh + i).loadUnaligned(as: SIMD8<Float>.self)
                    i += 8
                }
                var tailSum: Float = 0
                var tailProduct: Float = 0
                while i < end {
                    tailSum += g[i]
                    tailProduct += g[i] * xh[i]
                    i += 1
                }
                sumDy += Double(sums.sum()) + Double(tailSum)
                sumDyXhat += Double(products.sum()) + Double(tailProduct)
            }
            if let dGamma { dGamma[c] += Float(sumDyXhat) }
            if let dBeta { dBeta[c] += Float(sumDy) }
            let a = rstd[c] * (gamma?[c] ?? 1)
            let meanDy = Float(sumDy / n)
            let meanDyXhat = Float(sumDyXhat / n)
            i = 0
            while i + 8 <= pixels {
                let d = UnsafeRawPointer(g + i).loadUnaligned(as: SIMD8<Float>.self)
                let h = UnsafeRawPointer(xh + i).loadUnaligned(as: SIMD8<Float>.self)
                UnsafeMutableRawPointer(out + i).storeBytes(
                    of: a * (d - meanDy - h * meanDyXhat), as: SIMD8<Float>.self)
                i += 8
            }
            for j in i..<pixels { out[j] = a * (g[j] - meanDy - xh[j] * meanDyXhat) }
        }
    }
}

extension Tensor {
    /// Instance norm over each channel of a [1, C, H, W] tensor, in place.
    public func instanceNorm(
        eps: Float = 1e-5, gamma: Tensor? = nil, beta: Tensor? = nil, activation: Activation = .none,
        compute: Compute
    ) {
        let compute = compute.now()
        let c = shape[rank - 3]
        let pixels = shape[rank - 2] * shape[rank - 1]
        var m = ChannelMoments(channels: c)
        m.accumulate(data, channelStride: pixels, pixels: pixels, compute: compute)
        Elementwise.normalize(
            data, channelStride: pixels, pixels: pixels, m.normalization(eps: eps, gamma: gamma, beta: beta),
            activation: activation, compute: compute)
    }

    /// Reflection padding of a [1, C, H, W] tensor (repeated reflection when p ≥ H).
    public func reflectionPadded(top: Int, bottom: Int, left: Int, right: Int) -> Tensor {
        let c = shape[rank - 3]
        let h = shape[rank - 2]
        let w = shape[rank - 1]
        let oh = h + top + bottom
        let ow = w + left + right
        let out = Tensor(shape: [1, c, oh, ow])
        let cols = (0..<ow).map { reflectIndex($0 - left, w) }
        for ch in 0..<c {
            for y in 0..<oh {
                let src = data + (ch * h + reflectIndex(y - top, h)) * w
                let dst = out.data + (ch * oh + y) * ow
                for x in 0..<ow { dst[x] = src[cols[x]] }
            }
        }
        return out
    }

    /// The top-left `height`×`width` of a [1, C, H, W] tensor.
    public func cropped(height: Int, width: Int) -> Tensor {
        let c = shape[rank - 3]
        let h = shape[rank - 2]
        let w = shape[rank - 1]
        precondition(height <= h && width <= w)
        let out = Tensor(shape: [1, c, height, width])
        for ch in 0..<c {
            for y in 0..<height {
                (out.data + (ch * height + y) * width).update(from: data + (ch * h + y) * w, count: width)
            }
        }
        return out
    }
}
