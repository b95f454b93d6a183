/// Stride-1 3×3 convolution by Winograd's minimal filtering F(4×4, 3×3)
/// (Lavin & Gray 2015): each 4×4 output tile comes from a 6×6 input tile with
/// 36 multiplications per channel pair instead of 144.
///
///   Y = Aᵀ [ Σ_ci (G g Gᵀ) ⊙ (Bᵀ d B) ] A
///
/// The element-wise products summed over input channels are 36 independent
/// GEMMs, [Cout, Cin] × [Cin, tiles], one per position ξ of the 6×6 tile.
struct Winograd3x3: @unchecked Sendable {
    let inChannels: Int
    let outChannels: Int
    /// U[ξ][co][ci] = (G g Gᵀ)[ξ] for filter g = W[co, ci].
    let u: Tensor
    let bias: Tensor?

    init(weight: Tensor, bias: Tensor?) {
        outChannels = weight.shape[0]
        inChannels = weight.shape[1]
        self.bias = bias
        let u = Tensor(shape: [36, outChannels, inChannels])
        let pairs = outChannels * inChannels
        let cin = inChannels
        let out = u.data
        // U = G g Gᵀ per (co, ci) pair, in Double for accuracy; output channels in parallel.
        Compute().forEach(outChannels) { co in
            let g = Self.g
            var t = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
            withUnsafeMutableBytes(of: &t) { raw in
                let t = raw.bindMemory(to: Double.self).baseAddress!
                for ci in 0..<cin {
                    let w = weight.data + (co * cin + ci) * 9
                    // t = G·w (6×3) ...
                    for i in 0..<6 {
                        for j in 0..<3 {
                            t[i * 3 + j] =
                                g[i * 3] * Double(w[j]) + g[i * 3 + 1] * Double(w[3 + j]) + g[i * 3 + 2]
                                * Double(w[6 + j])
                        }
                    }
                    // ... then t·Gᵀ (6×6).
                    for i in 0..<6 {
                        for j in 0..<6 {
                            let v = t[i * 3] * g[j * 3] + t[i * 3 + 1] * g[j * 3 + 1] + t[i * 3 + 2] * g[j * 3 + 2]
                            out[(i * 6 + j) * pairs + co * cin + ci] = Float(v)
                        }
                    }
                }
            }
        }
        self.u = u
    }

    /// Winograd's G for F(4×4, 3×3), row-major 6×3.
    private static let g: SIMD32<Double> = {
        let rows: [Double] = [
            1.0 / 4, 0, 0,
            -1.0 / 6, -1.0 / 6, -1.0 / 6,
            -1.0 / 6, 1.0 / 6, -1.0 / 6,
            1.0 / 24, 1.0 / 12, 1.0 / 6,
            1.0 / 24, -1.0 / 12, 1.0 / 6,
            0, 0, 1,
        ]
        var v = SIMD32<Double>()
        for (i, x) in rows.enumerated() { v[i] = x }
        return v
    }()

    /// Tiles per block: wide enough that the 36 GEMMs run near OpenBLAS' peak and
    /// the filters U (36·Cout·Cin floats, 9 MB at 256 channels) are read once per
    /// many tiles; the block's transformed inputs and products then sit in L2/L3.
    var tilesPerBlock: Int {
        let perTile = 36 * (inChannels + outChannels) * 4
        return max(8, min(256, (12 << 20) / perTile)) / 8 * 8
    }

