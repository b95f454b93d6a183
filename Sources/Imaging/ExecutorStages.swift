import CycleGAN
import Foundation
import Tensor

/// Rows of one activation of the generator, [C][rows][W] planes, produced on demand.
///
/// The streamed executor chains these: a convolution asks its input stage for
/// exactly the rows its band needs (kernel halo included, reflection resolved),
/// applies the input's pending instance norm, and convolves. Stages that are
/// cheap to recompute are recomputed; the rest come from an `ActivationStore`.
protocol RowStage: AnyObject {
    var channels: Int { get }
    var height: Int { get }
    var width: Int { get }
    func rows(_ range: Range<Int>) throws -> Band
}

/// Recycles band buffers within one run. Bands are tens to hundreds of MB, which
/// malloc hands out as fresh mappings: without reuse every band would fault its
/// pages in again (minutes of system time on a 36 MP image).
final class BandPool {
    private var free: [(pointer: UnsafeMutablePointer<Float>, capacity: Int)] = []

    /// A buffer of at least `count` floats: the smallest free one that fits, else a new one.
    func take(_ count: Int) -> (UnsafeMutablePointer<Float>, Int) {
        if let i = free.indices.filter({ free[$0].capacity >= count }).min(by: { free[$0].capacity < free[$1].capacity }
        ) {
            return free.remove(at: i)
        }
        return (.allocate(capacity: count), count)
    }

    func give(_ pointer: UnsafeMutablePointer<Float>, capacity: Int) {
        free.append((pointer, capacity))
        // A pass keeps one band per stage of its chain alive; more than that is garbage.
        if free.count > 6 {
            let i = free.indices.min(by: { free[$0].capacity < free[$1].capacity })!
            free.remove(at: i).pointer.deallocate()
        }
    }

    /// Frees every idle buffer: the next pass's bands have other sizes.
    func drain() {
        for f in free { f.pointer.deallocate() }
        free.removeAll()
    }

    deinit { drain() }
}

/// The work a streamed run has done, out of the total it planned.
final class WorkMeter {
    var total = 0.0
    var done = 0.0
}

/// A band of rows of an activation; its memory comes from (and goes back to) a pool.
final class Band {
    let rows: Range<Int>
    let channels: Int
    let width: Int
    let data: UnsafeMutablePointer<Float>
    /// Where plane c, row r (relative to `rows.lowerBound`) starts: c·channelStride + r·rowStride.
    let channelStride: Int
    let rowStride: Int
    private let pool: BandPool
    private let capacity: Int

    /// Planar [C][rows][W] (`interleaved`: [rows][C][W], as stores keep it).
    init(rows: Range<Int>, channels: Int, width: Int, interleaved: Bool = false, pool: BandPool) {
        self.rows = rows
        self.channels = channels
        self.width = width
        channelStride = interleaved ? width : rows.count * width
        rowStride = interleaved ? channels * width : width
        self.pool = pool
        (data, capacity) = pool.take(max(1, channels * rows.count * width))
    }

    deinit { pool.give(data, capacity: capacity) }

    var planes: Planes { Planes(source: data, channels: channels, channelStride: channelStride, rowStride: rowStride) }

    /// Applies a finished instance norm (and its activation) in place.
    func normalize(_ norm: Normalization, _ activation: Activation, compute: Compute) {
        let n = rows.count
        compute.forEach(channels) { c in
            let m = norm.mean[c]
            let a = norm.scale[c]
            let b = norm.shift[c]
            for r in 0..<n {
                let x = data + c * channelStride + r * rowStride
                switch activation {
                case .none: for i in 0..<width { x[i] = (x[i] - m) * a + b }
                case .relu: for i in 0..<width { x[i] = max((x[i] - m) * a + b, 0) }
                case .leakyReLU(let s):
                    for i in 0..<width {
                        let v = (x[i] - m) * a + b
                        x[i] = v > 0 ? v : v * s
                    }
                }
            }
        }
    }

    /// Adds this band's per-channel sums to `moments` (planar bands only).
    func accumulate(into moments: inout ChannelMoments, compute: Compute) {
        precondition(rowStride == width, "moments of planar bands only")
        moments.accumulate(data, channelStride: channelStride, pixels: rows.count * width, compute: compute)
    }
}

/// A finished instance norm waiting to be applied by whoever reads the stage.
struct PendingNorm {
    var norm: Normalization
    var activation: Activation
}

/// The input image at the network's working size: rows past the image's
/// bottom and columns past its right edge are reflections (as `forward` pads).
final class PaddedInput: RowStage {
    let channels = 3
    let height: Int
    let width: Int
    private let read: (Int, Int, UnsafeMutablePointer<Float>) throws -> Void
    private let sourceHeight: Int
    private let sourceWidth: Int
    private let pool: BandPool

