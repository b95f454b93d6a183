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

    /// How to run a convolution; `.automatic` picks by shape (tests force the others).
    public enum Algorithm: Sendable {
        case automatic
        case im2col
        case winograd
        case kn2row
    }

    public init(weight: Tensor, bias: Tensor?, stride: Int, algorithm: Algorithm = .automatic) {
        precondition(
            weight.rank == 4 && weight.shape[2] == weight.shape[3],
            "conv weight must be [Cout,Cin,k,k]: \(weight.shape)")
        outChannels = weight.shape[0]
        inChannels = weight.shape[1]
        kernel = weight.shape[2]
        self.stride = stride
        self.weight = weight
        self.bias = bias
        let chosen: Algorithm
        switch algorithm {
        case .automatic:
            if kernel == 3 && stride == 1 && inChannels >= 32 && outChannels >= 32 {
                chosen = .winograd
            } else if stride == 1 && outChannels <= 8 && kernel > 1 {
                chosen = .kn2row
            } else {
                chosen = .im2col
            }
        case .winograd:
            precondition(kernel == 3 && stride == 1, "Winograd F(4×4, 3×3) needs a stride-1 3×3 kernel")
            chosen = .winograd
        case .kn2row:
            precondition(stride == 1, "kn2row needs stride 1")
            chosen = .kn2row
        case .im2col:
            chosen = .im2col
        }
        winograd = chosen == .winograd ? Winograd3x3(weight: weight, bias: bias) : nil
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
        let bandRows = max(1, min(oh, 16_384 / max(wp, 1)))
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
                // X̃: [Cin, rowsIn, Wp], padded rows oy0 ..< oy0 + rowsIn.
                for c in 0..<cin {
                    let plane = input.source + c * input.channelStride
                    for r in 0..<rowsIn {
                        let dst = xs + (c * rowsIn + r) * wp
                        let sy = Int(rowMap[oy0 + r])
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
}

/// im2col + GEMM over chunks of output pixels, for any gather map.
enum GatherGEMM {
    /// Pixels per chunk: the column buffer stays within a few MB per worker.
    static func chunkSize(k: Int, pixels: Int) -> Int {
        let target = max(64, (1 << 20) / max(k, 1))
        return min(pixels, (target + 15) / 16 * 16)
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
        let chunk = chunkSize(k: kdim, pixels: pixels)
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
                        for j in 0..<n {
                            let p = p0 + j
                            let i = p / map.outWidth
                            let x = p - i * map.outWidth
                            plane[(firstRow + i * rowStep) * width + firstCol + x * colStep] = src[j]
                        }
                    }
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
