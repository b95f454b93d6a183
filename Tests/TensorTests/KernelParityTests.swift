import Foundation
import Testing

@testable import Tensor

/// Every forward kernel against PyTorch (tools/make_fixtures.py), within 1e-4.
@Suite struct KernelParityTests {
    static let tolerance: Float = 1e-4
    let compute = Compute(threads: 2)

    static var kernelFixtures: [URL] { (try? Fixtures.files(in: "kernels")) ?? [] }

    @Test func fixturesArePresent() throws {
        let ops = Set(try Self.kernelFixtures.map { try Fixtures.open($0).metadata["op"] ?? "?" })
        #expect(
            ops.isSuperset(of: [
                "conv2d", "conv_transpose2d", "reflection_pad2d", "instance_norm", "relu", "leaky_relu", "tanh",
            ]))
    }

    @Test(arguments: kernelFixtures)
    func forwardMatchesPyTorch(_ url: URL) throws {
        let f = try Fixtures.open(url)
        let x = try f.tensor("input")
        let expected = try f.tensor("output")
        switch f.metadata["op"] {
        case "conv2d":
            let stride = try f.int("stride")
            let padding = Padding.zero(try f.int("padding"))
            let weight = try f.tensor("weight")
            var algorithms: [Conv2D.Algorithm] = [.automatic, .im2col]
            if weight.shape[2] == 3 && stride == 1 { algorithms.append(.winograd) }
            if stride == 1 && weight.shape[2] > 1 { algorithms.append(.kn2row) }
            for algorithm in algorithms {
                let conv = Conv2D(weight: weight, bias: f["bias"], stride: stride, algorithm: algorithm)
                let y = conv(x, padding: padding, compute: compute)
                #expect(y.shape == expected.shape)
                #expect(y.maxAbsDifference(expected) < Self.tolerance, "\(algorithm)")
            }
        case "conv_transpose2d":
            let conv = ConvTranspose2D(
                weight: try f.tensor("weight"), bias: f["bias"], stride: try f.int("stride"),
                padding: try f.int("padding"), outputPadding: try f.int("output_padding"))
            let y = conv(x, compute: compute)
            #expect(y.shape == expected.shape)
            #expect(y.maxAbsDifference(expected) < Self.tolerance)
        case "reflection_pad2d":
            let p = try f.int("pad")
            let y = x.reflectionPadded(top: p, bottom: p, left: p, right: p)
            #expect(y.maxAbsDifference(expected) == 0)
        case "instance_norm":
            let y = x.copy()
            y.instanceNorm(
                eps: Float(f.metadata["eps"] ?? "") ?? 1e-5, gamma: f["weight"], beta: f["bias"], compute: compute)
            #expect(y.maxAbsDifference(expected) < Self.tolerance)
        case "relu":
            let y = x.copy()
            Elementwise.relu(y.data, count: y.count)
            #expect(y.maxAbsDifference(expected) == 0)
        case "leaky_relu":
            let y = x.copy()
            Elementwise.leakyReLU(y.data, count: y.count, slope: Float(f.metadata["slope"] ?? "") ?? 0.2)
            #expect(y.maxAbsDifference(expected) < 1e-7)
        case "tanh":
            let y = x.copy()
            Elementwise.tanh(y.data, count: y.count, compute: compute)
            #expect(y.maxAbsDifference(expected) < 1e-6)
        case let op:
            Issue.record("unknown op \(op ?? "nil") in \(url.lastPathComponent)")
        }
    }

    /// Winograd on the residual blocks' shape (many channels, odd sizes, reflection
    /// padding) against the im2col path, which the fixtures pin to PyTorch. 64 channels at 70²
    /// has more tiles than one block holds (the other shapes run their GEMMs by position ξ).
    @Test(arguments: [(64, 70, 70), (64, 37, 29), (32, 5, 3), (48, 2, 9), (32, 1, 1)])
    func winogradMatchesDirect(_ shape: (Int, Int, Int)) {
        let (c, h, w) = shape
        let x = Tensor.random([1, c, h, w], seed: 1)
        let weight = Tensor.random([c, c, 3, 3], seed: 2, scale: 0.1)
        let bias = Tensor.random([c], seed: 3)
        let padding: Padding = h > 1 && w > 1 ? .reflect(1) : .zero(1)
        let direct = Conv2D(weight: weight, bias: bias, stride: 1, algorithm: .im2col)(
            x, padding: padding, compute: compute)
        let fast = Conv2D(weight: weight, bias: bias, stride: 1, algorithm: .winograd)(
            x, padding: padding, compute: compute)
        #expect(fast.maxAbsDifference(direct) < Self.tolerance)
    }

    @Test func reflectionRepeatsForTinyImages() {
        #expect((-3...6).map { reflectIndex($0, 3) } == [1, 2, 1, 0, 1, 2, 1, 0, 1, 2])
        #expect((-2...2).map { reflectIndex($0, 1) } == [0, 0, 0, 0, 0])
    }
}

extension Tensor {
    /// Deterministic values in [-scale, scale).
    static func random(_ shape: [Int], seed: UInt32, scale: Float = 1) -> Tensor {
        let t = Tensor(shape: shape)
        var s = seed &* 2_654_435_761 &+ 1
        for i in 0..<t.count {
            s = s &* 1_664_525 &+ 1_013_904_223
            t.data[i] = (Float(s >> 8) / Float(1 << 24) * 2 - 1) * scale
        }
        return t
    }
}
