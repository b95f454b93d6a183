import CycleGAN
import Foundation
import Tensor

/// Runs a ResNet generator over an image of any size in bounded memory and
/// gives the pixels of the whole-image pass.
///
/// Instance norm needs each channel's mean and variance over the whole image
/// at every layer, so tiles run alone come out wrong (seams, shifted colours).
/// Instead the network runs layer by layer over bands of rows: each pass
/// streams one activation through its convolution and sums its channels'
/// moments (in Double); the next pass applies that finished norm to the rows it
/// reads. The two full-resolution activations are recomputed when a later pass
/// needs them (their convolutions are cheap, their stores would be the largest);
/// the half- and quarter-resolution ones live in `ActivationStore`s.
///
///   pass 1, 2   input → conv₁ (moments) → conv₂ (moments, stored as S₂)
///   pass 3      S₂ → conv₃ (moments, stored as R)
///   block b     R → conv → T₁ → conv → T₂;  R ← R + norm(T₂)
///   up          R → convT₁ (moments, stored as S₄) → convT₂ (moments) → conv₇ → tanh → rows out
struct StreamedGenerator {
    let generator: ResnetGenerator
    let compute: Compute
    /// Output rows (at full resolution) per band.
    let bandRows: Int
    /// Keep the stores in memory rather than in temporary files.
    let storesInMemory: Bool
    let temporaryDirectory: String
    /// Asked between bands; when it says yes the run throws `cancelled` (and its stores go).
    var isCancelled: @Sendable () -> Bool = { false }
    /// Band buffers, recycled within a pass and released after it.
    private let pool = BandPool()

    /// Rows of input come from `read(y, count, into)` ([3][count][width] planes) and
    /// rows of output go to `write(y, count, from)` in order.
    func run(
        height: Int, width: Int,
        read: @escaping (Int, Int, UnsafeMutablePointer<Float>) throws -> Void,
        write: (Int, Int, UnsafePointer<Float>) throws -> Void
    ) throws {
        let layers = generator.layers
        let (wh, ww) = ResnetGenerator.workingSize(height: height, width: width)
        var norms = layers.norms.makeIterator()
        func finish(_ m: ChannelMoments, _ activation: Activation) -> PendingNorm {
            let (g, b) = norms.next()!
            return PendingNorm(norm: m.normalization(eps: 1e-5, gamma: g, beta: b), activation: activation)
        }

        func store(_ like: RowStage) throws -> ActivationStore {
            try ActivationStore(
                channels: like.channels, height: like.height, width: like.width, inMemory: storesInMemory,
                directory: temporaryDirectory, pool: pool, compute: compute)
        }
        let halfRows = max(1, bandRows / 2)
        let quarterRows = max(1, bandRows / 4)

        // Down: conv₁ is recomputed from the input for pass 2; conv₂ is stored for pass 3.
        let input = PaddedInput(sourceHeight: height, sourceWidth: width, height: wh, width: ww, pool: pool, read: read)
        let c1 = ConvStage(input, pending: nil, conv: layers.first, padding: .reflect(3), compute: compute, pool: pool)
        let n1 = finish(try moments(of: c1, bandRows: bandRows), .relu)
        let r: ActivationStore
        do {
            let c2 = ConvStage(c1, pending: n1, conv: layers.down[0], padding: .zero(1), compute: compute, pool: pool)
            let s2 = try store(c2)
            let n2 = finish(try moments(of: c2, bandRows: halfRows, storingIn: s2), .relu)
            let c3 = ConvStage(s2, pending: n2, conv: layers.down[1], padding: .zero(1), compute: compute, pool: pool)
            r = try store(c3)
            let n3 = finish(try moments(of: c3, bandRows: quarterRows, storingIn: r), .relu)
            try update(r, bandRows: quarterRows) { band in band.normalize(n3.norm, n3.activation, compute: compute) }
        }

        // Residual blocks at quarter resolution: R ← R + norm(conv(relu(norm(conv(R))))).
        do {
            let t1 = try store(r)
            let t2 = try store(r)
            for (conv1, conv2) in layers.blocks {
                let a = ConvStage(r, pending: nil, conv: conv1, padding: .reflect(1), compute: compute, pool: pool)
                let na = finish(try moments(of: a, bandRows: quarterRows, storingIn: t1), .relu)
                let b = ConvStage(t1, pending: na, conv: conv2, padding: .reflect(1), compute: compute, pool: pool)
                let nb = finish(try moments(of: b, bandRows: quarterRows, storingIn: t2), .none)
                try update(r, bandRows: quarterRows) { band in
                    let residual = try t2.rows(band.rows)
                    residual.normalize(nb.norm, nb.activation, compute: compute)
                    Elementwise.add(
                        band.data, residual.data, count: band.rows.count * band.channels * band.width, compute: compute)
                }
            }
        }

        // Up: convT₁ is stored; convT₂ is recomputed from it for the last pass.
        let u1 = TransposedConvStage(r, pending: nil, conv: layers.up[0], compute: compute, pool: pool)
        let s4 = try store(u1)
        let nu1 = finish(try moments(of: u1, bandRows: halfRows, storingIn: s4), .relu)
        let u2 = TransposedConvStage(s4, pending: nu1, conv: layers.up[1], compute: compute, pool: pool)
        let nu2 = finish(try moments(of: u2, bandRows: bandRows), .relu)
        let out = ConvStage(u2, pending: nu2, conv: layers.last, padding: .reflect(3), compute: compute, pool: pool)

        // The output, cropped back to the image.
        let rowsOut = UnsafeMutablePointer<Float>.allocate(capacity: 3 * bandRows * width)
        defer { rowsOut.deallocate() }
        var y = 0
        while y < height {
            try checkpoint()
            let n = min(bandRows, height - y)
            let band = try out.rows(y..<(y + n))
            Elementwise.tanh(band.data, count: 3 * n * ww, compute: compute)
            for c in 0..<3 {
                for i in 0..<n {
                    (rowsOut + (c * n + i) * width).update(
                        from: band.data + c * band.channelStride + i * ww, count: width)
                }
            }
            try write(y, n, rowsOut)
            y += n
        }
    }

