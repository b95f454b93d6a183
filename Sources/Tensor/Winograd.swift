import Foundation

// Winograd F(4×4, 3×3): the filter, input and output transforms with the forward and the weight
// gradient that share them; they are one piece of arithmetic, kept in one file.

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
    let bias: Tensor?
    private let filters: Filters

    /// Where U[ξ][co][ci] = (G g Gᵀ)[ξ] for filter g = W[co, ci] comes from.
    private enum Filters {
        /// Transformed once, at construction: inference runs a layer many times between weight changes.
        case kept(Tensor)
        /// Transformed at each call into a scratch shared by a network's layers: in training the weights change
        /// after every step, and U is 4× the weight, so keeping every layer's (and a flipped set for the data
        /// gradients) would take more memory than the rest of an iteration. With `flipped`, the filter of
        /// (co, ci) is `weight`[ci, co] rotated by 180°: the data gradient of `weight`'s convolution.
        case perCall(weight: Tensor, flipped: Bool, scratch: WinogradScratch)
    }

    /// Transforms `weight` [Cout, Cin, 3, 3] once, on `compute`'s threads, and keeps the result.
    init(weight: Tensor, bias: Tensor?, compute: Compute) {
        outChannels = weight.shape[0]
        inChannels = weight.shape[1]
        self.bias = bias
        // U is written whole: skip zero-filling 4× the filters' size.
        let u = Tensor(uninitializedShape: [36, outChannels, inChannels])
        Self.transform(
            weight.data, outChannels: outChannels, inChannels: inChannels, flipped: false, into: u.data,
            compute: compute)
        filters = .kept(u)
    }

    /// Transforms the filters at each call, into `scratch`. With `flipped`, runs the data gradient of the
    /// convolution by `weight` [Cin, Cout, 3, 3] (its output channels are this one's inputs): the full
    /// correlation with W'[co, ci] = W[ci, co] rotated by 180°, without a copy of W'.
    init(weight: Tensor, bias: Tensor?, flipped: Bool, scratch: WinogradScratch) {
        outChannels = weight.shape[flipped ? 1 : 0]
        inChannels = weight.shape[flipped ? 0 : 1]
        self.bias = bias
        filters = .perCall(weight: weight, flipped: flipped, scratch: scratch)
    }

    /// Runs `body` with U [36, Cout, Cin] for the current weight.
    private func withFilters(compute: Compute, _ body: (UnsafePointer<Float>) -> Void) {
        switch filters {
        case .kept(let u):
            body(u.data)
        case .perCall(let weight, let flipped, let scratch):
            scratch.with(count: 36 * outChannels * inChannels) { u in
                Self.transform(
                    weight.data, outChannels: outChannels, inChannels: inChannels, flipped: flipped, into: u,
                    compute: compute)
                body(u)
            }
        }
    }

    /// U [36, Cout, Cin] = G g Gᵀ for every filter g: of `weight` [Cout, Cin, 3, 3], or with `flipped` of
    /// `weight` [Cin, Cout, 3, 3] read as W'[co, ci, t] = W[ci, co, 8 − t].
    private static func transform(
        _ weight: UnsafePointer<Float>, outChannels: Int, inChannels cin: Int, flipped: Bool,
        into out: UnsafeMutablePointer<Float>, compute: Compute
    ) {
        let pairs = outChannels * cin
        // Where tap t of filter (co, ci) sits: co·outStep + ci·inStep + t (or 8 − t when flipped).
        let (outStep, inStep) = flipped ? (9, 9 * outChannels) : (9 * cin, 9)
        // U = G g Gᵀ for 8 input channels at a time (one per SIMD lane), output channels in parallel.
        compute.forEach(outChannels) { co in
            var ci = 0
            while ci < cin {
                let lanes = min(8, cin - ci)
                let f = weight + co * outStep + ci * inStep
                // w_k: tap k of the lanes' filters, one SIMD per tap.
                @inline(__always) func tap(_ k: Int) -> SIMD8<Float> {
                    let t = flipped ? 8 - k : k
                    if lanes == 8 {
                        return SIMD8(
                            f[t], f[inStep + t], f[2 * inStep + t], f[3 * inStep + t], f[4 * inStep + t],
                            f[5 * inStep + t], f[6 * inStep + t], f[7 * inStep + t])
                    }
                    var w = SIMD8<Float>()
                    for l in 0..<lanes { w[l] = f[l * inStep + t] }
                    return w
                }
                let (w0, w1, w2, w3, w4, w5, w6, w7, w8) = (
                    tap(0), tap(1), tap(2), tap(3), tap(4), tap(5), tap(6), tap(7), tap(8)
                )
                // t = G·w (6×3), column by column ...
                let t0 = Self.filterTransform(w0, w3, w6)
                let t1 = Self.filterTransform(w1, w4, w7)
                let t2 = Self.filterTransform(w2, w5, w8)
                // ... then row i of U = G·(row i of t).
                let base = out + co * cin + ci
                func emit(_ i: Int, _ r: Six) {
                    let row = UnsafeMutableRawPointer(base + i * 6 * pairs)
                    let step = pairs * MemoryLayout<Float>.stride
                    if lanes == 8 {
                        row.storeBytes(of: r.0, as: SIMD8<Float>.self)
                        (row + step).storeBytes(of: r.1, as: SIMD8<Float>.self)
                        (row + 2 * step).storeBytes(of: r.2, as: SIMD8<Float>.self)
                        (row + 3 * step).storeBytes(of: r.3, as: SIMD8<Float>.self)
                        (row + 4 * step).storeBytes(of: r.4, as: SIMD8<Float>.self)
                        (row + 5 * step).storeBytes(of: r.5, as: SIMD8<Float>.self)
                        return
                    }
                    let dst = row.assumingMemoryBound(to: Float.self)
                    for l in 0..<lanes {
                        dst[l] = r.0[l]
                        dst[pairs + l] = r.1[l]
                        dst[2 * pairs + l] = r.2[l]
                        dst[3 * pairs + l] = r.3[l]
                        dst[4 * pairs + l] = r.4[l]
                        dst[5 * pairs + l] = r.5[l]
                    }
                }
                emit(0, Self.filterTransform(t0.0, t1.0, t2.0))
                emit(1, Self.filterTransform(t0.1, t1.1, t2.1))
                emit(2, Self.filterTransform(t0.2, t1.2, t2.2))
                emit(3, Self.filterTransform(t0.3, t1.3, t2.3))
                emit(4, Self.filterTransform(t0.4, t1.4, t2.4))
                emit(5, Self.filterTransform(t0.5, t1.5, t2.5))
                ci += lanes
            }
        }
    }

    /// G·(a, b, c) for Winograd's G of F(4×4, 3×3):
    /// (a/4, −(a+b+c)/6, −(a−b+c)/6, a/24 + b/12 + c/6, a/24 − b/12 + c/6, c).
    @inline(__always)
    private static func filterTransform(_ a: SIMD8<Float>, _ b: SIMD8<Float>, _ c: SIMD8<Float>) -> Six {
        let ac = a + c
        return (
            a * 0.25, (ac + b) * (-1.0 / 6), (ac - b) * (-1.0 / 6),
            a * (1.0 / 24) + b * (1.0 / 12) + c * (1.0 / 6), a * (1.0 / 24) - b * (1.0 / 12) + c * (1.0 / 6), c
        )
    }

    private typealias Six = (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>)

    /// Tiles per block: wide enough that the 36 GEMMs run near OpenBLAS' peak and
    /// the filters U (36·Cout·Cin floats, 9 MB at 256 channels) are read once per
    /// many tiles; the block's transformed inputs and products then sit in L2/L3.
    var tilesPerBlock: Int { Self.tilesPerBlock(inChannels: inChannels, outChannels: outChannels) }

    static func tilesPerBlock(inChannels: Int, outChannels: Int) -> Int {
        let perTile = 36 * (inChannels + outChannels) * 4
        return max(8, min(256, (12 << 20) / perTile)) / 8 * 8
    }

    /// Tiles per block for `tiles` tiles: as many blocks as fit the cache budget, rounded up to a multiple
    /// of the threads so that every worker gets the same number of equal blocks.
    static func blockSize(tiles: Int, tilesPerBlock: Int, threads: Int) -> Int {
        var blocks = (tiles + tilesPerBlock - 1) / tilesPerBlock
        blocks = (blocks + threads - 1) / threads * threads
        return (tiles + blocks - 1) / blocks
    }

    /// `rowMap`/`colMap` are the padded-coordinate maps (length Ho+2, Wo+2).
    func forward(
        _ input: Planes, rowMap: [Int32], colMap: [Int32], into output: UnsafeMutablePointer<Float>, compute: Compute
    ) {
        let compute = compute.now()
        let grid = TileGrid(rowMap: rowMap, colMap: colMap)
        let (oh, ow, tiles) = (grid.outHeight, grid.outWidth, grid.tiles)
        let block = Self.blockSize(tiles: tiles, tilesPerBlock: tilesPerBlock, threads: compute.threads)
        let blocks = (tiles + block - 1) / block
        let cin = inChannels
        let cout = outChannels
        withFilters(compute: compute) { u in
            if tiles <= tilesPerBlock {
                forwardByPosition(input, grid: grid, filters: u, into: output, compute: compute)
                return
            }
            compute.forSlices(blocks) { _, range in
                let v = UnsafeMutablePointer<Float>.allocate(capacity: 36 * cin * block)
                let m = UnsafeMutablePointer<Float>.allocate(capacity: 36 * cout * block)
                defer {
                    v.deallocate()
                    m.deallocate()
                }
                grid.forBlocks(range, of: block) { tiles, _, rmap, cmap, rows in
                    grid.forSegments(of: tiles) { ty, tx, column in
                        Self.inputTransform(
                            input, rmap: rmap, cmap: cmap, ty: ty, tx: tx, column: column, ld: block, into: v,
                            scratch: rows)
                    }
                    for xi in 0..<36 {
                        BLAS.sgemm(
                            m: cout, n: tiles.count, k: cin, a: u + xi * cout * cin, lda: cin,
                            b: v + xi * cin * block, ldb: block, c: m + xi * cout * block, ldc: block)
                    }
                    grid.forSegments(of: tiles) { ty, tx, column in
                        outputTransform(
                            m, ty: ty, tx: tx, column: column, ld: block, oh: oh, ow: ow, into: output,
                            scratch: rows.0)
                    }
                }
            }
        }
    }

    /// The forward when every tile fits one block (a small image's residual blocks: 64 tiles at 32×32): the
    /// tiles' transforms are shared out by tile row, and the 36 GEMMs by position ξ, each as wide as the image,
    /// so that each worker reads and packs only its share of U instead of all of it.
    private func forwardByPosition(
        _ input: Planes, grid: TileGrid, filters u: UnsafePointer<Float>, into output: UnsafeMutablePointer<Float>,
        compute: Compute
    ) {
        let (tiles, tilesX, cin, cout) = (grid.tiles, grid.tilesX, inChannels, outChannels)
        let v = UnsafeMutablePointer<Float>.allocate(capacity: 36 * cin * tiles)
        let m = UnsafeMutablePointer<Float>.allocate(capacity: 36 * cout * tiles)
        defer {
            v.deallocate()
            m.deallocate()
        }
        grid.forTileRows(compute: compute) { ty, rmap, cmap, scratch in
            Self.inputTransform(
                input, rmap: rmap, cmap: cmap, ty: ty, tx: 0..<tilesX, column: ty * tilesX, ld: tiles, into: v,
                scratch: scratch)
        }
        compute.forSlices(36) { _, positions in
            for xi in positions {
                BLAS.sgemm(
                    m: cout, n: tiles, k: cin, a: u + xi * cout * cin, lda: cin, b: v + xi * cin * tiles, ldb: tiles,
                    c: m + xi * cout * tiles, ldc: tiles)
            }
        }
        grid.forTileRows(compute: compute) { ty, _, _, scratch in
            outputTransform(
                m, ty: ty, tx: 0..<tilesX, column: ty * tilesX, ld: tiles, oh: grid.outHeight, ow: grid.outWidth,
                into: output, scratch: scratch.0)
        }
    }

    /// V[ξ][ci][column + k] = (Bᵀ d B)[ξ] for the 6×6 input tile d of tile (ty, tx.lowerBound + k),
    /// every channel ci. Bᵀ runs down the six padded rows of the tile row at once
    /// (whole rows, so it vectorises); B then runs across each tile.
    private static func inputTransform(
        _ input: Planes, rmap: UnsafeBufferPointer<Int32>, cmap: UnsafeBufferPointer<Int32>,
        ty: Int, tx: Range<Int>, column: Int, ld: Int, into v: UnsafeMutablePointer<Float>,
        scratch: (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>)
    ) {
        let inChannels = input.channels
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

    // MARK: Weight gradient

    /// dW [Cout, Cin, 3, 3] += Σ_tiles Gᵀ [(A dy Aᵀ) ⊙ (Bᵀ d B)] G: the forward's algorithm transposed
    /// (F(3×3, 4×4): from L = Σ dY ⊙ Aᵀ[(G g Gᵀ) ⊙ V]A, ∂L/∂g = Gᵀ[(A dY Aᵀ) ⊙ V]G). The sum over tiles runs
    /// in the transformed domain as 36 GEMMs per block, Ŵ[ξ] [Cout, Cin] += Ŷ[ξ] [Cout, n] · V[ξ]ᵀ [n, Cin],
    /// a quarter of im2col's multiplications; each worker sums into its own Ŵ, added in worker order as Gᵀ·G
    /// reads them.
    /// `rowMap`/`colMap` are the forward's padded maps, dY [Cout, Ho, Wo].
    static func accumulateWeightGradient(
        _ input: Planes, rowMap: [Int32], colMap: [Int32], outputGradient dY: UnsafePointer<Float>,
        outChannels cout: Int, into dW: UnsafeMutablePointer<Float>, compute: Compute
    ) {
        let compute = compute.now()
        let cin = input.channels
        let grid = TileGrid(rowMap: rowMap, colMap: colMap)
        let (oh, ow, tilesX, tiles) = (grid.outHeight, grid.outWidth, grid.tilesX, grid.tiles)
        let block = blockSize(
            tiles: tiles, tilesPerBlock: tilesPerBlock(inChannels: cin, outChannels: cout), threads: compute.threads)
        let blocks = (tiles + block - 1) / block
        let size = 36 * cout * cin
        // When every tile fits one block, the GEMMs are shared out by position ξ and sum over every tile: one Ŵ.
        let byPosition = tiles <= tilesPerBlock(inChannels: cin, outChannels: cout)
        let workers = byPosition ? 1 : min(compute.threads, blocks)
        // Each worker's first block writes its Ŵ (every worker has one): no zero-filling.
        let partials = UnsafeMutablePointer<Float>.allocate(capacity: workers * size)
        defer { partials.deallocate() }
        if byPosition {
            let v = UnsafeMutablePointer<Float>.allocate(capacity: 36 * cin * tiles)
            let yhat = UnsafeMutablePointer<Float>.allocate(capacity: 36 * cout * tiles)
            defer {
                v.deallocate()
                yhat.deallocate()
            }
            grid.forTileRows(compute: compute) { ty, rmap, cmap, scratch in
                inputTransform(
                    input, rmap: rmap, cmap: cmap, ty: ty, tx: 0..<tilesX, column: ty * tilesX, ld: tiles, into: v,
                    scratch: scratch)
                gradientTransform(
                    dY, channels: cout, oh: oh, ow: ow, ty: ty, tx: 0..<tilesX, column: ty * tilesX, ld: tiles,
                    into: yhat, scratch: scratch)
            }
            compute.forSlices(36) { _, positions in
                for xi in positions {
                    BLAS.sgemm(
                        m: cout, n: cin, k: tiles, a: yhat + xi * cout * tiles, lda: tiles, b: v + xi * cin * tiles,
                        ldb: tiles, transposeB: true, c: partials + xi * cout * cin, ldc: cin)
                }
            }
        }
        compute.forSlices(byPosition ? 0 : blocks) { worker, range in
            let v = UnsafeMutablePointer<Float>.allocate(capacity: 36 * cin * block)
            let yhat = UnsafeMutablePointer<Float>.allocate(capacity: 36 * cout * block)
            defer {
                v.deallocate()
                yhat.deallocate()
            }
            let acc = partials + worker * size
            grid.forBlocks(range, of: block) { tiles, first, rmap, cmap, rows in
                grid.forSegments(of: tiles) { ty, tx, column in
                    inputTransform(
                        input, rmap: rmap, cmap: cmap, ty: ty, tx: tx, column: column, ld: block, into: v,
                        scratch: rows)
                    gradientTransform(
                        dY, channels: cout, oh: oh, ow: ow, ty: ty, tx: tx, column: column, ld: block, into: yhat,
                        scratch: rows)
                }
                for xi in 0..<36 {
                    BLAS.sgemm(
                        m: cout, n: cin, k: tiles.count, a: yhat + xi * cout * block, lda: block,
                        b: v + xi * cin * block, ldb: block, transposeB: true, c: acc + xi * cout * cin, ldc: cin,
                        accumulate: !first)
                }
            }
        }
        // dW[co, ci] += Gᵀ Ŵ G with Ŵ = Σ_worker Ŵ_worker (in worker order): Gᵀ down the six rows of ξ (6 → 3),
        // then across (6 → 3), every ci at once.
        let pairs = cout * cin
        compute.forEach(cout) { co in
            let t = UnsafeMutablePointer<Float>.allocate(capacity: 18 * cin)
            defer { t.deallocate() }
            for j in 0..<6 {
                let z = (0..<6).map { i in UnsafePointer(partials + (6 * i + j) * pairs + co * cin) }
                @inline(__always) func sum(_ i: Int, _ ci: Int) -> Float {
                    var s = z[i][ci]
                    for k in 1..<workers { s += z[i][k * size + ci] }
                    return s
                }
                let (t0, t1, t2) = (t + j * cin, t + (6 + j) * cin, t + (12 + j) * cin)
                for ci in 0..<cin {
                    (t0[ci], t1[ci], t2[ci]) = Self.gradientOfFilterTransform(
                        sum(0, ci), sum(1, ci), sum(2, ci), sum(3, ci), sum(4, ci), sum(5, ci))
                }
            }
            let dst = dW + co * cin * 9
            for r in 0..<3 {
                let row = t + 6 * r * cin
                for ci in 0..<cin {
                    let (a, b, c) = Self.gradientOfFilterTransform(
                        row[ci], row[cin + ci], row[2 * cin + ci], row[3 * cin + ci], row[4 * cin + ci],
                        row[5 * cin + ci])
                    dst[ci * 9 + 3 * r] += a
                    dst[ci * 9 + 3 * r + 1] += b
                    dst[ci * 9 + 3 * r + 2] += c
                }
            }
        }
    }

    /// Gᵀ·z: the adjoint of `filterTransform`, six transformed values back to three taps.
    @inline(__always)
    private static func gradientOfFilterTransform(
        _ z0: Float, _ z1: Float, _ z2: Float, _ z3: Float, _ z4: Float, _ z5: Float
    ) -> (Float, Float, Float) {
        (
            z0 * 0.25 - (z1 + z2) * (1.0 / 6) + (z3 + z4) * (1.0 / 24),
            (z2 - z1) * (1.0 / 6) + (z3 - z4) * (1.0 / 12),
            (z3 + z4 - z1 - z2) * (1.0 / 6) + z5
        )
    }

    /// Ŷ[ξ][co][column + k] = (A dy Aᵀ)[ξ] for the 4×4 tile dy of dY at tile (ty, tx.lowerBound + k) (zero
    /// past the output's edge). A = (Aᵀ)ᵀ, the adjoint of `outputTransform`'s Aᵀ: for a column y of four,
    /// A y = (y0, y0+y1+y2+y3, y0−y1+y2−y3, y0+2y1+4y2+8y3, y0−2y1+4y2−8y3, y3). Down the rows first (whole
    /// rows at once), then across each tile.
    private static func gradientTransform(
        _ dY: UnsafePointer<Float>, channels: Int, oh: Int, ow: Int, ty: Int, tx: Range<Int>, column: Int, ld: Int,
        into yhat: UnsafeMutablePointer<Float>, scratch: (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>)
    ) {
        let stride = channels * ld
        let width = 4 * tx.count
        let x0 = 4 * tx.lowerBound
        let validWidth = min(width, ow - x0)
        let validRows = min(4, oh - 4 * ty)
        let (d, a) = scratch
        for co in 0..<channels {
            // d: the four rows of the tile row, zero past the edges.
            for r in 0..<4 {
                let dst = d + r * width
                if r < validRows {
                    dst.update(from: dY + (co * oh + 4 * ty + r) * ow + x0, count: validWidth)
                    (dst + validWidth).update(repeating: 0, count: width - validWidth)
                } else {
                    dst.update(repeating: 0, count: width)
                }
            }
            let (d0, d1, d2, d3) = (d, d + width, d + 2 * width, d + 3 * width)
            for q in 0..<width {
                a[q] = d0[q]
                a[width + q] = d0[q] + d1[q] + d2[q] + d3[q]
                a[2 * width + q] = d0[q] - d1[q] + d2[q] - d3[q]
                a[3 * width + q] = d0[q] + 2 * d1[q] + 4 * d2[q] + 8 * d3[q]
                a[4 * width + q] = d0[q] - 2 * d1[q] + 4 * d2[q] - 8 * d3[q]
                a[5 * width + q] = d3[q]
            }
            for i in 0..<6 {
                let x = a + i * width
                let out = yhat + (i * 6) * stride + co * ld + column
                for k in 0..<tx.count {
                    let y0 = x[4 * k]
                    let y1 = x[4 * k + 1]
                    let y2 = x[4 * k + 2]
                    let y3 = x[4 * k + 3]
                    out[k] = y0
                    out[stride + k] = y0 + y1 + y2 + y3
                    out[2 * stride + k] = y0 - y1 + y2 - y3
                    out[3 * stride + k] = y0 + 2 * y1 + 4 * y2 + 8 * y3
                    out[4 * stride + k] = y0 - 2 * y1 + 4 * y2 - 8 * y3
                    out[5 * stride + k] = y3
                }
            }
        }
    }
}

