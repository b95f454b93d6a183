import Foundation
import Testing

@testable import Tensor

/// The backward kernels against central differences of Float64 references of the same operations,
/// L = Σ g·f(x) for a random g, at shapes the fixtures do not have.
@Suite struct FiniteDifferenceTests {
    let compute = Compute(threads: 2)

    struct ConvCase: CustomTestStringConvertible, Sendable {
        var cin: Int, cout: Int, kernel: Int, stride: Int, padding: Padding, height: Int, width: Int
        var testDescription: String { "\(cin)→\(cout) k\(kernel) s\(stride) \(padding) \(height)×\(width)" }
    }

    @Test(arguments: [
        ConvCase(cin: 4, cout: 5, kernel: 3, stride: 1, padding: .reflect(1), height: 7, width: 6),
        ConvCase(cin: 4, cout: 5, kernel: 3, stride: 1, padding: .zero(1), height: 6, width: 7),
        ConvCase(cin: 3, cout: 4, kernel: 7, stride: 1, padding: .reflect(3), height: 9, width: 8),
        ConvCase(cin: 6, cout: 3, kernel: 7, stride: 1, padding: .reflect(3), height: 5, width: 8),
        ConvCase(cin: 4, cout: 6, kernel: 3, stride: 2, padding: .zero(1), height: 9, width: 8),
        ConvCase(cin: 3, cout: 5, kernel: 4, stride: 2, padding: .zero(1), height: 8, width: 9),
        ConvCase(cin: 3, cout: 5, kernel: 3, stride: 2, padding: .reflect(1), height: 7, width: 6),
        ConvCase(cin: 5, cout: 1, kernel: 4, stride: 1, padding: .zero(1), height: 6, width: 5),
        ConvCase(cin: 32, cout: 32, kernel: 3, stride: 1, padding: .reflect(1), height: 7, width: 6),
        ConvCase(cin: 3, cout: 4, kernel: 3, stride: 1, padding: .zero(3), height: 4, width: 5),
    ])
    func convGradients(_ c: ConvCase) {
        let x = Tensor.random([1, c.cin, c.height, c.width], seed: 11)
        let weight = Tensor.random([c.cout, c.cin, c.kernel, c.kernel], seed: 12, scale: 0.3)
        let bias = Tensor.random([c.cout], seed: 13)
        let conv = Conv2D(weight: weight, bias: bias, stride: c.stride, trainable: true)
        let (oh, ow) = conv.outputSize(height: c.height, width: c.width, padding: c.padding)
        let g = Tensor.random([c.cout, oh, ow], seed: 14)
        func reference(_ x: [Double], _ w: [Double], _ b: [Double]) -> [Double] {
            Reference.conv(x, w, b, c: c)
        }
        let (xs, ws, bs) = (x.doubles, weight.doubles, bias.doubles)
        let dX = Tensor(shape: x.shape)
        conv.inputGradient(
            g.data, inputHeight: c.height, inputWidth: c.width, padding: c.padding, into: dX.data,
            compute: compute)
        expectMatches(dX, numericGradient(at: xs, weights: g.doubles) { reference($0, ws, bs) }, "dX")
        let dW = Tensor(shape: weight.shape)
        let dB = Tensor(shape: bias.shape)
        conv.accumulateWeightGradient(
            input: Planes(x), inputHeight: c.height, inputWidth: c.width, padding: c.padding,
            outputGradient: g.data, weightGradient: dW.data, biasGradient: dB.data, compute: compute)
        expectMatches(dW, numericGradient(at: ws, weights: g.doubles) { reference(xs, $0, bs) }, "dW")
        expectMatches(dB, numericGradient(at: bs, weights: g.doubles) { reference(xs, ws, $0) }, "dB")
    }