    /// Streams `stage` band by band, summing its channels' moments (and storing it).
    private func moments(
        of stage: RowStage, bandRows: Int, storingIn store: ActivationStore? = nil
    ) throws -> ChannelMoments {
        var m = ChannelMoments(channels: stage.channels)
        var y = 0
        while y < stage.height {
            try checkpoint()
            let band = try stage.rows(y..<min(stage.height, y + bandRows))
            band.accumulate(into: &m, compute: compute)
            try store?.write(band)
            y = band.rows.upperBound
        }
        pool.drain()
        return m
    }

    /// Rewrites a store band by band.
    private func update(_ store: ActivationStore, bandRows: Int, _ body: (Band) throws -> Void) throws {
        var y = 0
        while y < store.height {
            try checkpoint()
            let band = try store.rows(y..<min(store.height, y + bandRows))
            try body(band)
            try store.overwrite(band)
            y = band.rows.upperBound
        }
        pool.drain()
    }

    private func checkpoint() throws {
        if isCancelled() {
            throw ImagingError(.cancelled, path: temporaryDirectory, reason: "cancelled on request")
        }
    }

    /// Bytes the streamed path holds at once for bands of `bandRows` output rows
    /// of a `width`-wide image. Per output row, the longest chain of bands is the
    /// last pass's: convT₂'s output (ngf channels, full width), convT₁'s (2·ngf,
    /// half width, half the rows) and R's (4·ngf, quarter width, a quarter of the
    /// rows), 7/4·ngf floats per pixel of the row; the first passes need 3/2·ngf.
    /// Kernel halos add about a dozen rows; each worker has up to 16 MB of scratch.
    static func estimatedBytes(
        architecture: GeneratorArchitecture, height: Int, width: Int, bandRows: Int, storesInMemory: Bool, threads: Int
    ) -> Int {
        let perRow = (architecture.ngf * 7 / 4 + 6) * (width + 8) * 4
        var bytes = perRow * (bandRows + 12) + threads * (16 << 20)
        if storesInMemory {
            let (wh, ww) = ResnetGenerator.workingSize(height: height, width: width)
            bytes += 3 * (wh / 4) * (ww / 4) * architecture.ngf * 4 * 4
        }
        return bytes
    }
}