    /// `read(y, count, into)` fills [3][count][sourceWidth] planes of rows y..<y+count.
    init(
        sourceHeight: Int, sourceWidth: Int, height: Int, width: Int, pool: BandPool,
        read: @escaping (Int, Int, UnsafeMutablePointer<Float>) throws -> Void
    ) {
        self.pool = pool
        self.sourceHeight = sourceHeight
        self.sourceWidth = sourceWidth
        self.height = height
        self.width = width
        self.read = read
    }

    func rows(_ range: Range<Int>) throws -> Band {
        let band = Band(rows: range, channels: 3, width: width, pool: pool)
        let inside = range.clamped(to: 0..<sourceHeight)
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: 3 * max(1, inside.count) * sourceWidth)
        defer { scratch.deallocate() }
        if !inside.isEmpty { try read(inside.lowerBound, inside.count, scratch) }
        let single = UnsafeMutablePointer<Float>.allocate(capacity: 3 * sourceWidth)
        defer { single.deallocate() }
        for (i, y) in range.enumerated() {
            let src: UnsafeMutablePointer<Float>
            let stride: Int
            let sy = reflectIndex(y, sourceHeight)
            if inside.contains(sy) {
                src = scratch + (sy - inside.lowerBound) * sourceWidth
                stride = inside.count * sourceWidth
            } else {
                try read(sy, 1, single)
                src = single
                stride = sourceWidth
            }
            for c in 0..<3 {
                let row = src + c * stride
                let dst = band.data + c * band.channelStride + i * width
                dst.update(from: row, count: sourceWidth)
                for x in sourceWidth..<width { dst[x] = row[reflectIndex(x, sourceWidth)] }
            }
        }
        return band
    }
}

/// A convolution over another stage's rows, with that stage's pending norm
/// applied to its rows first.
final class ConvStage: RowStage {
    let input: RowStage
    let pending: PendingNorm?
    let conv: Conv2D
    let padding: Padding
    let compute: Compute
    let height: Int
    let width: Int
    var channels: Int { conv.outChannels }
    private let rowMap: [Int32]
    private let colMap: [Int32]

    let pool: BandPool

    init(_ input: RowStage, pending: PendingNorm?, conv: Conv2D, padding: Padding, compute: Compute, pool: BandPool) {
        self.pool = pool
        self.input = input
        self.pending = pending
        self.conv = conv
        self.padding = padding
        self.compute = compute
        (height, width) = conv.outputSize(height: input.height, width: input.width, padding: padding)
        rowMap = paddedIndexMap(length: input.height, padding: padding)
        colMap = paddedIndexMap(length: input.width, padding: padding)
    }

    func rows(_ range: Range<Int>) throws -> Band {
        // Padded rows range.lower·s ..< (range.upper − 1)·s + k, and the input rows they read.
        let padded = Array(
            rowMap[(range.lowerBound * conv.stride)..<((range.upperBound - 1) * conv.stride + conv.kernel)])
        let valid = padded.filter { $0 >= 0 }
        let lo = Int(valid.min() ?? 0)
        let hi = Int(valid.max() ?? -1) + 1
        let source = try input.rows(lo..<max(hi, lo))
        if let pending { source.normalize(pending.norm, pending.activation, compute: compute) }
        let local = padded.map { $0 < 0 ? $0 : $0 - Int32(lo) }
        let out = Band(rows: range, channels: channels, width: width, pool: pool)
        conv.forward(source.planes, rowMap: local, colMap: colMap, into: out.data, compute: compute)
        return out
    }
}

/// A transposed convolution over another stage's rows (pending norm applied first).
final class TransposedConvStage: RowStage {
    let input: RowStage
    let pending: PendingNorm?
    let conv: ConvTranspose2D
    let compute: Compute
    let height: Int
    let width: Int
    var channels: Int { conv.outChannels }

    let pool: BandPool

    init(_ input: RowStage, pending: PendingNorm?, conv: ConvTranspose2D, compute: Compute, pool: BandPool) {
        self.pool = pool
        self.input = input
        self.pending = pending
        self.conv = conv
        self.compute = compute
        (height, width) = conv.outputSize(height: input.height, width: input.width)
    }

    func rows(_ range: Range<Int>) throws -> Band {
        // Output row oy reads input rows (oy + p − ky)/s for taps ky: a superset suffices.
        let s = conv.stride
        let lo = max(0, (range.lowerBound + conv.padding - conv.kernel + 1) / s - 1)
        let hi = min(input.height, (range.upperBound - 1 + conv.padding) / s + 2)
        let source = try input.rows(lo..<hi)
        if let pending { source.normalize(pending.norm, pending.activation, compute: compute) }
        let out = Band(rows: range, channels: channels, width: width, pool: pool)
        conv.forward(
            source.planes, inputHeight: input.height, inputWidth: input.width, inputRowBase: lo, outRows: range,
            into: out.data, compute: compute)
        return out
    }
}