    @Test(arguments: [(3, 2, 1, 1), (3, 1, 1, 0), (4, 2, 1, 0), (5, 3, 2, 2)])
    func transposedConvGradients(_ shape: (Int, Int, Int, Int)) {
        let (k, stride, padding, outputPadding) = shape
        let (cin, cout, h, w) = (5, 4, 6, 5)
        let x = Tensor.random([1, cin, h, w], seed: 21)
        let weight = Tensor.random([cin, cout, k, k], seed: 22, scale: 0.3)
        let bias = Tensor.random([cout], seed: 23)
        let conv = ConvTranspose2D(
            weight: weight, bias: bias, stride: stride, padding: padding, outputPadding: outputPadding,
            trainable: true)
        let (oh, ow) = conv.outputSize(height: h, width: w)
        let g = Tensor.random([cout, oh, ow], seed: 24)
        func reference(_ x: [Double], _ wt: [Double], _ b: [Double]) -> [Double] {
            Reference.convTranspose(
                x, wt, b, cin: cin, cout: cout, k: k, stride: stride, padding: padding, h: h, w: w, oh: oh, ow: ow)
        }
        let (xs, ws, bs) = (x.doubles, weight.doubles, bias.doubles)
        let dX = Tensor(shape: x.shape)
        conv.inputGradient(g.data, inputHeight: h, inputWidth: w, into: dX.data, compute: compute)
        expectMatches(dX, numericGradient(at: xs, weights: g.doubles) { reference($0, ws, bs) }, "dX")
        let dW = Tensor(shape: weight.shape)
        let dB = Tensor(shape: bias.shape)
        conv.accumulateWeightGradient(
            input: Planes(x), inputHeight: h, inputWidth: w, outputGradient: g.data, weightGradient: dW.data,
            biasGradient: dB.data, compute: compute)
        expectMatches(dW, numericGradient(at: ws, weights: g.doubles) { reference(xs, $0, bs) }, "dW")
        expectMatches(dB, numericGradient(at: bs, weights: g.doubles) { reference(xs, ws, $0) }, "dB")
    }

    /// The norm as the walker runs it: training forward with the activation, the activation's backward on
    /// the output, then the norm's backward.
    @Test(arguments: [false, true])
    func instanceNormGradients(_ affine: Bool) {
        let (c, pixels) = (3, 37)
        let x = Tensor.random([c, pixels], seed: 31, scale: 2)
        for i in 0..<x.count { x.data[i] += Float(i / pixels) }  // a mean per channel
        let gamma = affine ? Tensor.random([c], seed: 32).plus(1.5) : nil
        let beta = affine ? Tensor.random([c], seed: 33) : nil
        let activation: Activation = affine ? .leakyReLU(0.2) : .none
        let g = Tensor.random([c, pixels], seed: 34)
        let (xhat, rstd, y) = (Tensor(shape: [c, pixels]), Tensor(shape: [c]), Tensor(shape: [c, pixels]))
        InstanceNorm.trainingForward(
            x.data, channels: c, pixels: pixels, gamma: gamma?.data, beta: beta?.data, activation: activation,
            xhat: xhat.data, rstd: rstd.data, y: y.data, compute: compute)
        let slope: Double? = affine ? 0.2 : nil
        func reference(_ x: [Double], _ gm: [Double]?, _ bt: [Double]?) -> [Double] {
            Reference.instanceNorm(x, gamma: gm, beta: bt, channels: c, pixels: pixels, slope: slope)
        }
        let (xs, gs, bs) = (x.doubles, gamma?.doubles, beta?.doubles)
        let forward = reference(xs, gs, bs)
        #expect((0..<y.count).allSatisfy { abs(Double(y.data[$0]) - forward[$0]) < 1e-5 })

        let dx = g.copy()
        activation.backward(dx.data, output: y.data, count: dx.count, compute: compute)
        let dGamma = Tensor(shape: [c])
        let dBeta = Tensor(shape: [c])
        InstanceNorm.backward(
            dx.data, xhat: xhat.data, rstd: rstd.data, gamma: gamma?.data, channels: c, pixels: pixels, dx: dx.data,
            dGamma: affine ? dGamma.data : nil, dBeta: affine ? dBeta.data : nil, compute: compute)
        expectMatches(dx, numericGradient(at: xs, weights: g.doubles, step: 1e-4) { reference($0, gs, bs) }, "dx")
        if let gs, let bs {
            expectMatches(
                dGamma, numericGradient(at: gs, weights: g.doubles, step: 1e-4) { reference(xs, $0, bs) }, "dγ")
            expectMatches(
                dBeta, numericGradient(at: bs, weights: g.doubles, step: 1e-4) { reference(xs, gs, $0) }, "dβ")
        }
    }

    @Test(arguments: ["mse", "bce", "l1"])
    func lossGradients(_ loss: String) {
        let count = 50
        let x = Tensor.random([count], seed: 41, scale: 3)
        let y = Tensor.random([count], seed: 42, scale: 3)
        let (target, scale): (Float, Float) = (1, 0.7)
        let gradient = Tensor(shape: [count])
        let value: Float
        let reference: ([Double]) -> [Double]
        switch loss {
        case "mse":
            value = Loss.mse(x.data, target: target, count: count, gradient: gradient.data, scale: scale)
            reference = { x in [x.reduce(0) { $0 + ($1 - 1) * ($1 - 1) } / Double(count)] }
        case "bce":
            value = Loss.bceWithLogits(x.data, target: target, count: count, gradient: gradient.data, scale: scale)
            reference = { x in [x.reduce(0) { $0 - log(1 / (1 + exp(-$1))) } / Double(count)] }
        default:
            value = Loss.l1(x.data, y.data, count: count, gradient: gradient.data, scale: scale)
            let ys = y.doubles
            reference = { x in [zip(x, ys).reduce(0) { $0 + abs($1.0 - $1.1) } / Double(count)] }
        }
        #expect(abs(Double(value) - reference(x.doubles)[0]) < 1e-6)
        expectMatches(
            gradient, numericGradient(at: x.doubles, weights: [Double(scale)], step: 1e-5, reference), "gradient")
    }

