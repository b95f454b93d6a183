import Foundation
import Testing

@testable import Tensor

/// Every backward kernel, loss and Adam against PyTorch autograd (tools/make_fixtures.py's kernels/ and
/// tools/make_grad_fixtures.py's grads/), within 1e-4 of the values' magnitude.
@Suite struct BackwardParityTests {
    let compute = Compute(threads: 2)

    static func fixtures(_ folder: String, op: String) -> [URL] {
        ((try? Fixtures.files(in: folder)) ?? []).filter { (try? Fixtures.open($0).metadata["op"]) == op }
    }

    static var convFixtures: [URL] { fixtures("kernels", op: "conv2d") + fixtures("grads", op: "conv2d") }

    @Test func fixturesArePresent() {
        #expect(Self.convFixtures.count >= 22)
        #expect(Self.fixtures("grads", op: "loss").count == 5)
        #expect(Self.fixtures("grads", op: "adam").count == 2)
    }

    @Test(arguments: convFixtures)
    func convGradientsMatchPyTorch(_ url: URL) throws {
        let f = try Fixtures.open(url)
        let (x, weight, bias) = (try f.tensor("input"), try f.tensor("weight"), try f.tensor("bias"))
        let dY = try f.tensor("grad_output")
        let stride = try f.int("stride")
        let p = try f.int("padding")
        let padding: Padding = f.metadata["padding_mode"] == "reflect" ? .reflect(p) : .zero(p)
        let (h, w) = (x.shape[2], x.shape[3])
        var algorithms: [Conv2D.Algorithm] = [.automatic, .im2col]
        if weight.shape[2] == 3 && stride == 1 { algorithms.append(.winograd) }
        if stride == 1 && weight.shape[2] > 1 { algorithms.append(.kn2row) }
        // Each with filters kept and (for the Winograd layers) transformed at each call, as in training.
        for algorithm in algorithms {
            for scratch in [nil, WinogradScratch()] {
                let conv = Conv2D(
                    weight: weight, bias: bias, stride: stride, algorithm: algorithm, trainable: true,
                    winogradScratch: scratch)
                expectClose(conv(x, padding: padding, compute: compute), try f.tensor("output"), "forward \(algorithm)")

                let dX = Tensor(shape: x.shape)
                dX.fill(.nan)  // overwritten, not accumulated
                conv.inputGradient(
                    dY.data, inputHeight: h, inputWidth: w, padding: padding, into: dX.data, compute: compute)
                expectClose(dX, try f.tensor("grad_input"), "grad_input \(algorithm)")

                // Accumulated: start from 1.
                let dW = Tensor(shape: weight.shape)
                let dB = Tensor(shape: bias.shape)
                dW.fill(1)
                dB.fill(1)
                conv.accumulateWeightGradient(
                    input: Planes(x), inputHeight: h, inputWidth: w, padding: padding, outputGradient: dY.data,
                    weightGradient: dW.data, biasGradient: dB.data, compute: compute)
                expectClose(dW, try f.tensor("grad_weight").plus(1), "grad_weight \(algorithm)")
                expectClose(dB, try f.tensor("grad_bias").plus(1), "grad_bias \(algorithm)")
            }
        }
    }

    /// Winograd's weight and data gradients (filters transformed per call, as in training) on the residual
    /// blocks' shape (256 channels at 64², more tiles than one block holds) and odd sizes (one block, GEMMs by
    /// position ξ), against im2col's, which the fixtures pin to PyTorch.
    @Test(arguments: [(256, 64, 64), (64, 37, 29), (32, 5, 3), (48, 2, 9)])
    func winogradGradientsMatchIm2col(_ shape: (Int, Int, Int)) {
        let (c, h, w) = shape
        let x = Tensor.random([1, c, h, w], seed: 1)
        let weight = Tensor.random([c, c, 3, 3], seed: 2, scale: 0.1)
        let dY = Tensor.random([c, h, w], seed: 3)
        func gradients(_ algorithm: Conv2D.Algorithm) -> (dW: Tensor, dX: Tensor) {
            let conv = Conv2D(
                weight: weight, bias: nil, stride: 1, algorithm: algorithm, trainable: true,
                winogradScratch: WinogradScratch())
            let dW = Tensor(shape: weight.shape)
            conv.accumulateWeightGradient(
                input: Planes(x), inputHeight: h, inputWidth: w, padding: .reflect(1), outputGradient: dY.data,
                weightGradient: dW.data, biasGradient: nil, compute: compute)
            let dX = Tensor(shape: x.shape)
            conv.inputGradient(
                dY.data, inputHeight: h, inputWidth: w, padding: .reflect(1), into: dX.data, compute: compute)
            return (dW, dX)
        }
        let (fast, exact) = (gradients(.winograd), gradients(.exact))
        expectClose(fast.dW, exact.dW, "dW")
        expectClose(fast.dX, exact.dX, "dX")
    }

