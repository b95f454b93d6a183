import CKernels
import Foundation

// Winograd F(4×4, 3×3): the forward and the weight gradient, which share the tile geometry, the
// blocking and the transforms. The transforms' loops are in C (Sources/CKernels/winograd.c), compiled
// once per instruction set, so that an AVX2 or AVX-512 CPU runs them with its own vectors; this file
// decides what runs where and on which thread.

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
    /// `weight` [Cin, Cout, 3, 3] read as W'[co, ci, t] = W[ci, co, 8 − t]. Output channels in parallel.
    private static func transform(
        _ weight: UnsafePointer<Float>, outChannels: Int, inChannels cin: Int, flipped: Bool,
        into out: UnsafeMutablePointer<Float>, compute: Compute
    ) {
        // Where tap t of filter (co, ci) sits: co·outStep + ci·inStep + t (or 8 − t when flipped).
        let (outStep, inStep) = flipped ? (9, 9 * outChannels) : (9 * cin, 9)
        compute.forSlices(outChannels) { _, channels in
            withScratch(ck_winograd_filter_scratch(Int32(cin))) { scratch in
                for co in channels {
                    transforms.filter(
                        weight + co * outStep, inStep, flipped ? 1 : 0, Int32(cin), outChannels * cin, out + co * cin,
                        scratch)
                }
            }
        }
    }

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
                            scratch: rows)
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
                into: output, scratch: scratch)
        }
    }

    /// V[ξ][ci][column + k] = (Bᵀ d B)[ξ] for the 6×6 input tile d of tile (ty, tx.lowerBound + k),
    /// every channel ci.
    private static func inputTransform(
        _ input: Planes, rmap: UnsafeBufferPointer<Int32>, cmap: UnsafeBufferPointer<Int32>,
        ty: Int, tx: Range<Int>, column: Int, ld: Int, into v: UnsafeMutablePointer<Float>,
        scratch: UnsafeMutablePointer<Float>
    ) {
        transforms.input(
            input.source, Int32(input.channels), input.channelStride, input.rowStride, rmap.baseAddress! + 4 * ty,
            cmap.baseAddress! + 4 * tx.lowerBound, Int32(tx.count), ld, v + column, scratch)
    }

    /// Y = Aᵀ M A + bias for the tiles (ty, tx), written where they lie inside the output.
    private func outputTransform(
        _ m: UnsafeMutablePointer<Float>, ty: Int, tx: Range<Int>, column: Int, ld: Int, oh: Int, ow: Int,
        into output: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>
    ) {
        let x0 = 4 * tx.lowerBound
        transforms.output(
            m + column, Int32(outChannels), ld, Int32(tx.count), bias.map { UnsafePointer($0.data) },
            output + 4 * ty * ow + x0, oh * ow, ow, Int32(min(4, oh - 4 * ty)), Int32(min(4 * tx.count, ow - x0)),
            scratch)
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
        // dW[co, ci] += Gᵀ Ŵ G with Ŵ = Σ_worker Ŵ_worker (in worker order), every ci at once.
        compute.forSlices(cout) { _, channels in
            withScratch(ck_winograd_filter_gradient_scratch(Int32(cin))) { scratch in
                for co in channels {
                    transforms.filter_gradient(
                        partials + co * cin, cout * cin, size, Int32(workers), Int32(cin), dW + co * cin * 9, scratch)
                }
            }
        }
    }

    /// Ŷ[ξ][co][column + k] = (A dy Aᵀ)[ξ] for the 4×4 tile dy of dY at tile (ty, tx.lowerBound + k) (zero
    /// past the output's edge): the adjoint of `outputTransform`'s Y = Aᵀ M A.
    private static func gradientTransform(
        _ dY: UnsafePointer<Float>, channels: Int, oh: Int, ow: Int, ty: Int, tx: Range<Int>, column: Int, ld: Int,
        into yhat: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>
    ) {
        let x0 = 4 * tx.lowerBound
        transforms.gradient(
            dY + 4 * ty * ow + x0, Int32(channels), oh * ow, ow, Int32(min(4, oh - 4 * ty)),
            Int32(min(4 * tx.count, ow - x0)), Int32(tx.count), ld, yhat + column, scratch)
    }
}