/// The 4×4 output tiles of a Winograd pass over an Ho×Wo output, and the 6×6 input tiles they
/// read: the padded maps extended with zeros so that every tile is in range, and how many floats a
/// worker's rows of input tiles need. The forward and the weight gradient walk the same grid.
struct TileGrid {
    let outHeight: Int
    let outWidth: Int
    let tilesY: Int
    let tilesX: Int
    let rowMap: [Int32]
    let colMap: [Int32]

    /// `rowMap`/`colMap` are the padded-coordinate maps (length Ho+2, Wo+2).
    init(rowMap: [Int32], colMap: [Int32]) {
        outHeight = rowMap.count - 2
        outWidth = colMap.count - 2
        tilesY = (outHeight + 3) / 4
        tilesX = (outWidth + 3) / 4
        self.rowMap = rowMap + [Int32](repeating: -1, count: tilesY * 4 + 2 - rowMap.count)
        self.colMap = colMap + [Int32](repeating: -1, count: tilesX * 4 + 2 - colMap.count)
    }

    var tiles: Int { tilesY * tilesX }
    var rowScratch: Int { 6 * (4 * tilesX + 2) }

    /// A block of tiles is a run in row-major order: runs `body(ty, tx, column)` for each of its
    /// tile-row segments, tiles (ty, tx) at columns column ..< column + tx.count of the block.
    func forSegments(of block: Range<Int>, _ body: (_ ty: Int, _ tx: Range<Int>, _ column: Int) -> Void) {
        var t = block.lowerBound
        while t < block.upperBound {
            let ty = t / tilesX
            let tx0 = t - ty * tilesX
            let tx1 = min(tilesX, tx0 + (block.upperBound - t))
            body(ty, tx0..<tx1, t - block.lowerBound)
            t += tx1 - tx0
        }
    }