/// An activation kept whole: in memory while it fits the budget, else in an
/// unlinked temporary file read and written with pread/pwrite (so it costs
/// page cache, not resident memory). Rows are stored [H][C][W] so that a band
/// is one contiguous read. Every transfer is split into slices of rows, one per
/// worker: the copies (ours and the kernel's to and from the page cache) are a
/// tenth of a large image's time and would otherwise run on one core while the
/// others wait.
final class ActivationStore: RowStage {
    let channels: Int
    let height: Int
    let width: Int
    private let memory: UnsafeMutablePointer<Float>?
    private let fd: Int32
    private let pool: BandPool
    private let compute: Compute
    private var rowFloats: Int { channels * width }

    init(
        channels: Int, height: Int, width: Int, inMemory: Bool, directory: String, pool: BandPool, compute: Compute
    ) throws {
        self.pool = pool
        self.compute = compute
        self.channels = channels
        self.height = height
        self.width = width
        if inMemory {
            memory = .allocate(capacity: max(1, channels * height * width))
            fd = -1
        } else {
            memory = nil
            fd = try MappedSpool.anonymousFile(in: directory, prefix: "cyclegand-activations", path: directory)
        }
    }

    deinit {
        memory?.deallocate()
        if fd >= 0 { close(fd) }
    }

    /// Stores a planar band.
    func write(_ band: Band) throws {
        let first = band.rows.lowerBound
        let scratch = memory == nil ? pool.take(band.rows.count * rowFloats) : nil
        defer { if let scratch { pool.give(scratch.0, capacity: scratch.1) } }
        try inSlices(band.rows) { rows in
            let buffer =
                memory.map { $0 + rows.lowerBound * rowFloats } ?? scratch!.0 + (rows.lowerBound - first) * rowFloats
            for (i, y) in rows.enumerated() {
                for c in 0..<channels {
                    (buffer + (i * channels + c) * width).update(
                        from: band.data + c * band.channelStride + (y - first) * band.rowStride, count: width)
                }
            }
            if memory == nil { try transfer(write: true, buffer, rows: rows) }
        }
    }

    func rows(_ range: Range<Int>) throws -> Band {
        let band = Band(rows: range, channels: channels, width: width, interleaved: true, pool: pool)
        try inSlices(range) { rows in
            let buffer = band.data + (rows.lowerBound - range.lowerBound) * rowFloats
            if let memory {
                buffer.update(from: memory + rows.lowerBound * rowFloats, count: rows.count * rowFloats)
            } else {
                try transfer(write: false, buffer, rows: rows)
            }
        }
        return band
    }

    /// Replaces rows in place (the band must be interleaved, as `rows` returns).
    func overwrite(_ band: Band) throws {
        precondition(band.channelStride == width)
        try inSlices(band.rows) { rows in
            let buffer = band.data + (rows.lowerBound - band.rows.lowerBound) * rowFloats
            if let memory {
                (memory + rows.lowerBound * rowFloats).update(from: buffer, count: rows.count * rowFloats)
            } else {
                try transfer(write: true, buffer, rows: rows)
            }
        }
    }

    /// Runs `body` on one slice of `rows` per worker; throws the first failure.
    private func inSlices(_ rows: Range<Int>, _ body: (Range<Int>) throws -> Void) throws {
        // One read of a live share: as many failure slots as workers.
        let compute = compute.now()
        var failures = [(any Error)?](repeating: nil, count: compute.threads)
        failures.withUnsafeMutableBufferPointer { failures in
            compute.forSlices(rows.count) { worker, slice in
                do {
                    try body((rows.lowerBound + slice.lowerBound)..<(rows.lowerBound + slice.upperBound))
                } catch {
                    failures[worker] = error
                }
            }
        }
        if let failure = failures.lazy.compactMap({ $0 }).first { throw failure }
    }

    private func transfer(write: Bool, _ buffer: UnsafeMutablePointer<Float>, rows: Range<Int>) throws {
        var done = 0
        let total = rows.count * rowFloats * 4
        let offset = off_t(rows.lowerBound * rowFloats * 4)
        let raw = UnsafeMutableRawPointer(buffer)
        while done < total {
            let n =
                write
                ? pwrite(fd, raw + done, total - done, offset + off_t(done))
                : pread(fd, raw + done, total - done, offset + off_t(done))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                let reason = n == 0 ? "unexpected end of file" : String(cString: strerror(errno))
                throw ImagingError(
                    .writeFailed, path: "temporary activations",
                    reason: "cannot \(write ? "write" : "read") temporary activations: \(reason)")
            }
            done += n
        }
    }
}
