// Conv2D's three algorithms with each one's backward beside its forward (llm.c's way), and the
// im2col machinery they share: split, the passes would lose their symmetry with each other.

/// An input the convolutions read: `channels` planes at `source`, plane `c`
/// starting at `c * channelStride`, row `r` of a plane at `r * rowStride`.
/// The gather maps index rows and columns of these planes.
public struct Planes {
    public let source: UnsafePointer<Float>
    public let channels: Int
    public let channelStride: Int
    public let rowStride: Int

    public init(source: UnsafePointer<Float>, channels: Int, channelStride: Int, rowStride: Int) {
        self.source = source
        self.channels = channels
        self.channelStride = channelStride
        self.rowStride = rowStride
    }

    /// A whole [C, H, W] tensor.
    public init(_ t: Tensor) {
        precondition(t.rank == 3 || (t.rank == 4 && t.shape[0] == 1), "expected [C,H,W] or [1,C,H,W], got \(t.shape)")
        let (c, h, w) = (t.shape[t.rank - 3], t.shape[t.rank - 2], t.shape[t.rank - 1])
        self.init(source: t.data, channels: c, channelStride: h * w, rowStride: w)
    }
}

/// A 2-D convolution (PyTorch `Conv2d`, cross-correlation) with bias.
///
/// Three ways to run it, picked by shape at construction:
/// - stride-1 3×3 with many channels: Winograd F(4×4, 3×3), a quarter of the
///   multiplications, as 36 GEMMs per block of tiles;
/// - few output channels (the last 7×7 layer): one GEMM per band with the
///   taps as rows of the weight matrix, then shifted sums ("kn2row"), which
///   keeps the GEMM wide where im2col would make it 3 rows tall;
/// - everything else: im2col over chunks of output pixels and one GEMM each.
public struct Conv2D: @unchecked Sendable {
    public let inChannels: Int
    public let outChannels: Int
    public let kernel: Int
    public let stride: Int
    /// [Cout, Cin·k·k] row-major: PyTorch's weight layout read as a matrix.
    let weight: Tensor
    let bias: Tensor?
    let winograd: Winograd3x3?
    let tapMajor: Tensor?
    let inputGradientForm: InputGradientForm?

    /// How to run a convolution; `.automatic` picks by shape (tests force the others).
    public enum Algorithm: Sendable {
        case automatic
        /// As `.automatic`, but never Winograd: every output is a plain sum of products, rounded as a direct
        /// convolution (and PyTorch's) are. Winograd's transforms round more (about 10× a direct sum's error),
        /// which a training step can turn into an Adam step of the opposite sign for a gradient that is mostly
        /// cancellation; the backward passes of a layer built with it avoid Winograd too.
        case exact
        case im2col
        case winograd
        case kn2row
    }

    /// With `trainable`, also builds the form of the weight that `inputGradient` runs. The forms are
    /// derived from the weight once, here (on `compute`'s threads): after an optimizer step, build the layer again. With
    /// `winogradScratch`, Winograd layers (forward and data gradient) transform their filters at each call
    /// into it instead of keeping them: for training, where keeping every layer's would cost 8× the weights.
    public init(
        weight: Tensor, bias: Tensor?, stride: Int, algorithm: Algorithm = .automatic, trainable: Bool = false,
        winogradScratch: WinogradScratch? = nil, compute: Compute = Compute()
    ) {
        precondition(
            weight.rank == 4 && weight.shape[2] == weight.shape[3],
            "conv weight must be [Cout,Cin,k,k]: \(weight.shape)")
        outChannels = weight.shape[0]
        inChannels = weight.shape[1]
        kernel = weight.shape[2]
        self.stride = stride
        self.weight = weight
        self.bias = bias
        let chosen = Self.choose(
            algorithm, kernel: kernel, stride: stride, inChannels: inChannels, outChannels: outChannels)
        if chosen == .winograd {
            winograd =
                winogradScratch.map { Winograd3x3(weight: weight, bias: bias, flipped: false, scratch: $0) }
                ?? Winograd3x3(weight: weight, bias: bias, compute: compute)
        } else {
            winograd = nil
        }
        if chosen == .kn2row {
            // [k·k·Cout, Cin]: row (ky·k + kx)·Cout + co holds W[co, :, ky, kx].
            let kk = kernel * kernel
            let t = Tensor(shape: [kk * outChannels, inChannels])
            for co in 0..<outChannels {
                for ci in 0..<inChannels {
                    for tap in 0..<kk {
                        t.data[(tap * outChannels + co) * inChannels + ci] =
                            weight.data[(co * inChannels + ci) * kk + tap]
                    }
                }
            }
            tapMajor = t
        } else {
            tapMajor = nil
        }
        inputGradientForm =
            trainable
            ? InputGradientForm(
                weight: weight, stride: stride, exact: algorithm == .exact, winogradScratch: winogradScratch,
                compute: compute) : nil
    }