    /// ∂(Σ_j weights[j]·f(x)[j])/∂x[i] by central differences, for up to 97 indices i spread over x
    /// (the first and last among them). The step suits f: any for the linear convolutions.
    func numericGradient(
        at x: [Double], weights g: [Double], step: Double = 0.5, _ f: ([Double]) -> [Double]
    ) -> [Int: Double] {
        let stride = max(1, (x.count + 95) / 96)
        let indices = Set(Array(Swift.stride(from: 0, to: x.count, by: stride)) + [x.count - 1])
        return Dictionary(
            uniqueKeysWithValues: indices.map { i in
                var plus = x
                var minus = x
                plus[i] += step
                minus[i] -= step
                let (a, b) = (f(plus), f(minus))
                return (i, zip(g.indices, g).reduce(0) { $0 + $1.1 * (a[$1.0] - b[$1.0]) } / (2 * step))
            })
    }

    /// |actual[i] − expected[i]| ≤ 1e-4 · max(1, max |expected|) at the sampled indices.
    func expectMatches(
        _ actual: Tensor, _ expected: [Int: Double], _ label: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        let bound = 1e-4 * max(1, expected.values.map(abs).max() ?? 0)
        let worst = expected.map { abs(Double(actual.data[$0.key]) - $0.value) }.max() ?? .infinity
        #expect(worst <= bound, "\(label): off by \(worst) (bound \(bound))", sourceLocation: sourceLocation)
    }
}

/// Float64 references, written for clarity: loops straight from the definitions.
enum Reference {
    static func conv(
        _ x: [Double], _ w: [Double], _ b: [Double], c: FiniteDifferenceTests.ConvCase
    ) -> [Double] {
        let (k, s, h, wd) = (c.kernel, c.stride, c.height, c.width)
        let rows = paddedIndexMap(length: h, padding: c.padding)
        let cols = paddedIndexMap(length: wd, padding: c.padding)
        let oh = (rows.count - k) / s + 1
        let ow = (cols.count - k) / s + 1
        var y = [Double](repeating: 0, count: c.cout * oh * ow)
        for co in 0..<c.cout {
            for oy in 0..<oh {
                for ox in 0..<ow {
                    var sum = b[co]
                    for ci in 0..<c.cin {
                        for ky in 0..<k {
                            let r = Int(rows[oy * s + ky])
                            if r < 0 { continue }
                            for kx in 0..<k {
                                let q = Int(cols[ox * s + kx])
                                if q < 0 { continue }
                                sum += w[((co * c.cin + ci) * k + ky) * k + kx] * x[(ci * h + r) * wd + q]
                            }
                        }
                    }
                    y[(co * oh + oy) * ow + ox] = sum
                }
            }
        }
        return y
    }

    static func convTranspose(
        _ x: [Double], _ w: [Double], _ b: [Double], cin: Int, cout: Int, k: Int, stride: Int, padding: Int,
        h: Int, w wd: Int, oh: Int, ow: Int
    ) -> [Double] {
        var y = [Double](repeating: 0, count: cout * oh * ow)
        for co in 0..<cout {
            for i in 0..<(oh * ow) { y[co * oh * ow + i] = b[co] }
        }
        for ci in 0..<cin {
            for iy in 0..<h {
                for ix in 0..<wd {
                    for co in 0..<cout {
                        for ky in 0..<k {
                            let oy = iy * stride - padding + ky
                            if oy < 0 || oy >= oh { continue }
                            for kx in 0..<k {
                                let ox = ix * stride - padding + kx
                                if ox < 0 || ox >= ow { continue }
                                y[(co * oh + oy) * ow + ox] +=
                                    x[(ci * h + iy) * wd + ix] * w[((ci * cout + co) * k + ky) * k + kx]
                            }
                        }
                    }
                }
            }
        }
        return y
    }

