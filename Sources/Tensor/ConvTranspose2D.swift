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
    /// For `inputGradient` (trainable only): the strided convolution of dY with the same weight.
    let inputGradientConv: Conv2D?

    /// One (a, b) phase: its taps and their weights as a [Cout, Cin·ty·tx] matrix.
    struct Phase {
        var a: Int
        var b: Int
        var tapsY: [Int]
        var tapsX: [Int]
        var weight: Tensor
    }

    /// `weight` is PyTorch's [Cin, Cout, k, k]. With `trainable`, also builds what `inputGradient` runs
    /// (once, here, on `compute`'s threads: after an optimizer step, build the layer again).
    public init(
        weight: Tensor, bias: Tensor?, stride: Int, padding: Int, outputPadding: Int, trainable: Bool = false,
        compute: Compute = Compute()
    ) {
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
        // dX[ci, iy, ix] = Σ W[ci, co, ky, kx]·dY[co, iy·s − p + ky, ix·s − p + kx]: a Conv2D whose
        // [Cout', Cin', k, k] weight is this one read as is.
        inputGradientConv = trainable ? Conv2D(weight: weight, bias: nil, stride: stride, compute: compute) : nil
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
        let (_, ow) = outputSize(height: inputHeight, width: inputWidth)
        forward(
            input, inputHeight: inputHeight, inputWidth: inputWidth, inputRowBase: inputRowBase, outRows: outRows,
            outColumns: 0..<ow, into: output, compute: compute)
    }

    /// As above, for the output columns `outColumns` only ([Cout, outRows.count, outColumns.count]; rows and
    /// columns past the kernel's reach are zero).
    func forward(
        _ input: Planes, inputHeight: Int, inputWidth: Int, inputRowBase: Int, outRows: Range<Int>,
        outColumns: Range<Int>, into output: UnsafeMutablePointer<Float>, compute: Compute
    ) {
        let compute = compute.now()
        let ow = outColumns.count
        precondition(
            input.channels == inChannels, "transposed conv expects \(inChannels) channels, got \(input.channels)")
        let bandHeight = outRows.count
        for phase in phases {
            // Output rows of this phase inside the band, and columns of the phase.
            let ys = outRows.filter { ($0 % stride) == phase.a }
            let xs = outColumns.filter { ($0 % stride) == phase.b }
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
                placement: .phase(
                    rowStep: stride, colStep: stride, firstRow: firstRow, firstCol: xs[0] - outColumns.lowerBound,
                    width: ow))
        }
    }
}

// MARK: - Backward

extension ConvTranspose2D {
    /// ∂L/∂x of the whole-image forward: dY [Cout, Ho, Wo] → dX [Cin, H, W] (overwritten), H×W the forward's
    /// input size.
    public func inputGradient(
        _ dY: UnsafePointer<Float>, inputHeight: Int, inputWidth: Int, into dX: UnsafeMutablePointer<Float>,
        compute: Compute
    ) {
        guard let inputGradientConv else {
            preconditionFailure("ConvTranspose2D.inputGradient needs init(trainable: true)")
        }
        let (oh, ow) = outputSize(height: inputHeight, width: inputWidth)
        inputGradientConv.forward(
            Planes(source: dY, channels: outChannels, channelStride: oh * ow, rowStride: ow),
            rowMap: paddedIndexMap(length: oh, padding: .zero(padding)),
            colMap: paddedIndexMap(length: ow, padding: .zero(padding)), into: dX, compute: compute)
    }

    /// dW [Cin, Cout, k, k] (PyTorch's layout) += Σ_{iy,ix} X[ci, iy, ix]·dY[co, iy·s − p + ky, ix·s − p + kx],
    /// dB [Cout] += Σ dY[co, ·] (dB may be nil): the GEMM X [Cin, H·W] · col(dY)ᵀ, with dY gathered as
    /// `inputGradient`'s convolution reads it. `input` is the forward's input, rows `inputWidth` apart.
    public func accumulateWeightGradient(
        input: Planes, inputHeight: Int, inputWidth: Int, outputGradient dY: UnsafePointer<Float>,
        weightGradient dW: UnsafeMutablePointer<Float>, biasGradient dB: UnsafeMutablePointer<Float>?,
        compute: Compute
    ) {
        let compute = compute.now()
        precondition(input.channels == inChannels && input.rowStride == inputWidth, "input must be [Cin, H, W]")
        let (oh, ow) = outputSize(height: inputHeight, width: inputWidth)
        let map = GatherMap(
            kernel: kernel, stride: stride, rowMap: paddedIndexMap(length: oh, padding: .zero(padding)),
            colMap: paddedIndexMap(length: ow, padding: .zero(padding)))
        precondition(map.outHeight == inputHeight && map.outWidth == inputWidth)
        GatherGEMM.accumulateProducts(
            input.source, rows: inChannels, leadingDimension: input.channelStride,
            gathered: Planes(source: dY, channels: outChannels, channelStride: oh * ow, rowStride: ow), map: map,
            into: dW, compute: compute)
        if let dB {
            Elementwise.accumulateChannelSums(dY, channels: outChannels, pixels: oh * ow, into: dB, compute: compute)
        }
    }
}
