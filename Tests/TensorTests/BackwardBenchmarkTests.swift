import Foundation
import Testing

@testable import Tensor

/// Forward, data gradient and weight gradient of each layer of a 256² ngf-64 generator and of the
/// discriminator, two threads. Only by hand: CYCLEGAND_BENCH=1 swift test ... --filter BackwardBenchmark
@Suite(.serialized, .enabled(if: ProcessInfo.processInfo.environment["CYCLEGAND_BENCH"] != nil))
struct BackwardBenchmarkTests {
    struct Layer: Sendable {
        var name: String, cin: Int, cout: Int, kernel: Int, stride: Int, padding: Padding, size: Int
        var transposed = false
    }

    static let layers: [Layer] = [
        Layer(name: "G c7s1-64", cin: 3, cout: 64, kernel: 7, stride: 1, padding: .reflect(3), size: 256),
        Layer(name: "G down 128", cin: 64, cout: 128, kernel: 3, stride: 2, padding: .zero(1), size: 256),
        Layer(name: "G down 256", cin: 128, cout: 256, kernel: 3, stride: 2, padding: .zero(1), size: 128),
        Layer(name: "G res 256", cin: 256, cout: 256, kernel: 3, stride: 1, padding: .reflect(1), size: 64),
        Layer(
            name: "G up 128", cin: 256, cout: 128, kernel: 3, stride: 2, padding: .zero(1), size: 64, transposed: true),
        Layer(
            name: "G up 64", cin: 128, cout: 64, kernel: 3, stride: 2, padding: .zero(1), size: 128, transposed: true),
        Layer(name: "G c7s1-3", cin: 64, cout: 3, kernel: 7, stride: 1, padding: .reflect(3), size: 256),
        Layer(name: "D c64 s2", cin: 3, cout: 64, kernel: 4, stride: 2, padding: .zero(1), size: 256),
        Layer(name: "D c128 s2", cin: 64, cout: 128, kernel: 4, stride: 2, padding: .zero(1), size: 128),
        Layer(name: "D c256 s2", cin: 128, cout: 256, kernel: 4, stride: 2, padding: .zero(1), size: 64),
        Layer(name: "D c512 s1", cin: 256, cout: 512, kernel: 4, stride: 1, padding: .zero(1), size: 32),
        Layer(name: "D c1 s1", cin: 512, cout: 1, kernel: 4, stride: 1, padding: .zero(1), size: 31),
    ]

    /// CYCLEGAND_BENCH_EXACT=1 times the convolutions training runs by default (no Winograd).
    static let algorithm: Conv2D.Algorithm =
        ProcessInfo.processInfo.environment["CYCLEGAND_BENCH_EXACT"] != nil ? .exact : .automatic

    /// Best of five, in milliseconds.
    func time(_ body: () -> Void) -> Double {
        (0..<5).map { _ in
            let start = DispatchTime.now().uptimeNanoseconds
            body()
            return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
        }.min()!
    }

