/// A 2-D transposed convolution (PyTorch `ConvTranspose2d`) with bias.
///
/// Output row oy = iy·s − p + ky receives input row iy through tap ky. Split
/// the output by phase (oy mod s, ox mod s): each phase is an ordinary
/// convolution of the input with the taps of that phase, so it runs through
/// the same im2col + GEMM as `Conv2D` and multiplies no inserted zeros.
public struct ConvTranspose2D: @unchecked Sendable {
    public let inChannels: Int
    public let outChannels: Int
    public let kernel: Int
    public let stride: Int
    public let padding: Int
    public let outputPadding: Int
    let bias: Tensor?
    let phases: [Phase]

    /// One (a, b) phase: its taps and their weights as a [Cout, Cin·ty·tx] matrix.
    struct Phase {
        var a: Int
        var b: Int
        var tapsY: [Int]
        var tapsX: [Int]
        var weight: Tensor
    }

    /// `weight` is PyTorch's [Cin, Cout, k, k].
    public init(weight: Tensor, bias: Tensor?, stride: Int, padding: Int, outputPadding: Int) {
        precondition(
            weight.rank == 4 && weight.shape[2] == weight.shape[3], "weight must be [Cin,Cout,k,k]: \(weight.shape)")
        inChannels = weight.shape[0]
        outChannels = weight.shape[1]
        kernel = weight.shape[2]
        self.stride = stride
        self.padding = padding
        self.outputPadding = outputPadding
        self.bias = bias
        let k = kernel
        func taps(_ phase: Int) -> [Int] {
            (0..<k).filter { ky in ((ky - phase - padding) % stride + stride) % stride == 0 }
        }
        var phases: [Phase] = []
        for a in 0..<stride {
            for b in 0..<stride {
                let ty = taps(a)
                let tx = taps(b)
                let m = Tensor(shape: [outChannels, inChannels * ty.count * tx.count])
                var col = 0
                for ci in 0..<inChannels {
                    for ky in ty {
                        for kx in tx {
                            for co in 0..<outChannels {
                                m.data[co * m.shape[1] + col] = weight.data[((ci * outChannels + co) * k + ky) * k + kx]
                            }
                            col += 1
                        }
                    }
                }
                phases.append(Phase(a: a, b: b, tapsY: ty, tapsX: tx, weight: m))
            }
        }
        self.phases = phases
    }

    public func outputSize(height: Int, width: Int) -> (Int, Int) {
        (
            (height - 1) * stride - 2 * padding + kernel + outputPadding,
            (width - 1) * stride - 2 * padding + kernel + outputPadding
        )
    }

    /// Whole-tensor convenience: [1, Cin, H, W] → [1, Cout, Ho, Wo].
    public func callAsFunction(_ x: Tensor, compute: Compute) -> Tensor {
        let h = x.shape[x.rank - 2]
        let w = x.shape[x.rank - 1]
        let (oh, ow) = outputSize(height: h, width: w)
        let y = Tensor(shape: [1, outChannels, oh, ow])
        forward(
            Planes(x), inputHeight: h, inputWidth: w, inputRowBase: 0, outRows: 0..<oh, into: y.data, compute: compute)
        return y
    }

    /// Computes output rows `outRows` into `output` ([Cout, outRows.count, Wo]).
    /// `input` holds input rows starting at global row `inputRowBase`; it must
    /// cover every row those outputs read (rows outside 0..<inputHeight are zero).
    public func forward(
        _ input: Planes, inputHeight: Int, inputWidth: Int, inputRowBase: Int, outRows: Range<Int>,
        into output: UnsafeMutablePointer<Float>, compute: Compute
    ) {
        precondition(
            input.channels == inChannels, "transposed conv expects \(inChannels) channels, got \(input.channels)")
        let (_, ow) = outputSize(height: inputHeight, width: inputWidth)
        let bandHeight = outRows.count
        for phase in phases {
            // Output rows of this phase inside the band, and columns of the phase.
            let ys = outRows.filter { ($0 % stride) == phase.a }
            let xs = (0..<ow).filter { ($0 % stride) == phase.b }
            if ys.isEmpty || xs.isEmpty { continue }
            var rows = [Int32](repeating: -1, count: phase.tapsY.count * ys.count)
            for (t, ky) in phase.tapsY.enumerated() {
                for (i, oy) in ys.enumerated() {
                    let num = oy + padding - ky
                    let iy = num / stride
                    if num >= 0 && iy < inputHeight { rows[t * ys.count + i] = Int32(iy - inputRowBase) }
                }
            }
            var cols = [Int32](repeating: -1, count: phase.tapsX.count * xs.count)
            for (t, kx) in phase.tapsX.enumerated() {
                for (j, ox) in xs.enumerated() {
                    let num = ox + padding - kx
                    let ix = num / stride
                    if num >= 0 && ix < inputWidth { cols[t * xs.count + j] = Int32(ix) }
                }
            }
            let map = GatherMap(
                kernelHeight: phase.tapsY.count, kernelWidth: phase.tapsX.count,
                outHeight: ys.count, outWidth: xs.count, rows: rows, cols: cols)
            let firstRow = ys[0] - outRows.lowerBound
            GatherGEMM.run(
                input, map: map, weight: phase.weight.data, bias: bias?.data, outChannels: outChannels,
                into: output, outStride: bandHeight * ow, compute: compute,
                placement: .phase(rowStep: stride, colStep: stride, firstRow: firstRow, firstCol: xs[0], width: ow))
        }
    }
}
