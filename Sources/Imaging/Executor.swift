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
/// reads. The passes come from walking the generator's layer list (`walk`):
/// the two full-resolution activations are recomputed when a later pass needs
/// them (their convolutions are cheap, their stores would be the largest); the
/// half- and quarter-resolution ones live in `ActivationStore`s. For the
/// reference generator that gives:
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
    /// Hears the fraction done (0 < f ≤ 1) after each band, weighted by the multiply-adds of
    /// the band's pass (recomputed convolutions included), so that equal fractions take about
    /// equal time.
    var progress: (Double) -> Void = { _ in }
    /// Band buffers, recycled within a pass and released after it.
    private let pool = BandPool()
    private let meter = WorkMeter()

    /// Rows of input come from `read(y, count, into)` ([3][count][width] planes) and
    /// rows of output go to `write(y, count, from)` in order.
    func run(
        height: Int, width: Int,
        read: @escaping (Int, Int, UnsafeMutablePointer<Float>) throws -> Void,
        write: (Int, Int, UnsafePointer<Float>) throws -> Void
    ) throws {
        let (wh, ww) = ResnetGenerator.workingSize(height: height, width: width)
        let input = PaddedInput(sourceHeight: height, sourceWidth: width, height: wh, width: ww, pool: pool, read: read)
        var walk = Walk(source: input, fullHeight: wh)
        (meter.total, meter.done) = (plannedWork(generator.network.layers, Self.shape(of: input)), 0)
        try self.walk(generator.network.layers, &walk)

        // The output, cropped back to the image.
        guard let out = walk.output else { preconditionFailure("a generator ends in tanh") }
        let rowsOut = UnsafeMutablePointer<Float>.allocate(capacity: 3 * bandRows * width)
        defer { rowsOut.deallocate() }
        let outputWork = walk.chainWork + Self.values(of: out)
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
            done(outputWork * Double(n) / Double(height))
        }
    }

    /// Where the walk over the layers stands: the stage that produces the
    /// current activation and the norm its reader must still apply.
    private struct Walk {
        var source: RowStage
        var pending: PendingNorm? = nil
        /// The working height: activations at it are recomputed, smaller ones stored.
        let fullHeight: Int
        /// The last convolution, whose rows `run` streams out through tanh.
        var output: RowStage? = nil
        /// Multiply-adds of one pass over `source`: the convolutions its reader recomputes
        /// (those since the last store).
        var chainWork = 0.0

        init(source: RowStage, fullHeight: Int) {
            self.source = source
            self.fullHeight = fullHeight
        }
    }

    /// Walks the generator's layers, one pass per norm:
    /// - a convolution becomes a stage over the current one (which applies the pending norm to what it reads);
    /// - a norm streams its stage once to sum the moments. Full-resolution activations (the largest, with cheap
    ///   convolutions) are recomputed by whoever reads them; smaller ones are stored during that pass;
    /// - a residual block materialises its input R (norm applied), walks its inner layers and adds their
    ///   normalised result into R band by band;
    /// - tanh marks the output.
    private func walk(_ layers: [Layer], _ w: inout Walk) throws {
        var i = 0
        while i < layers.count {
            switch layers[i] {
            case .conv(let c):
                w.chainWork += generator.network.work(layers[i], Self.shape(of: w.source)).macs
                w.source = ConvStage(
                    w.source, pending: w.pending, conv: generator.network.conv(c), padding: c.padding, compute: compute,
                    pool: pool)
                w.pending = nil
            case .convTranspose(let c):
                w.chainWork += generator.network.work(layers[i], Self.shape(of: w.source)).macs
                w.source = TransposedConvStage(
                    w.source, pending: w.pending, conv: generator.network.convTranspose(c), compute: compute, pool: pool
                )
                w.pending = nil
            case .norm(let n):
                let activation = i + 1 < layers.count ? layers[i + 1].activation : nil
                if activation != nil { i += 1 }
                let stage = w.source
                let rows = bands(of: stage, fullHeight: w.fullHeight)
                let work = w.chainWork + Self.values(of: stage)
                let moments: ChannelMoments
                if stage.height < w.fullHeight {
                    let s = try store(like: stage)
                    moments = try self.moments(of: stage, bandRows: rows, work: work, storingIn: s)
                    w.source = s
                    w.chainWork = 0
                } else {
                    moments = try self.moments(of: stage, bandRows: rows, work: work)
                }
                let (g, b) = generator.network.affine(n)
                w.pending = PendingNorm(
                    norm: moments.normalization(eps: 1e-5, gamma: g, beta: b), activation: activation ?? .none)
            case .residual(let inner):
                let r = try materialize(&w)
                var block = Walk(source: r, fullHeight: w.fullHeight)
                try walk(inner, &block)
                guard let t = block.source as? ActivationStore, let nb = block.pending else {
                    preconditionFailure("a residual block ends in a norm at reduced resolution")
                }
                try update(r, bandRows: bands(of: r, fullHeight: w.fullHeight), work: Self.values(of: r)) { band in
                    let residual = try t.rows(band.rows)
                    residual.normalize(nb.norm, nb.activation, compute: compute)
                    Elementwise.add(
                        band.data, residual.data, count: band.rows.count * band.channels * band.width, compute: compute)
                }
                w.source = r
            case .tanh:
                precondition(w.pending == nil && i == layers.count - 1, "tanh ends the generator, after a conv")
                w.output = w.source
            case .relu, .leakyReLU:
                preconditionFailure("the streamed executor fuses activations into the norm before them")
            }
            i += 1
        }
    }

    /// The current activation as a store with its pending norm applied (a residual block's input and sum).
    private func materialize(_ w: inout Walk) throws -> ActivationStore {
        let rows = bands(of: w.source, fullHeight: w.fullHeight)
        let r: ActivationStore
        if let stored = w.source as? ActivationStore {
            r = stored
        } else {
            r = try store(like: w.source)
            let work = w.chainWork + Self.values(of: r)
            var y = 0
            while y < w.source.height {
                try checkpoint()
                let band = try w.source.rows(y..<min(w.source.height, y + rows))
                try r.write(band)
                y = band.rows.upperBound
                done(work * Double(band.rows.count) / Double(r.height))
            }
            pool.drain()
        }
        if let pending = w.pending {
            try update(r, bandRows: rows, work: Self.values(of: r)) { band in
                band.normalize(pending.norm, pending.activation, compute: compute)
            }
        }
        w.source = r
        w.pending = nil
        w.chainWork = 0
        return r
    }

    /// Band height for a stage: the full-resolution band, scaled to the stage's resolution.
    private func bands(of stage: RowStage, fullHeight: Int) -> Int {
        max(1, bandRows * stage.height / fullHeight)
    }

    private func store(like stage: RowStage) throws -> ActivationStore {
        try ActivationStore(
            channels: stage.channels, height: stage.height, width: stage.width, inMemory: storesInMemory,
            directory: temporaryDirectory, pool: pool, compute: compute)
    }

    /// Streams `stage` band by band, summing its channels' moments (and storing it).
    private func moments(
        of stage: RowStage, bandRows: Int, work: Double, storingIn store: ActivationStore? = nil
    ) throws -> ChannelMoments {
        var m = ChannelMoments(channels: stage.channels)
        var y = 0
        while y < stage.height {
            try checkpoint()
            let band = try stage.rows(y..<min(stage.height, y + bandRows))
            band.accumulate(into: &m, compute: compute)
            try store?.write(band)
            y = band.rows.upperBound
            done(work * Double(band.rows.count) / Double(stage.height))
        }
        pool.drain()
        return m
    }

    /// Rewrites a store band by band.
    private func update(
        _ store: ActivationStore, bandRows: Int, work: Double, _ body: (Band) throws -> Void
    ) throws {
        var y = 0
        while y < store.height {
            try checkpoint()
            let band = try store.rows(y..<min(store.height, y + bandRows))
            try body(band)
            try store.overwrite(band)
            y = band.rows.upperBound
            done(work * Double(band.rows.count) / Double(store.height))
        }
        pool.drain()
    }

    private func done(_ work: Double) {
        meter.done += work
        progress(meter.total > 0 ? min(meter.done / meter.total, 1) : 1)
    }

    private static func shape(of stage: RowStage) -> Network.Shape {
        Network.Shape(channels: stage.channels, height: stage.height, width: stage.width)
    }

    /// A pass's elementwise work (norms applied, moments summed, rows stored): one per value.
    private static func values(of stage: RowStage) -> Double { shape(of: stage).values }

    /// The work `run` will do on an input of `shape`, pass by pass as `walk` makes the passes:
    /// the total its `progress` divides by. (It must follow `walk`; a test checks that the
    /// passes add up to it.)
    private func plannedWork(_ layers: [Layer], _ input: Network.Shape) -> Double {
        struct Plan {
            var shape: Network.Shape
            var chainWork = 0.0
            var stored = false
            var pending = false
            var total = 0.0
        }
        let network = generator.network
        let fullHeight = input.height
        func plan(_ layers: [Layer], _ p: inout Plan) {
            var i = 0
            while i < layers.count {
                switch layers[i] {
                case .conv, .convTranspose:
                    let step = network.work(layers[i], p.shape)
                    p.chainWork += step.macs
                    p.shape = step.shape
                    (p.stored, p.pending) = (false, false)
                case .norm:
                    if i + 1 < layers.count, layers[i + 1].activation != nil { i += 1 }
                    p.total += p.chainWork + p.shape.values
                    if p.shape.height < fullHeight { (p.stored, p.chainWork) = (true, 0) }
                    p.pending = true
                case .residual(let inner):
                    if !p.stored { p.total += p.chainWork + p.shape.values }
                    if p.pending { p.total += p.shape.values }
                    var block = Plan(shape: p.shape, stored: true)
                    plan(inner, &block)
                    p.total += block.total + p.shape.values
                    (p.stored, p.pending, p.chainWork) = (true, false, 0)
                case .tanh:
                    p.total += p.chainWork + p.shape.values
                case .relu, .leakyReLU:
                    break
                }
                i += 1
            }
        }
        var p = Plan(shape: input)
        plan(layers, &p)
        return p.total
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