    /// The algorithm `algorithm` stands for at this shape (`.winograd`, `.kn2row` or `.im2col`).
    static func choose(_ algorithm: Algorithm, kernel: Int, stride: Int, inChannels: Int, outChannels: Int)
        -> Algorithm
    {
        switch algorithm {
        case .automatic, .exact:
            if algorithm == .automatic && kernel == 3 && stride == 1 && inChannels >= 32 && outChannels >= 32 {
                return .winograd
            } else if stride == 1 && outChannels <= 8 && kernel > 1 {
                return .kn2row
            } else {
                return .im2col
            }
        case .winograd:
            precondition(kernel == 3 && stride == 1, "Winograd F(4×4, 3×3) needs a stride-1 3×3 kernel")
            return .winograd
        case .kn2row:
            precondition(stride == 1, "kn2row needs stride 1")
            return .kn2row
        case .im2col:
            return .im2col
        }
    }

    /// Output size for an input of `height`×`width` with `padding`.
    public func outputSize(height: Int, width: Int, padding: Padding) -> (Int, Int) {
        let p = padding.amount
        return ((height + 2 * p - kernel) / stride + 1, (width + 2 * p - kernel) / stride + 1)
    }

    /// Whole-tensor convenience: [1, Cin, H, W] → [1, Cout, Ho, Wo].
    public func callAsFunction(_ x: Tensor, padding: Padding, compute: Compute) -> Tensor {
        let h = x.shape[x.rank - 2]
        let w = x.shape[x.rank - 1]
        let rowMap = paddedIndexMap(length: h, padding: padding)
        let colMap = paddedIndexMap(length: w, padding: padding)
        let (oh, ow) = outputSize(height: h, width: w, padding: padding)
        let y = Tensor(shape: [1, outChannels, oh, ow])
        forward(Planes(x), rowMap: rowMap, colMap: colMap, into: y.data, compute: compute)
        return y
    }

    /// Convolves `input` read through padded-coordinate maps (see
    /// `paddedIndexMap`) into `output` ([Cout, Ho, Wo] contiguous).
    public func forward(
        _ input: Planes, rowMap: [Int32], colMap: [Int32], into output: UnsafeMutablePointer<Float>, compute: Compute
    ) {
        let compute = compute.now()
        precondition(input.channels == inChannels, "conv expects \(inChannels) channels, got \(input.channels)")
        if let winograd {
            winograd.forward(input, rowMap: rowMap, colMap: colMap, into: output, compute: compute)
        } else if let tapMajor {
            thinForward(input, rowMap: rowMap, colMap: colMap, tapMajor: tapMajor, into: output, compute: compute)
        } else {
            let map = GatherMap(kernel: kernel, stride: stride, rowMap: rowMap, colMap: colMap)
            GatherGEMM.run(
                input, map: map, weight: weight.data, bias: bias?.data, outChannels: outChannels,
                into: output, outStride: map.outHeight * map.outWidth, compute: compute)
        }
    }

    // MARK: kn2row for few output channels

