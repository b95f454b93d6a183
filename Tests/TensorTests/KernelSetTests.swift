import CKernels
import Foundation
import Testing

@testable import Tensor

/// The Winograd transforms are compiled once per instruction set (Sources/CKernels) and the CPU's fastest
/// set runs everything, so the parity tests check that set against PyTorch. These check every other set this
/// CPU can run against the baseline one, call by call, on shapes that leave partial tiles, padded edges and
/// channel counts that are not a multiple of any vector width.
@Suite struct KernelSetTests {
    static let names = ["baseline", "avx2", "avx512"]
    let baseline = ck_winograd_kernels_named("baseline")!.pointee

    /// The sets to compare with the baseline: those this CPU runs.
    var others: [ck_winograd_kernels] {
        Self.names.dropFirst().compactMap { ck_winograd_kernels_named($0)?.pointee }
    }

    @Test func theFastestSetThisCPURunsIsChosen() {
        let chosen = Compute.winogradKernels
        let fastest = Self.names.last { ck_winograd_kernels_named($0) != nil }!
        // CYCLEGAND_KERNELS may ask for a slower set, to measure it.
        let asked = ProcessInfo.processInfo.environment["CYCLEGAND_KERNELS"].flatMap {
            ck_winograd_kernels_named($0) != nil ? $0 : nil
        }
        #expect(chosen == (asked ?? fastest))
        #expect(ck_winograd_kernels_named("sse9") == nil)
    }

    @Test(arguments: [false, true])
    func filterTransformsAgree(flipped: Bool) {
        let (cout, cin) = (3, 13)
        let w = Self.random(count: cout * cin * 9, seed: 1)
        // Filter (co, ci)'s taps: co·9cin + ci·9, or flipped [Cin, Cout, 3, 3] (here cin plays Cout).
        let (outStep, inStep) = flipped ? (9, 9 * cout) : (9 * cin, 9)
        let run = { (set: ck_winograd_kernels) -> [Float] in
            var u = [Float](repeating: .nan, count: 36 * cout * cin)
            var scratch = [Float](repeating: .nan, count: ck_winograd_filter_scratch(Int32(cin)))
            w.withUnsafeBufferPointer { w in
                u.withUnsafeMutableBufferPointer { u in
                    for co in 0..<cout {
                        set.filter(
                            w.baseAddress! + co * outStep, inStep, flipped ? 1 : 0, Int32(cin), cout * cin,
                            u.baseAddress! + co * cin, &scratch)
                    }
                }
            }
            return u
        }
        expectAgree(run)
    }

    @Test(arguments: [1, 3])
    func filterGradientsAgree(workers: Int) {
        let (cout, cin) = (2, 11)
        let pairs = cout * cin
        let partials = Self.random(count: workers * 36 * pairs, seed: 2)
        let start = Self.random(count: cout * cin * 9, seed: 3)
        let run = { (set: ck_winograd_kernels) -> [Float] in
            var dw = start
            var scratch = [Float](repeating: .nan, count: ck_winograd_filter_gradient_scratch(Int32(cin)))
            partials.withUnsafeBufferPointer { partials in
                dw.withUnsafeMutableBufferPointer { dw in
                    for co in 0..<cout {
                        set.filter_gradient(
                            partials.baseAddress! + co * cin, pairs, 36 * pairs, Int32(workers), Int32(cin),
                            dw.baseAddress! + co * cin * 9, &scratch)
                    }
                }
            }
            return dw
        }
        expectAgree(run)
    }