    static func instanceNorm(
        _ x: [Double], gamma: [Double]?, beta: [Double]?, channels: Int, pixels: Int, slope: Double?
    ) -> [Double] {
        var y = x
        for c in 0..<channels {
            let plane = x[(c * pixels)..<((c + 1) * pixels)]
            let mean = plane.reduce(0, +) / Double(pixels)
            let variance = plane.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(pixels)
            for i in 0..<pixels {
                var v = (x[c * pixels + i] - mean) / (variance + 1e-5).squareRoot() * (gamma?[c] ?? 1) + (beta?[c] ?? 0)
                if let slope, v < 0 { v *= slope }
                y[c * pixels + i] = v
            }
        }
        return y
    }
}

/// The same call twice with the same threads gives the same bits; other thread counts agree within rounding.
@Suite struct BackwardDeterminismTests {
    @Test(arguments: [
        FiniteDifferenceTests.ConvCase(
            cin: 128, cout: 128, kernel: 3, stride: 1, padding: .reflect(1), height: 40, width: 37),
        FiniteDifferenceTests.ConvCase(
            cin: 64, cout: 128, kernel: 3, stride: 2, padding: .zero(1), height: 64, width: 61),
        FiniteDifferenceTests.ConvCase(
            cin: 32, cout: 3, kernel: 7, stride: 1, padding: .reflect(3), height: 150, width: 123),
    ])
    func convGradientsRepeat(_ c: FiniteDifferenceTests.ConvCase) {
        let x = Tensor.random([1, c.cin, c.height, c.width], seed: 51)
        let weight = Tensor.random([c.cout, c.cin, c.kernel, c.kernel], seed: 52, scale: 0.05)
        let conv = Conv2D(weight: weight, bias: nil, stride: c.stride, trainable: true)
        let (oh, ow) = conv.outputSize(height: c.height, width: c.width, padding: c.padding)
        let g = Tensor.random([c.cout, oh, ow], seed: 53)
        func gradients(_ threads: Int) -> (Tensor, Tensor, Tensor) {
            let compute = Compute(threads: threads)
            let dX = Tensor(shape: x.shape)
            let dW = Tensor(shape: weight.shape)
            let dB = Tensor(shape: [c.cout])
            conv.inputGradient(
                g.data, inputHeight: c.height, inputWidth: c.width, padding: c.padding, into: dX.data,
                compute: compute)
            conv.accumulateWeightGradient(
                input: Planes(x), inputHeight: c.height, inputWidth: c.width, padding: c.padding,
                outputGradient: g.data, weightGradient: dW.data, biasGradient: dB.data, compute: compute)
            return (dX, dW, dB)
        }
        let (a, b, one) = (gradients(2), gradients(2), gradients(1))
        #expect(a.0.array == b.0.array && a.1.array == b.1.array && a.2.array == b.2.array)
        expectClose(one.1, a.1, "dW, 1 vs 2 threads")
        expectClose(one.0, a.0, "dX, 1 vs 2 threads")
    }

    @Test func transposedConvAndNormRepeat() {
        let x = Tensor.random([1, 128, 32, 30], seed: 61)
        let weight = Tensor.random([128, 64, 3, 3], seed: 62, scale: 0.05)
        let conv = ConvTranspose2D(weight: weight, bias: nil, stride: 2, padding: 1, outputPadding: 1, trainable: true)
        let (oh, ow) = conv.outputSize(height: 32, width: 30)
        let g = Tensor.random([64, oh, ow], seed: 63)
        func run() -> [Float] {
            let compute = Compute(threads: 2)
            let dX = Tensor(shape: x.shape)
            let dW = Tensor(shape: weight.shape)
            conv.inputGradient(g.data, inputHeight: 32, inputWidth: 30, into: dX.data, compute: compute)
            conv.accumulateWeightGradient(
                input: Planes(x), inputHeight: 32, inputWidth: 30, outputGradient: g.data, weightGradient: dW.data,
                biasGradient: nil, compute: compute)
            let (xhat, rstd, y) = (Tensor(shape: [64, oh * ow]), Tensor(shape: [64]), Tensor(shape: [64, oh * ow]))
            InstanceNorm.trainingForward(
                g.data, channels: 64, pixels: oh * ow, gamma: nil, beta: nil, activation: .relu, xhat: xhat.data,
                rstd: rstd.data, y: y.data, compute: compute)
            let dGamma = Tensor(shape: [64])
            InstanceNorm.backward(
                y.data, xhat: xhat.data, rstd: rstd.data, gamma: rstd.data, channels: 64, pixels: oh * ow,
                dx: y.data, dGamma: dGamma.data, dBeta: nil, compute: compute)
            return dX.array + dW.array + y.array + dGamma.array
        }
        #expect(run() == run())
    }
}

extension Tensor {
    var doubles: [Double] { array.map(Double.init) }
}