    /// out[co, oy, ox] = Σ_{ky,kx} P[(ky·k+kx)·Cout + co, (oy+ky)·Wp + ox+kx], where
    /// P = tapMajor · X̃ and X̃ is the padded input of a band of rows.
    private func thinForward(
        _ input: Planes, rowMap: [Int32], colMap: [Int32], tapMajor: Tensor,
        into output: UnsafeMutablePointer<Float>, compute: Compute
    ) {
        let k = kernel
        let cin = inChannels
        let cout = outChannels
        let hp = rowMap.count
        let wp = colMap.count
        let oh = hp - k + 1
        let ow = wp - k + 1
        let bandRows = Self.bandRows(outHeight: oh, paddedWidth: wp, threads: compute.threads)
        let bands = (oh + bandRows - 1) / bandRows
        let taps = k * k * cout
        let xCap = cin * (bandRows + k - 1) * wp
        let pCap = taps * (bandRows + k - 1) * wp
        compute.forSlices(bands) { _, range in
            let xs = UnsafeMutablePointer<Float>.allocate(capacity: xCap)
            let ps = UnsafeMutablePointer<Float>.allocate(capacity: pCap)
            defer {
                xs.deallocate()
                ps.deallocate()
            }
            for band in range {
                let oy0 = band * bandRows
                let rowsOut = min(bandRows, oh - oy0)
                let rowsIn = rowsOut + k - 1
                Self.gatherPaddedRows(input, rowMap: rowMap, colMap: colMap, rows: oy0..<(oy0 + rowsIn), into: xs)
                let n = rowsIn * wp
                BLAS.sgemm(m: taps, n: n, k: cin, a: tapMajor.data, lda: cin, b: xs, ldb: n, c: ps, ldc: n)
                for co in 0..<cout {
                    let b = bias?.data[co] ?? 0
                    for r in 0..<rowsOut {
                        let dst = output + (co * oh + oy0 + r) * ow
                        dst.update(repeating: b, count: ow)
                        for ky in 0..<k {
                            for kx in 0..<k {
                                let src = ps + ((ky * k + kx) * cout + co) * n + (r + ky) * wp + kx
                                for ox in 0..<ow { dst[ox] += src[ox] }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Output rows per band of the kn2row passes: a band's padded rows hold about 16K pixels, and the bands
    /// come in a multiple of the threads, of one height, so that every worker gets the same share.
    private static func bandRows(outHeight oh: Int, paddedWidth wp: Int, threads: Int) -> Int {
        let target = max(1, min(oh, 16_384 / max(wp, 1)))
        var bands = (oh + target - 1) / target
        bands = max(1, (bands + threads - 1) / threads * threads)
        return max(1, (oh + bands - 1) / bands)
    }

    /// X̃ [Cin, rows.count, Wp]: the padded input's rows `rows`, read through the maps.
    private static func gatherPaddedRows(
        _ input: Planes, rowMap: [Int32], colMap: [Int32], rows: Range<Int>, into xs: UnsafeMutablePointer<Float>
    ) {
        let wp = colMap.count
        for c in 0..<input.channels {
            let plane = input.source + c * input.channelStride
            for r in 0..<rows.count {
                let dst = xs + (c * rows.count + r) * wp
                let sy = Int(rowMap[rows.lowerBound + r])
                if sy < 0 {
                    dst.update(repeating: 0, count: wp)
                    continue
                }
                let row = plane + sy * input.rowStride
                for q in 0..<wp {
                    let sx = Int(colMap[q])
                    dst[q] = sx < 0 ? 0 : row[sx]
                }
            }
        }
    }
}

// MARK: - Backward

extension Conv2D {
    /// What carries dY back to the gradient of the padded input.
    indirect enum InputGradientForm {
        /// Stride 1: the full correlation of dY (zero-padded by k − 1) with the flipped, channel-transposed
        /// weight W'[ci, co, ky, kx] = W[co, ci, k−1−ky, k−1−kx], a stride-1 Conv2D that picks its own
        /// algorithm (Winograd for the residual blocks, kn2row for the 3-channel first layer).
        case flipped(Conv2D)
        /// The same by Winograd, transforming the flipped filters at each call straight from the weight.
        case flippedWinograd(Winograd3x3)
        /// Stride s: the transposed convolution over the same weight (Conv2d's [Cout, Cin, k, k] is
        /// ConvTranspose2d's [in, out, k, k]) without padding, which yields the padded input's gradient.
        case transposed(ConvTranspose2D)
        /// Few input channels (the images entering the networks): one GEMM Wᵀ·dY per chunk of output pixels,
        /// [Cin·k², Cout]·[Cout, n], then its columns added where the forward's gather map read them (col2im).
        /// The derived forms would have ≤ 8 output channels, GEMMs that thin.
        case scattered

        init(weight: Tensor, stride: Int, exact: Bool, winogradScratch: WinogradScratch?, compute: Compute) {
            if weight.shape[1] <= 8 {
                self = .scattered
                return
            }
            if stride > 1 {
                self = .transposed(
                    ConvTranspose2D(
                        weight: weight, bias: nil, stride: stride, padding: 0, outputPadding: 0, compute: compute))
                return
            }
            let (cout, cin, k) = (weight.shape[0], weight.shape[1], weight.shape[2])
            let algorithm: Algorithm = exact ? .exact : .automatic
            if let winogradScratch,
                Conv2D.choose(algorithm, kernel: k, stride: 1, inChannels: cout, outChannels: cin) == .winograd
            {
                self = .flippedWinograd(Winograd3x3(weight: weight, bias: nil, flipped: true, scratch: winogradScratch))
                return
            }
            let flipped = Tensor(shape: [cin, cout, k, k])
            for co in 0..<cout {
                for ci in 0..<cin {
                    let src = weight.data + (co * cin + ci) * k * k
                    let dst = flipped.data + (ci * cout + co) * k * k
                    for t in 0..<(k * k) { dst[k * k - 1 - t] = src[t] }
                }
            }
            self = .flipped(Conv2D(weight: flipped, bias: nil, stride: 1, algorithm: algorithm, compute: compute))
        }
    }

    /// ∂L/∂x of `forward` over an unpadded `inputHeight`×`inputWidth` input padded with `padding`:
    /// dY [Cout, Ho, Wo] → dX [Cin, H, W] (overwritten). Reflection padding folds the gradient of each
    /// padded border pixel back onto the pixel it reflected (repeatedly, as `reflectIndex`).
    public func inputGradient(
        _ dY: UnsafePointer<Float>, inputHeight: Int, inputWidth: Int, padding: Padding,
        into dX: UnsafeMutablePointer<Float>, compute: Compute
    ) {
        guard let inputGradientForm else { preconditionFailure("Conv2D.inputGradient needs init(trainable: true)") }
        let compute = compute.now()
        let (oh, ow) = outputSize(height: inputHeight, width: inputWidth, padding: padding)
        let p = padding.amount
        let (hp, wp) = (inputHeight + 2 * p, inputWidth + 2 * p)
        let gradient = Planes(source: dY, channels: outChannels, channelStride: oh * ow, rowStride: ow)
        /// Runs `body` into the padded input's gradient [Cin, Hp, Wp], then folds that onto dX.
        func folding(_ body: (UnsafeMutablePointer<Float>) -> Void) {
            let padded = UnsafeMutablePointer<Float>.allocate(capacity: inChannels * hp * wp)
            defer { padded.deallocate() }
            body(padded)
            Self.foldPadding(
                padded, channels: inChannels, rowMap: paddedIndexMap(length: inputHeight, padding: padding),
                colMap: paddedIndexMap(length: inputWidth, padding: padding), into: dX,
                pixels: inputHeight * inputWidth, width: inputWidth, compute: compute)
        }
        /// Runs the full correlation of dY `forward(rowMap, colMap, into)` with the flipped weight into dX.
        func correlate(
            _ forward: (_ rowMap: [Int32], _ colMap: [Int32], _ into: UnsafeMutablePointer<Float>) -> Void
        ) {
            if case .zero = padding, p <= kernel - 1 {
                // Straight into dX: the unpadded part of the full correlation.
                let shift = kernel - 1 - p
                forward(
                    Self.shiftedMap(length: inputHeight + kernel - 1, source: oh, shift: shift),
                    Self.shiftedMap(length: inputWidth + kernel - 1, source: ow, shift: shift), dX)
            } else {
                folding { padded in
                    forward(
                        Self.shiftedMap(length: hp + kernel - 1, source: oh, shift: kernel - 1),
                        Self.shiftedMap(length: wp + kernel - 1, source: ow, shift: kernel - 1), padded)
                }
            }
        }
        switch inputGradientForm {
        case .scattered:
            GatherGEMM.scatterTransposed(
                dY, rows: outChannels, weight: weight.data,
                map: GatherMap(
                    height: inputHeight, width: inputWidth, kernel: kernel, stride: stride, padding: padding),
                channels: inChannels, into: dX, height: inputHeight, width: inputWidth, compute: compute)
        case .transposed(let conv):
            if case .zero = padding {
                // Straight into dX: the padded input's gradient without its border.
                conv.forward(
                    gradient, inputHeight: oh, inputWidth: ow, inputRowBase: 0, outRows: p..<(p + inputHeight),
                    outColumns: p..<(p + inputWidth), into: dX, compute: compute)
            } else {
                folding { padded in
                    conv.forward(
                        gradient, inputHeight: oh, inputWidth: ow, inputRowBase: 0, outRows: 0..<hp,
                        outColumns: 0..<wp, into: padded, compute: compute)
                }
            }
        case .flipped(let conv):
            correlate { conv.forward(gradient, rowMap: $0, colMap: $1, into: $2, compute: compute) }
        case .flippedWinograd(let winograd):
            correlate { winograd.forward(gradient, rowMap: $0, colMap: $1, into: $2, compute: compute) }
        }
    }

    /// A padded-coordinate map of `length` that reads source row q − shift (zero outside 0..<source).
    private static func shiftedMap(length: Int, source: Int, shift: Int) -> [Int32] {
        (0..<length).map { q in q - shift >= 0 && q - shift < source ? Int32(q - shift) : -1 }
    }

    /// dX[c, rowMap[qy], colMap[qx]] = Σ dXpad[c, qy, qx] over the padded positions that read an input
    /// pixel (zero padding reads none, reflection reads border pixels more than once).
    private static func foldPadding(
        _ padded: UnsafePointer<Float>, channels: Int, rowMap: [Int32], colMap: [Int32],
        into dX: UnsafeMutablePointer<Float>, pixels: Int, width: Int, compute: Compute
    ) {
        let (hp, wp) = (rowMap.count, colMap.count)
        compute.forEach(channels) { c in
            let dst = dX + c * pixels
            dst.update(repeating: 0, count: pixels)
            for qy in 0..<hp {
                let y = Int(rowMap[qy])
                if y < 0 { continue }
                let src = padded + (c * hp + qy) * wp
                let row = dst + y * width
                for qx in 0..<wp {
                    let x = Int(colMap[qx])
                    if x >= 0 { row[x] += src[qx] }
                }
            }
        }
    }

    /// dW [Cout, Cin, k, k] += Σ_p dY[co, p]·Xpad[ci, p + tap] and dB [Cout] += Σ_p dY[co, p] (dB may be nil).
    /// `input` is the forward's unpadded `inputHeight`×`inputWidth` input.
    public func accumulateWeightGradient(
        input: Planes, inputHeight: Int, inputWidth: Int, padding: Padding, outputGradient dY: UnsafePointer<Float>,
        weightGradient dW: UnsafeMutablePointer<Float>, biasGradient dB: UnsafeMutablePointer<Float>?, compute: Compute
    ) {
        let compute = compute.now()
        precondition(input.channels == inChannels, "conv expects \(inChannels) channels, got \(input.channels)")
        let rowMap = paddedIndexMap(length: inputHeight, padding: padding)
        let colMap = paddedIndexMap(length: inputWidth, padding: padding)
        let (oh, ow) = outputSize(height: inputHeight, width: inputWidth, padding: padding)
        if winograd != nil {
            Winograd3x3.accumulateWeightGradient(
                input, rowMap: rowMap, colMap: colMap, outputGradient: dY, outChannels: outChannels, into: dW,
                compute: compute)
        } else if stride == 1 && kernel > 1 && outChannels <= 8 {
            thinWeightGradient(input, rowMap: rowMap, colMap: colMap, outputGradient: dY, into: dW, compute: compute)
        } else {
            GatherGEMM.accumulateProducts(
                dY, rows: outChannels, leadingDimension: oh * ow, gathered: input,
                map: GatherMap(kernel: kernel, stride: stride, rowMap: rowMap, colMap: colMap), into: dW,
                compute: compute)
        }
        if let dB {
            Elementwise.accumulateChannelSums(dY, channels: outChannels, pixels: oh * ow, into: dB, compute: compute)
        }
    }

    /// The weight gradient for few output channels, where im2col's GEMM would be Cout rows tall: per band of
    /// output rows, dY is laid out once per tap in the padded band's coordinates,
    /// D[tap·Cout + co, (r+ky)·Wp + ox+kx] = dY[co, oy0+r, ox], so that one GEMM over the band,
    /// C [Cin, k²·Cout] += X̃ [Cin, N] · Dᵀ, gives every tap (X̃ as in kn2row, N = its rows·Wp).
    private func thinWeightGradient(
        _ input: Planes, rowMap: [Int32], colMap: [Int32], outputGradient dY: UnsafePointer<Float>,
        into dW: UnsafeMutablePointer<Float>, compute: Compute
    ) {
        let compute = compute.now()
        let k = kernel
        let cin = inChannels
        let cout = outChannels
        let wp = colMap.count
        let oh = rowMap.count - k + 1
        let ow = wp - k + 1
        let bandRows = Self.bandRows(outHeight: oh, paddedWidth: wp, threads: compute.threads)
        let bands = (oh + bandRows - 1) / bandRows
        let taps = k * k * cout
        let cap = (bandRows + k - 1) * wp
        let workers = min(compute.threads, bands)
        let partials = UnsafeMutablePointer<Float>.allocate(capacity: workers * cin * taps)
        partials.initialize(repeating: 0, count: workers * cin * taps)
        defer { partials.deallocate() }
        compute.forSlices(bands) { worker, range in
            let xs = UnsafeMutablePointer<Float>.allocate(capacity: cin * cap)
            let ds = UnsafeMutablePointer<Float>.allocate(capacity: taps * cap)
            defer {
                xs.deallocate()
                ds.deallocate()
            }
            for band in range {
                let oy0 = band * bandRows
                let rowsOut = min(bandRows, oh - oy0)
                let rowsIn = rowsOut + k - 1
                let n = rowsIn * wp
                Self.gatherPaddedRows(input, rowMap: rowMap, colMap: colMap, rows: oy0..<(oy0 + rowsIn), into: xs)
                ds.update(repeating: 0, count: taps * n)
                for ky in 0..<k {
                    for kx in 0..<k {
                        for co in 0..<cout {
                            let d = ds + ((ky * k + kx) * cout + co) * n + ky * wp + kx
                            for r in 0..<rowsOut {
                                (d + r * wp).update(from: dY + (co * oh + oy0 + r) * ow, count: ow)
                            }
                        }
                    }
                }
                BLAS.sgemm(
                    m: cin, n: taps, k: n, a: xs, lda: n, b: ds, ldb: n, transposeB: true,
                    c: partials + worker * cin * taps, ldc: taps, accumulate: true)
            }
        }
        // dW[co, ci, tap] += Σ_worker C[ci, tap·Cout + co], in worker order.
        compute.forEach(cout) { co in
            for ci in 0..<cin {
                let dst = dW + (co * cin + ci) * k * k
                for t in 0..<(k * k) {
                    var s = dst[t]
                    for w in 0..<workers { s += partials[(w * cin + ci) * taps + t * cout + co] }
                    dst[t] = s
                }
            }
        }
    }
}

/// im2col + GEMM over chunks of output pixels, for any gather map.
enum GatherGEMM {
    /// Pixels per chunk: the column buffer stays within a few MB per worker, and the chunks come in a multiple
    /// of the threads, of one size, so that every worker gets the same share (a small layer's one or two
    /// chunks of unequal size left a core idle: a 128² discriminator ran on one).
    static func chunkSize(k: Int, pixels: Int, threads: Int) -> Int {
        let target = max(64, (1 << 20) / max(k, 1))
        var chunks = max(1, (pixels + target - 1) / target)
        chunks = (chunks + threads - 1) / threads * threads
        let chunk = (pixels + chunks - 1) / chunks
        return max(1, min(pixels, (chunk + 15) / 16 * 16))
    }

    /// Where the GEMM's output pixels go: in order, or on one phase of a strided
    /// grid (output pixel (i, j) of the map lands at row firstRow + i·rowStep,
    /// column firstCol + j·colStep of a plane `width` wide).
    enum Placement {
        case contiguous
        case phase(rowStep: Int, colStep: Int, firstRow: Int, firstCol: Int, width: Int)
    }

    /// output[co · outStride + p] = bias[co] + Σ_k weight[co, k] · col[k, p] for every
    /// output pixel p of `map`. `weight` is [Cout, Cin·kh·kw] row-major.
    static func run(
        _ input: Planes, map: GatherMap, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
        outChannels: Int, into output: UnsafeMutablePointer<Float>, outStride: Int, compute: Compute,
        placement: Placement = .contiguous
    ) {
        let kh = map.kernelHeight
        let kw = map.kernelWidth
        let kdim = input.channels * kh * kw
        let pixels = map.outHeight * map.outWidth
        let chunk = chunkSize(k: kdim, pixels: pixels, threads: compute.threads)
        let chunks = (pixels + chunk - 1) / chunk
        let direct: Bool
        if case .contiguous = placement { direct = true } else { direct = false }
        compute.forSlices(chunks) { _, range in
            let col = UnsafeMutablePointer<Float>.allocate(capacity: kdim * chunk)
            let staging = direct ? nil : UnsafeMutablePointer<Float>.allocate(capacity: outChannels * chunk)
            defer {
                col.deallocate()
                staging?.deallocate()
            }
            for ci in range {
                let p0 = ci * chunk
                let n = min(chunk, pixels - p0)
                im2col(input, map: map, p0: p0, n: n, into: col)
                let (c, ldc) = staging.map { ($0, n) } ?? (output + p0, outStride)
                if let bias {
                    for co in 0..<outChannels { (c + co * ldc).update(repeating: bias[co], count: n) }
                }
                BLAS.sgemm(
                    m: outChannels, n: n, k: kdim, a: weight, lda: kdim, b: col, ldb: n, c: c, ldc: ldc,
                    accumulate: bias != nil)
                if let staging, case .phase(let rowStep, let colStep, let firstRow, let firstCol, let width) = placement
                {
                    for co in 0..<outChannels {
                        let src = staging + co * n
                        let plane = output + co * outStride
                        // One run of the chunk's pixels per output row of the phase.
                        var j = 0
                        while j < n {
                            let p = p0 + j
                            let i = p / map.outWidth
                            let x0 = p - i * map.outWidth
                            let run = min(map.outWidth - x0, n - j)
                            let dst = plane + (firstRow + i * rowStep) * width + firstCol + x0 * colStep
                            for x in 0..<run { dst[x * colStep] = src[j + x] }
                            j += run
                        }
                    }
                }
            }
        }
    }

    /// dW [M, K] += left [M, P] · colᵀ, where col [K, P] = im2col(gathered, map), K = C·kh·kw and P the map's
    /// pixels (row m of `left` at m·leadingDimension): a convolution's weight gradient. Each worker sums its
    /// chunks of pixels into its own [M, K]; these are added to dW in worker order, so the result depends
    /// only on the thread count.
    static func accumulateProducts(
        _ left: UnsafePointer<Float>, rows m: Int, leadingDimension lda: Int, gathered: Planes, map: GatherMap,
        into dW: UnsafeMutablePointer<Float>, compute: Compute
    ) {
        let compute = compute.now()
        let kdim = gathered.channels * map.kernelHeight * map.kernelWidth
        let pixels = map.outHeight * map.outWidth
        let chunk = chunkSize(k: kdim, pixels: pixels, threads: compute.threads)
        let chunks = (pixels + chunk - 1) / chunk
        let workers = min(compute.threads, chunks)
        let size = m * kdim
        let partials = UnsafeMutablePointer<Float>.allocate(capacity: workers * size)
        partials.initialize(repeating: 0, count: workers * size)
        defer { partials.deallocate() }
        compute.forSlices(chunks) { worker, range in
            let col = UnsafeMutablePointer<Float>.allocate(capacity: kdim * chunk)
            defer { col.deallocate() }
            for ci in range {
                let p0 = ci * chunk
                let n = min(chunk, pixels - p0)
                im2col(gathered, map: map, p0: p0, n: n, into: col)
                BLAS.sgemm(
                    m: m, n: kdim, k: n, a: left + p0, lda: lda, b: col, ldb: n, transposeB: true,
                    c: partials + worker * size, ldc: kdim, accumulate: true)
            }
        }
        compute.forSlices(size) { _, slice in
            for i in slice {
                var s = dW[i]
                for w in 0..<workers { s += partials[w * size + i] }
                dW[i] = s
            }
        }
    }

    /// The adjoint of `run` without bias: out[c, rows[ky][oy], cols[kx][ox]] += col[(c·kh + ky)·kw + kx, p]
    /// with col = weightᵀ·dY ([K, Cout]·[Cout, P], `weight` [Cout, K]), i.e. the gradient of a convolution's
    /// input [C, height, width] (overwritten), padding and stride resolved by the map. Worker 0 adds its chunks
    /// into `out`, the others into copies of their own, added to it in worker order.
    static func scatterTransposed(
        _ dY: UnsafePointer<Float>, rows m: Int, weight: UnsafePointer<Float>, map: GatherMap, channels: Int,
        into out: UnsafeMutablePointer<Float>, height: Int, width: Int, compute: Compute
    ) {
        let compute = compute.now()
        let (kh, kw, oh, ow) = (map.kernelHeight, map.kernelWidth, map.outHeight, map.outWidth)
        let kdim = channels * kh * kw
        let pixels = oh * ow
        let size = channels * height * width
        let chunk = chunkSize(k: kdim, pixels: pixels, threads: compute.threads)
        let chunks = (pixels + chunk - 1) / chunk
        let workers = min(compute.threads, chunks)
        let copies = UnsafeMutablePointer<Float>.allocate(capacity: max(workers - 1, 0) * size)
        defer { copies.deallocate() }
        compute.forSlices(chunks) { worker, range in
            let acc = worker == 0 ? out : copies + (worker - 1) * size
            acc.update(repeating: 0, count: size)
            let col = UnsafeMutablePointer<Float>.allocate(capacity: kdim * chunk)
            defer { col.deallocate() }
            map.rows.withUnsafeBufferPointer { rows in
                map.cols.withUnsafeBufferPointer { cols in
                    for ci in range {
                        let p0 = ci * chunk
                        let n = min(chunk, pixels - p0)
                        BLAS.sgemm(
                            m: kdim, n: n, k: m, a: weight, lda: kdim, transposeA: true, b: dY + p0, ldb: pixels,
                            c: col, ldc: n)
                        for r in 0..<kdim {
                            let (c, tap) = r.quotientAndRemainder(dividingBy: kh * kw)
                            let (ky, kx) = tap.quotientAndRemainder(dividingBy: kw)
                            let plane = acc + c * height * width
                            let cmap = cols.baseAddress! + kx * ow
                            var p = p0
                            while p < p0 + n {
                                let oy = p / ow
                                let ox0 = p - oy * ow
                                let ox1 = min(ow, ox0 + (p0 + n - p))
                                let sy = Int(rows[ky * oh + oy])
                                if sy >= 0 {
                                    let row = plane + sy * width
                                    let src = col + r * n + (p - p0) - ox0
                                    for ox in ox0..<ox1 {
                                        let sx = Int(cmap[ox])
                                        if sx >= 0 { row[sx] += src[ox] }
                                    }
                                }
                                p += ox1 - ox0
                            }
                        }
                    }
                }
            }
        }
        if workers > 1 {
            compute.forSlices(size) { _, slice in
                for i in slice {
                    var s = out[i]
                    for w in 1..<workers { s += copies[(w - 1) * size + i] }
                    out[i] = s
                }
            }
        }
    }

    /// col[(ci·kh + ky)·kw + kx, j] = input[ci, rows[ky][oy], cols[kx][ox]] for output
    /// pixel p0 + j = oy·outWidth + ox (zero where a map says -1).
    static func im2col(_ input: Planes, map: GatherMap, p0: Int, n: Int, into col: UnsafeMutablePointer<Float>) {
        let oh = map.outHeight
        let ow = map.outWidth
        map.rows.withUnsafeBufferPointer { rows in
            map.cols.withUnsafeBufferPointer { cols in
                var kIndex = 0
                for c in 0..<input.channels {
                    let plane = input.source + c * input.channelStride
                    for ky in 0..<map.kernelHeight {
                        for kx in 0..<map.kernelWidth {
                            let dst = col + kIndex * n
                            kIndex += 1
                            var p = p0
                            while p < p0 + n {
                                let oy = p / ow
                                let ox0 = p - oy * ow
                                let ox1 = min(ow, ox0 + (p0 + n - p))
                                let d = dst + (p - p0)
                                let sy = Int(rows[ky * oh + oy])
                                if sy < 0 {
                                    d.update(repeating: 0, count: ox1 - ox0)
                                } else {
                                    let row = plane + sy * input.rowStride
                                    let cmap = cols.baseAddress! + kx * ow
                                    let span = map.spans[kx]
                                    let lo = min(max(span.lo, ox0), ox1)
                                    let hi = max(min(span.hi, ox1), lo)
                                    for ox in ox0..<lo {
                                        let sx = Int(cmap[ox])
                                        d[ox - ox0] = sx < 0 ? 0 : row[sx]
                                    }
                                    if span.step == 1 {
                                        (d + (lo - ox0)).update(from: row + span.base + lo, count: hi - lo)
                                    } else {
                                        let src = row + span.base
                                        for ox in lo..<hi { d[ox - ox0] = src[ox * span.step] }
                                    }
                                    for ox in hi..<ox1 {
                                        let sx = Int(cmap[ox])
                                        d[ox - ox0] = sx < 0 ? 0 : row[sx]
                                    }
                                }
                                p += ox1 - ox0
                            }
                        }
                    }
                }
            }
        }
    }
}