/// The transforms (Sources/CKernels) for the fastest instruction set this CPU has, or the one
/// `CYCLEGAND_KERNELS` names, chosen once: immutable after, so shared by every thread. A name that cannot be
/// honoured is said on standard error, once, rather than silently measuring the wrong kernels.
nonisolated(unsafe) let transforms: ck_winograd_kernels = {
    let chosen = ck_winograd_kernels_best().pointee
    let name = String(cString: chosen.name)
    if let wanted = ProcessInfo.processInfo.environment["CYCLEGAND_KERNELS"], !wanted.isEmpty, wanted != name {
        let why =
            ["avx512", "avx2", "baseline"].contains(wanted)
            ? "this CPU cannot run it" : "the sets are avx512, avx2 and baseline"
        FileHandle.standardError.write(
            Data("cyclegand: CYCLEGAND_KERNELS=\(wanted) ignored (\(why)); using \(name)\n".utf8))
    }
    return chosen
}()

extension Compute {
    /// The instruction set the Winograd transforms run with: "avx512", "avx2" or "baseline".
    public static var winogradKernels: String { String(cString: transforms.name) }
}

/// Runs `body` with `count` floats of scratch, freed after it: one per worker, outside its loop.
private func withScratch(_ count: Int, _ body: (UnsafeMutablePointer<Float>) -> Void) {
    let scratch = UnsafeMutablePointer<Float>.allocate(capacity: count)
    defer { scratch.deallocate() }
    body(scratch)
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
    /// Floats of scratch a worker needs for any transform of a tile row (the input transform needs the most).
    var rowScratch: Int {
        let n = Int32(tilesX)
        return max(ck_winograd_input_scratch(n), ck_winograd_output_scratch(n), ck_winograd_gradient_scratch(n))
    }

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
    /// each with a row scratch buffer of its own.
    func forTileRows(
        compute: Compute,
        _ body: (
            Int, UnsafeBufferPointer<Int32>, UnsafeBufferPointer<Int32>,
            UnsafeMutablePointer<Float>
        ) -> Void
    ) {
        compute.forSlices(tilesY) { _, rows in
            withWorkerScratch { rmap, cmap, scratch in
                for ty in rows { body(ty, rmap, cmap, scratch) }
            }
        }
    }

    /// Runs `body(tiles, first, rowMap, colMap, scratch)` for the tile blocks `blocks`, `block` tiles each
    /// (the last may be shorter), on one worker with its own row buffer; `first` for the range's first block.
    func forBlocks(
        _ blocks: Range<Int>, of block: Int,
        _ body: (
            Range<Int>, Bool, UnsafeBufferPointer<Int32>, UnsafeBufferPointer<Int32>,
            UnsafeMutablePointer<Float>
        ) -> Void
    ) {
        withWorkerScratch { rmap, cmap, scratch in
            for b in blocks {
                let t0 = b * block
                body(t0..<min(t0 + block, tiles), b == blocks.lowerBound, rmap, cmap, scratch)
            }
        }
    }

    /// Runs `body(rowMap, colMap, scratch)` with one worker's row buffer for the transforms.
    func withWorkerScratch(
        _ body: (
            UnsafeBufferPointer<Int32>, UnsafeBufferPointer<Int32>,
            UnsafeMutablePointer<Float>
        ) -> Void
    ) {
        withScratch(rowScratch) { rows in
            rowMap.withUnsafeBufferPointer { rmap in
                colMap.withUnsafeBufferPointer { cmap in body(rmap, cmap, rows) }
            }
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