    /// Two tile rows of a 9-channel 10×23 input with reflection at the left and zero padding at the right and
    /// bottom; the second segment starts mid-row and ends on a partial tile.
    @Test func inputTransformsAgree() {
        let (channels, height, width, ld) = (9, 10, 23, 16)
        let src = Self.random(count: channels * height * width, seed: 4)
        let rows: [Int32] = [1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, -1, -1, -1]
        let cols: [Int32] = [1] + (0..<Int32(width)).map { $0 } + [Int32](repeating: -1, count: 6)
        let run = { (set: ck_winograd_kernels) -> [Float] in
            var v = [Float](repeating: .nan, count: 36 * channels * ld)
            var scratch = [Float](repeating: .nan, count: ck_winograd_input_scratch(6))
            rows.withUnsafeBufferPointer { rows in
                cols.withUnsafeBufferPointer { cols in
                    v.withUnsafeMutableBufferPointer { v in
                        for (ty, tx0, tiles, column) in [(0, 0, 6, 0), (1, 2, 4, 7)] {
                            set.input(
                                src, Int32(channels), height * width, width, rows.baseAddress! + 4 * ty,
                                cols.baseAddress! + 4 * tx0, Int32(tiles), ld, v.baseAddress! + column, &scratch)
                        }
                    }
                }
            }
            return v.map { $0.isNaN ? 0 : $0 }
        }
        expectAgree(run)
    }

    /// The tiles of a 7×18 output: a full tile row and a partial one, each ending on a partial tile, with and
    /// without a bias.
    @Test(arguments: [false, true])
    func outputTransformsAgree(withBias: Bool) {
        let (channels, oh, ow, tiles, ld) = (5, 7, 18, 5, 8)
        let m = Self.random(count: 36 * channels * ld, seed: 5)
        let bias = withBias ? Self.random(count: channels, seed: 6) : nil
        let run = { (set: ck_winograd_kernels) -> [Float] in
            var out = [Float](repeating: .nan, count: channels * oh * ow)
            var scratch = [Float](repeating: .nan, count: ck_winograd_output_scratch(Int32(tiles)))
            for ty in 0..<2 {
                out.withUnsafeMutableBufferPointer { out in
                    set.output(
                        m, Int32(channels), ld, Int32(tiles), bias, out.baseAddress! + 4 * ty * ow, oh * ow, ow,
                        Int32(min(4, oh - 4 * ty)), Int32(ow), &scratch)
                }
            }
            return out
        }
        expectAgree(run)
    }

    /// The gradient's tiles of a 6×14 output, whose last tiles reach past both edges.
    @Test func gradientTransformsAgree() {
        let (channels, oh, ow, tiles, ld) = (7, 6, 14, 4, 9)
        let dy = Self.random(count: channels * oh * ow, seed: 7)
        let run = { (set: ck_winograd_kernels) -> [Float] in
            var yhat = [Float](repeating: .nan, count: 36 * channels * ld)
            var scratch = [Float](repeating: .nan, count: ck_winograd_gradient_scratch(Int32(tiles)))
            dy.withUnsafeBufferPointer { dy in
                yhat.withUnsafeMutableBufferPointer { yhat in
                    for ty in 0..<2 {
                        set.gradient(
                            dy.baseAddress! + 4 * ty * ow, Int32(channels), oh * ow, ow, Int32(min(4, oh - 4 * ty)),
                            Int32(ow), Int32(tiles), ld, yhat.baseAddress! + 4 * ty, &scratch)
                    }
                }
            }
            return yhat.map { $0.isNaN ? 0 : $0 }
        }
        expectAgree(run)
    }

    /// Every set this CPU runs gives the baseline's numbers (within rounding: the faster sets fuse
    /// multiply-adds), and writes no NaN the baseline does not.
    private func expectAgree(_ run: (ck_winograd_kernels) -> [Float]) {
        let expected = run(baseline)
        #expect(!expected.contains { $0.isNaN }, "the baseline left outputs unwritten")
        let scale = expected.map(abs).max() ?? 1
        #expect(scale > 0.1, "the test's outputs are all near zero")
        for set in others {
            let got = run(set)
            let worst = zip(got, expected).map { $0.isNaN ? .infinity : abs($0 - $1) }.max() ?? 0
            #expect(worst <= 1e-5 * scale, "\(String(cString: set.name)): off by \(worst)")
        }
    }

    static func random(count: Int, seed: UInt64) -> [Float] {
        var state = seed &* 0x9E37_79B9_7F4A_7C15
        return (0..<count).map { _ in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Float(Int64(bitPattern: state >> 11) % 2001 - 1000) / 1000
        }
    }
}