    /// `rowMap`/`colMap` are the padded-coordinate maps (length Ho+2, Wo+2).
    func forward(
        _ input: Planes, rowMap: [Int32], colMap: [Int32], into output: UnsafeMutablePointer<Float>, compute: Compute
    ) {
        let oh = rowMap.count - 2
        let ow = colMap.count - 2
        let tilesY = (oh + 3) / 4
        let tilesX = (ow + 3) / 4
        let tiles = tilesY * tilesX
        let block = min(tilesPerBlock, tiles)
        let blocks = (tiles + block - 1) / block
        let cin = inChannels
        let cout = outChannels
        // Padded maps extended with zeros so that every 6×6 tile is in range.
        let rmap = rowMap + [Int32](repeating: -1, count: tilesY * 4 + 2 - rowMap.count)
        let cmap = colMap + [Int32](repeating: -1, count: tilesX * 4 + 2 - colMap.count)
        let rowScratch = 6 * (4 * tilesX + 2)
        compute.forSlices(blocks) { _, range in
            let v = UnsafeMutablePointer<Float>.allocate(capacity: 36 * cin * block)
            let m = UnsafeMutablePointer<Float>.allocate(capacity: 36 * cout * block)
            let rowsA = UnsafeMutablePointer<Float>.allocate(capacity: rowScratch)
            let rowsB = UnsafeMutablePointer<Float>.allocate(capacity: rowScratch)
            defer {
                v.deallocate()
                m.deallocate()
                rowsA.deallocate()
                rowsB.deallocate()
            }
            rmap.withUnsafeBufferPointer { rmap in
                cmap.withUnsafeBufferPointer { cmap in
                    for b in range {
                        let t0 = b * block
                        let n = min(block, tiles - t0)
                        // A block is a run of tiles in row-major order: walk it one tile-row segment at a time.
                        var t = t0
                        while t < t0 + n {
                            let ty = t / tilesX
                            let tx0 = t - ty * tilesX
                            let tx1 = min(tilesX, tx0 + (t0 + n - t))
                            inputTransform(
                                input, rmap: rmap, cmap: cmap, ty: ty, tx: tx0..<tx1, column: t - t0, ld: block,
                                into: v, scratch: (rowsA, rowsB))
                            t += tx1 - tx0
                        }
                        for xi in 0..<36 {
                            BLAS.sgemm(
                                m: cout, n: n, k: cin, a: u.data + xi * cout * cin, lda: cin,
                                b: v + xi * cin * block, ldb: block, c: m + xi * cout * block, ldc: block)
                        }
                        t = t0
                        while t < t0 + n {
                            let ty = t / tilesX
                            let tx0 = t - ty * tilesX
                            let tx1 = min(tilesX, tx0 + (t0 + n - t))
                            outputTransform(
                                m, ty: ty, tx: tx0..<tx1, column: t - t0, ld: block, oh: oh, ow: ow, into: output,
                                scratch: rowsA)
                            t += tx1 - tx0
                        }
                    }
                }
            }
        }
    }

    /// V[ξ][ci][column + k] = (Bᵀ d B)[ξ] for the 6×6 input tile d of tile (ty, tx.lowerBound + k),
    /// every channel ci. Bᵀ runs down the six padded rows of the tile row at once
    /// (whole rows, so it vectorises); B then runs across each tile.
    private func inputTransform(
        _ input: Planes, rmap: UnsafeBufferPointer<Int32>, cmap: UnsafeBufferPointer<Int32>,
        ty: Int, tx: Range<Int>, column: Int, ld: Int, into v: UnsafeMutablePointer<Float>,
        scratch: (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>)
    ) {
        let stride = inChannels * ld
        let width = 4 * tx.count + 2
        let q0 = 4 * tx.lowerBound
        let (d, bt) = scratch
        for ci in 0..<inChannels {
            let plane = input.source + ci * input.channelStride
            // d: the six padded rows of this tile row, columns q0 ..< q0 + width.
            for i in 0..<6 {
                let dst = d + i * width
                let sy = Int(rmap[ty * 4 + i])
                if sy < 0 {
                    dst.update(repeating: 0, count: width)
                    continue
                }
                let row = plane + sy * input.rowStride
                for q in 0..<width {
                    let sx = Int(cmap[q0 + q])
                    dst[q] = sx < 0 ? 0 : row[sx]
                }
            }
            // Bᵀ d, row by row.
            let (d0, d1, d2, d3, d4, d5) = (d, d + width, d + 2 * width, d + 3 * width, d + 4 * width, d + 5 * width)
            let (b0, b1, b2, b3, b4, b5) = (
                bt, bt + width, bt + 2 * width, bt + 3 * width, bt + 4 * width, bt + 5 * width
            )
            for q in 0..<width {
                b0[q] = 4 * d0[q] - 5 * d2[q] + d4[q]
                b1[q] = -4 * (d1[q] + d2[q]) + d3[q] + d4[q]
                b2[q] = 4 * (d1[q] - d2[q]) - d3[q] + d4[q]
                b3[q] = -2 * d1[q] - d2[q] + 2 * d3[q] + d4[q]
                b4[q] = 2 * d1[q] - d2[q] - 2 * d3[q] + d4[q]
                b5[q] = 4 * d1[q] - 5 * d3[q] + d5[q]
            }
            // (Bᵀ d) B, tile by tile: tile k reads columns 4k ..< 4k + 6.
            for i in 0..<6 {
                let x = bt + i * width
                let out = v + (i * 6) * stride + ci * ld + column
                for k in 0..<tx.count {
                    let x0 = x[4 * k]
                    let x1 = x[4 * k + 1]
                    let x2 = x[4 * k + 2]
                    let x3 = x[4 * k + 3]
                    let x4 = x[4 * k + 4]
                    let x5 = x[4 * k + 5]
                    out[k] = 4 * x0 - 5 * x2 + x4
                    out[stride + k] = -4 * (x1 + x2) + x3 + x4
                    out[2 * stride + k] = 4 * (x1 - x2) - x3 + x4
                    out[3 * stride + k] = -2 * x1 - x2 + 2 * x3 + x4
                    out[4 * stride + k] = 2 * x1 - x2 - 2 * x3 + x4
                    out[5 * stride + k] = 4 * x1 - 5 * x3 + x5
                }
            }
        }
    }