    /// Filters transformed at each call (training's layers) give the same forward and data gradient, bit for
    /// bit, as filters kept from construction; channel counts that differ and are not multiples of 8 catch a
    /// transposed or partial read of the flipped filters.
    @Test(arguments: [Padding.reflect(1), .zero(1)])
    func winogradFiltersPerCallMatchKept(_ padding: Padding) {
        let (cin, cout, h, w) = (40, 72, 13, 10)
        let x = Tensor.random([1, cin, h, w], seed: 1)
        let weight = Tensor.random([cout, cin, 3, 3], seed: 2, scale: 0.1)
        let bias = Tensor.random([cout], seed: 4)
        let dY = Tensor.random([cout, h, w], seed: 3)
        let kept = Conv2D(weight: weight, bias: bias, stride: 1, trainable: true)
        let perCall = Conv2D(weight: weight, bias: bias, stride: 1, trainable: true, winogradScratch: WinogradScratch())
        #expect(perCall.winograd != nil)
        guard case .flippedWinograd = perCall.inputGradientForm else {
            Issue.record("the data gradient does not run Winograd from the weight")
            return
        }
        func dX(_ conv: Conv2D) -> [Float] {
            let d = Tensor(shape: x.shape)
            conv.inputGradient(dY.data, inputHeight: h, inputWidth: w, padding: padding, into: d.data, compute: compute)
            return d.array
        }
        #expect(
            perCall(x, padding: padding, compute: compute).array == kept(x, padding: padding, compute: compute).array)
        #expect(dX(perCall) == dX(kept))
    }

    @Test(arguments: fixtures("kernels", op: "conv_transpose2d"))
    func transposedConvGradientsMatchPyTorch(_ url: URL) throws {
        let f = try Fixtures.open(url)
        let (x, weight, bias) = (try f.tensor("input"), try f.tensor("weight"), try f.tensor("bias"))
        let dY = try f.tensor("grad_output")
        let conv = ConvTranspose2D(
            weight: weight, bias: bias, stride: try f.int("stride"), padding: try f.int("padding"),
            outputPadding: try f.int("output_padding"), trainable: true)
        let (h, w) = (x.shape[2], x.shape[3])
        let dX = Tensor(shape: x.shape)
        dX.fill(.nan)
        conv.inputGradient(dY.data, inputHeight: h, inputWidth: w, into: dX.data, compute: compute)
        expectClose(dX, try f.tensor("grad_input"), "grad_input")
        let dW = Tensor(shape: weight.shape)
        let dB = Tensor(shape: bias.shape)
        dW.fill(1)
        dB.fill(1)
        conv.accumulateWeightGradient(
            input: Planes(x), inputHeight: h, inputWidth: w, outputGradient: dY.data, weightGradient: dW.data,
            biasGradient: dB.data, compute: compute)
        expectClose(dW, try f.tensor("grad_weight").plus(1), "grad_weight")
        expectClose(dB, try f.tensor("grad_bias").plus(1), "grad_bias")
    }

    /// Reflection padding's backward, seen through a 1×1 identity convolution (whose output is the padded input).
    @Test(arguments: fixtures("kernels", op: "reflection_pad2d"))
    func reflectionPadGradientMatchesPyTorch(_ url: URL) throws {
        let f = try Fixtures.open(url)
        let x = try f.tensor("input")
        let c = x.shape[1]
        let identity = Tensor(shape: [c, c, 1, 1])
        for i in 0..<c { identity.data[i * c + i] = 1 }
        let conv = Conv2D(weight: identity, bias: nil, stride: 1, trainable: true)
        let dX = Tensor(shape: x.shape)
        conv.inputGradient(
            try f.tensor("grad_output").data, inputHeight: x.shape[2], inputWidth: x.shape[3],
            padding: .reflect(try f.int("pad")), into: dX.data, compute: compute)
        expectClose(dX, try f.tensor("grad_input"), "grad_input")
    }

    @Test(arguments: fixtures("kernels", op: "instance_norm"))
    func instanceNormMatchesPyTorch(_ url: URL) throws {
        let f = try Fixtures.open(url)
        let x = try f.tensor("input")
        let (c, pixels) = (x.shape[1], x.shape[2] * x.shape[3])
        let (gamma, beta) = (f["weight"], f["bias"])
        let xhat = Tensor(shape: x.shape)
        let rstd = Tensor(shape: [c])
        let y = x.copy()  // y may be the input
        InstanceNorm.trainingForward(
            y.data, channels: c, pixels: pixels, gamma: gamma?.data, beta: beta?.data, activation: .none,
            eps: Float(f.metadata["eps"] ?? "") ?? 1e-5, xhat: xhat.data, rstd: rstd.data, y: y.data,
            compute: compute)
        expectClose(y, try f.tensor("output"), "output")
        let dx = try f.tensor("grad_output").copy()  // dx may be dy
        let dGamma = Tensor(shape: [c])
        let dBeta = Tensor(shape: [c])
        InstanceNorm.backward(
            dx.data, xhat: xhat.data, rstd: rstd.data, gamma: gamma?.data, channels: c, pixels: pixels, dx: dx.data,
            dGamma: gamma == nil ? nil : dGamma.data, dBeta: beta == nil ? nil : dBeta.data, compute: compute)
        expectClose(dx, try f.tensor("grad_input"), "grad_input")
        if gamma != nil {
            expectClose(dGamma, try f.tensor("grad_weight"), "grad_weight")
            expectClose(dBeta, try f.tensor("grad_bias"), "grad_bias")
        }
    }

    @Test(arguments: ["relu", "leaky_relu", "tanh"])
    func activationGradientsMatchPyTorch(_ op: String) throws {
        let f = try Fixtures.open(try #require(Self.fixtures("kernels", op: op).first))
        let y = try f.tensor("output")
        let g = try f.tensor("grad_output").copy()
        switch op {
        case "relu": Activation.relu.backward(g.data, output: y.data, count: g.count, compute: compute)
        case "leaky_relu": Activation.leakyReLU(0.2).backward(g.data, output: y.data, count: g.count, compute: compute)
        default: Elementwise.tanhBackward(g.data, output: y.data, count: g.count, compute: compute)
        }
        #expect(g.maxAbsDifference(try f.tensor("grad_input")) < 1e-6)
    }

    @Test(arguments: fixtures("grads", op: "loss"))
    func lossesMatchPyTorch(_ url: URL) throws {
        let f = try Fixtures.open(url)
        let x = try f.tensor("input")
        let target = Float(f.metadata["target"] ?? "") ?? .nan
        let scale = Float(f.metadata["scale"] ?? "") ?? .nan
        let gradient = Tensor(shape: x.shape)
        gradient.fill(.nan)
        let loss: Float
        switch f.metadata["loss"] {
        case "mse": loss = Loss.mse(x.data, target: target, count: x.count, gradient: gradient.data, scale: scale)
        case "bce":
            loss = Loss.bceWithLogits(x.data, target: target, count: x.count, gradient: gradient.data, scale: scale)
        default:
            loss = Loss.l1(x.data, try f.tensor("target").data, count: x.count, gradient: gradient.data, scale: scale)
        }
        let expected = try f.tensor("loss").data[0]
        #expect(abs(loss - expected) <= 1e-6 * max(1, abs(expected)), "\(loss) vs \(expected)")
        expectClose(gradient, try f.tensor("grad_input"), "gradient", tolerance: 1e-6)
    }

    @Test(arguments: fixtures("grads", op: "adam"))
    func adamMatchesPyTorch(_ url: URL) throws {
        let f = try Fixtures.open(url)
        let value = try f.tensor("param_0").copy()
        let m = Tensor(shape: value.shape)
        let v = Tensor(shape: value.shape)
        for t in 1...(try f.int("steps")) {
            Adam.step(
                value: value.data, gradient: try f.tensor("grad_\(t)").data, m: m.data, v: v.data, count: value.count,
                step: t, lr: Float(f.metadata["lr"]!)!, beta1: Float(f.metadata["beta1"]!)!,
                beta2: Float(f.metadata["beta2"]!)!, compute: compute)
            #expect(value.maxAbsDifference(try f.tensor("param_\(t)")) <= 1e-7, "step \(t)")
        }
        #expect(m.maxAbsDifference(try f.tensor("exp_avg")) <= 1e-7)
        #expect(v.maxAbsDifference(try f.tensor("exp_avg_sq")) <= 1e-7 * max(1, v.maxAbs))
    }
}

/// |actual − expected| ≤ tolerance · max(1, max |expected|) everywhere.
func expectClose(
    _ actual: Tensor, _ expected: Tensor, _ label: String, tolerance: Float = 1e-4,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(
        actual.count == expected.count, "\(label): \(actual.shape) vs \(expected.shape)", sourceLocation: sourceLocation
    )
    guard actual.count == expected.count else { return }
    var worst: Float = 0
    for i in 0..<actual.count {
        let d = abs(actual.data[i] - expected.data[i])
        worst = d.isNaN ? .infinity : max(worst, d)
    }
    let bound = tolerance * max(1, expected.maxAbs)
    #expect(worst <= bound, "\(label): off by \(worst) (bound \(bound))", sourceLocation: sourceLocation)
}

extension Tensor {
    var maxAbs: Float { (0..<count).reduce(0) { max($0, abs(data[$1])) } }

    func plus(_ c: Float) -> Tensor {
        let t = copy()
        for i in 0..<count { t.data[i] += c }
        return t
    }
}