    /// Runs `body(ty, rowMap, colMap, scratch)` for every tile row, the rows shared out among the workers,
    /// each with two row scratch buffers of its own.
    func forTileRows(
        compute: Compute,
        _ body: (
            Int, UnsafeBufferPointer<Int32>, UnsafeBufferPointer<Int32>,
            (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>)
        ) -> Void
    ) {
        compute.forSlices(tilesY) { _, rows in
            withWorkerScratch { rmap, cmap, scratch in
                for ty in rows { body(ty, rmap, cmap, scratch) }
            }
        }
    }

    /// Runs `body(tiles, first, rowMap, colMap, scratch)` for the tile blocks `blocks`, `block` tiles each
    /// (the last may be shorter), on one worker with its own row buffers; `first` for the range's first block.
    func forBlocks(
        _ blocks: Range<Int>, of block: Int,
        _ body: (
            Range<Int>, Bool, UnsafeBufferPointer<Int32>, UnsafeBufferPointer<Int32>,
            (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>)
        ) -> Void
    ) {
        withWorkerScratch { rmap, cmap, scratch in
            for b in blocks {
                let t0 = b * block
                body(t0..<min(t0 + block, tiles), b == blocks.lowerBound, rmap, cmap, scratch)
            }
        }
    }

    /// Runs `body(rowMap, colMap, scratch)` with one worker's two row buffers of input tiles.
    func withWorkerScratch(
        _ body: (
            UnsafeBufferPointer<Int32>, UnsafeBufferPointer<Int32>,
            (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>)
        ) -> Void
    ) {
        let rowsA = UnsafeMutablePointer<Float>.allocate(capacity: rowScratch)
        let rowsB = UnsafeMutablePointer<Float>.allocate(capacity: rowScratch)
        defer {
            rowsA.deallocate()
            rowsB.deallocate()
        }
        rowMap.withUnsafeBufferPointer { rmap in
            colMap.withUnsafeBufferPointer { cmap in body(rmap, cmap, (rowsA, rowsB)) }
        }
    }
}

/// One buffer for the transformed filters of the Winograd layers that transform theirs at each call
/// (`Conv2D(winogradScratch:)`): a network's layers run one at a time, so one layer's U at a time is
/// enough. A lock makes a second caller wait rather than overwrite the filters being read.
public final class WinogradScratch: @unchecked Sendable {
    private let lock = NSLock()
    private var buffer: UnsafeMutablePointer<Float>?
    private var capacity = 0

    public init() {}

    /// Runs `body` with `count` floats of the buffer, grown if need be, held for the call.
    func with(count: Int, _ body: (UnsafeMutablePointer<Float>) -> Void) {
        lock.lock()
        defer { lock.unlock() }
        if count > capacity {
            buffer?.deallocate()
            buffer = .allocate(capacity: count)
            capacity = count
        }
        body(buffer!)
    }

    deinit { buffer?.deallocate() }
}