    /// Y = Aᵀ M A + bias for the tiles (ty, tx), written where they lie inside the
    /// output. M A runs across the six products of each row of a tile and lays the
    /// results out in image order; Aᵀ then combines six such rows at once.
    private func outputTransform(
        _ m: UnsafeMutablePointer<Float>, ty: Int, tx: Range<Int>, column: Int, ld: Int, oh: Int, ow: Int,
        into output: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>
    ) {
        let stride = outChannels * ld
        let n = tx.count
        let width = 4 * n
        let x0 = 4 * tx.lowerBound
        let validWidth = min(width, ow - x0)
        let validRows = min(4, oh - 4 * ty)
        for co in 0..<outChannels {
            let b = bias?.data[co] ?? 0
            // u[i][4k + j] = (M A)[i][j] of tile k.
            for i in 0..<6 {
                let row = m + (i * 6) * stride + co * ld + column
                let u = scratch + i * width
                for k in 0..<n {
                    let m0 = row[k]
                    let m1 = row[stride + k]
                    let m2 = row[2 * stride + k]
                    let m3 = row[3 * stride + k]
                    let m4 = row[4 * stride + k]
                    let m5 = row[5 * stride + k]
                    u[4 * k] = m0 + m1 + m2 + m3 + m4
                    u[4 * k + 1] = m1 - m2 + 2 * (m3 - m4)
                    u[4 * k + 2] = m1 + m2 + 4 * (m3 + m4)
                    u[4 * k + 3] = m1 - m2 + 8 * (m3 - m4) + m5
                }
            }
            let (u0, u1, u2, u3, u4, u5) = (
                scratch, scratch + width, scratch + 2 * width, scratch + 3 * width, scratch + 4 * width,
                scratch + 5 * width
            )
            let plane = output + co * oh * ow + (4 * ty) * ow + x0
            for r in 0..<validRows {
                let dst = plane + r * ow
                switch r {
                case 0: for q in 0..<validWidth { dst[q] = u0[q] + u1[q] + u2[q] + u3[q] + u4[q] + b }
                case 1: for q in 0..<validWidth { dst[q] = u1[q] - u2[q] + 2 * (u3[q] - u4[q]) + b }
                case 2: for q in 0..<validWidth { dst[q] = u1[q] + u2[q] + 4 * (u3[q] + u4[q]) + b }
                default: for q in 0..<validWidth { dst[q] = u1[q] - u2[q] + 8 * (u3[q] - u4[q]) + u5[q] + b }
                }
            }
        }
    }
}