    @Test func layers() {
        let compute = Compute(threads: 2)
        var lines = ["layer            forward   dX      dW+dB   build (ms, 2 threads, \(Compute.blasCore))"]
        for l in Self.layers {
            let (h, w) = (l.size, l.size)
            let x = Tensor.random([1, l.cin, h, w], seed: 1)
            let bias = Tensor.random([l.cout], seed: 3)
            let dX = Tensor(shape: x.shape)
            let dB = Tensor(shape: [l.cout])
            let forward: Double
            let data: Double
            let weights: Double
            let build: Double
            if l.transposed {
                let weight = Tensor.random([l.cin, l.cout, l.kernel, l.kernel], seed: 2, scale: 0.05)
                let conv = ConvTranspose2D(
                    weight: weight, bias: bias, stride: l.stride, padding: l.padding.amount, outputPadding: 1,
                    trainable: true)
                build = time {
                    _ = ConvTranspose2D(
                        weight: weight, bias: bias, stride: l.stride, padding: l.padding.amount, outputPadding: 1,
                        trainable: true)
                }
                let (oh, ow) = conv.outputSize(height: h, width: w)
                let dY = Tensor.random([l.cout, oh, ow], seed: 4)
                let dW = Tensor(shape: weight.shape)
                forward = time { _ = conv(x, compute: compute) }
                data = time {
                    conv.inputGradient(dY.data, inputHeight: h, inputWidth: w, into: dX.data, compute: compute)
                }
                weights = time {
                    conv.accumulateWeightGradient(
                        input: Planes(x), inputHeight: h, inputWidth: w, outputGradient: dY.data,
                        weightGradient: dW.data, biasGradient: dB.data, compute: compute)
                }
            } else {
                let weight = Tensor.random([l.cout, l.cin, l.kernel, l.kernel], seed: 2, scale: 0.05)
                let conv = Conv2D(
                    weight: weight, bias: bias, stride: l.stride, algorithm: Self.algorithm, trainable: true)
                build = time {
                    _ = Conv2D(weight: weight, bias: bias, stride: l.stride, algorithm: Self.algorithm, trainable: true)
                }
                let (oh, ow) = conv.outputSize(height: h, width: w, padding: l.padding)
                let dY = Tensor.random([l.cout, oh, ow], seed: 4)
                let dW = Tensor(shape: weight.shape)
                forward = time { _ = conv(x, padding: l.padding, compute: compute) }
                data = time {
                    conv.inputGradient(
                        dY.data, inputHeight: h, inputWidth: w, padding: l.padding, into: dX.data, compute: compute)
                }
                weights = time {
                    conv.accumulateWeightGradient(
                        input: Planes(x), inputHeight: h, inputWidth: w, padding: l.padding, outputGradient: dY.data,
                        weightGradient: dW.data, biasGradient: dB.data, compute: compute)
                }
            }
            lines.append(
                l.name.padding(toLength: 16, withPad: " ", startingAt: 0)
                    + [forward, data, weights, build].map { String(format: "%7.2f ", $0) }.joined())
        }
        print(lines.joined(separator: "\n"))
    }

    /// Instance norm with ReLU, training forward and backward (affine), at the generator's shapes.
    @Test(arguments: [(64, 256 * 256), (128, 128 * 128), (256, 64 * 64)])
    func instanceNorm(_ shape: (Int, Int)) {
        let (c, pixels) = shape
        let compute = Compute(threads: 2)
        let x = Tensor.random([c, pixels], seed: 1)
        let gamma = Tensor.random([c], seed: 2)
        let beta = Tensor.random([c], seed: 3)
        let (xhat, rstd, y) = (Tensor(shape: [c, pixels]), Tensor(shape: [c]), Tensor(shape: [c, pixels]))
        let forward = time {
            InstanceNorm.trainingForward(
                x.data, channels: c, pixels: pixels, gamma: gamma.data, beta: beta.data, activation: .relu,
                xhat: xhat.data, rstd: rstd.data, y: y.data, compute: compute)
        }
        let g = Tensor.random([c, pixels], seed: 4)
        let (dGamma, dBeta) = (Tensor(shape: [c]), Tensor(shape: [c]))
        let backward = time {
            Activation.relu.backward(g.data, output: y.data, count: g.count, compute: compute)
            InstanceNorm.backward(
                g.data, xhat: xhat.data, rstd: rstd.data, gamma: gamma.data, channels: c, pixels: pixels, dx: g.data,
                dGamma: dGamma.data, dBeta: dBeta.data, compute: compute)
        }
        let relu = time { Activation.relu.backward(g.data, output: y.data, count: g.count, compute: compute) }
        print(
            String(
                format: "instance norm + relu %d×%d: forward %.2f ms, backward %.2f ms (relu's %.2f)", c, pixels,
                forward, backward, relu))
    }

    /// One Adam step over a generator's 11.4 M parameters.
    @Test func adam() {
        let count = 11_378_179
        let (value, gradient) = (Tensor.random([count], seed: 1), Tensor.random([count], seed: 2))
        let (m, v) = (Tensor(shape: [count]), Tensor(shape: [count]))
        var t = 0
        let ms = time {
            t += 1
            Adam.step(
                value: value.data, gradient: gradient.data, m: m.data, v: v.data, count: count, step: t, lr: 2e-4,
                beta1: 0.5, compute: Compute(threads: 2))
        }
        print(String(format: "Adam over %d values: %.2f ms", count, ms))
    }
}
