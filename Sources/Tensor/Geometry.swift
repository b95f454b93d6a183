/// How a layer pads its input before the kernel slides over it.
public enum Padding: Sendable, Equatable {
    case zero(Int)
    case reflect(Int)

    public var amount: Int {
        switch self {
        case .zero(let p), .reflect(let p): return p
        }
    }
}

/// Reflection of index `i` into `0..<n`, repeated as often as needed (so any
/// padding works, even wider than the image); a single row reflects onto itself.
@inline(__always)
public func reflectIndex(_ i: Int, _ n: Int) -> Int {
    if n == 1 { return 0 }
    let period = 2 * (n - 1)
    var j = i % period
    if j < 0 { j += period }
    return j < n ? j : period - j
}

/// For every padded coordinate `0..<n + 2p`, the input coordinate it reads, or
/// -1 for a zero. `offset` shifts the source (a band that starts at row `offset`).
public func paddedIndexMap(length n: Int, padding: Padding, offset: Int = 0) -> [Int32] {
    let p = padding.amount
    return (0..<(n + 2 * p)).map { q in
        let i = q - p
        switch padding {
        case .zero: return (i < 0 || i >= n) ? -1 : Int32(i - offset)
        case .reflect: return Int32(reflectIndex(i, n) - offset)
        }
    }
}

/// Where each output position of a convolution reads its input, tap by tap:
/// `rows[ky * outHeight + oy]` is the input row that tap `ky` of output row
/// `oy` reads (-1 reads a zero), and likewise `cols[kx * outWidth + ox]`.
/// Padding, stride, bands of rows and the sub-grids of a transposed
/// convolution are all just different maps.
public struct GatherMap: Sendable {
    public let kernelHeight: Int
    public let kernelWidth: Int
    public let outHeight: Int
    public let outWidth: Int
    public let rows: [Int32]
    public let cols: [Int32]
    /// Per column tap: the output columns lo..<hi where cols[kx][ox] = base + step·ox,
    /// so im2col can copy those with a plain strided loop instead of a gather.
    let spans: [ColumnSpan]

    struct ColumnSpan {
        var lo: Int
        var hi: Int
        var base: Int
        var step: Int
    }

    public init(kernelHeight: Int, kernelWidth: Int, outHeight: Int, outWidth: Int, rows: [Int32], cols: [Int32]) {
        precondition(rows.count == kernelHeight * outHeight && cols.count == kernelWidth * outWidth)
        self.kernelHeight = kernelHeight
        self.kernelWidth = kernelWidth
        self.outHeight = outHeight
        self.outWidth = outWidth
        self.rows = rows
        self.cols = cols
        spans = (0..<kernelWidth).map { kx in
            let c = cols[(kx * outWidth)..<((kx + 1) * outWidth)].map(Int.init)
            guard outWidth >= 2 else { return ColumnSpan(lo: 0, hi: 0, base: 0, step: 0) }
            let mid = outWidth / 2
            let step = c[mid] - c[mid - 1]
            let base = c[mid] - step * mid
            func fits(_ ox: Int) -> Bool { c[ox] >= 0 && c[ox] == base + step * ox }
            guard step > 0, fits(mid), fits(mid - 1) else { return ColumnSpan(lo: 0, hi: 0, base: 0, step: 0) }
            var lo = mid - 1
            while lo > 0 && fits(lo - 1) { lo -= 1 }
            var hi = mid + 1
            while hi < outWidth && fits(hi) { hi += 1 }
            return ColumnSpan(lo: lo, hi: hi, base: base, step: step)
        }
    }

    /// A strided convolution over padded coordinates: `rowMap`/`colMap` give,
    /// for each padded coordinate, the input coordinate (see `paddedIndexMap`).
    public init(kernel: Int, stride: Int, rowMap: [Int32], colMap: [Int32]) {
        let oh = (rowMap.count - kernel) / stride + 1
        let ow = (colMap.count - kernel) / stride + 1
        var rows = [Int32](repeating: 0, count: kernel * oh)
        var cols = [Int32](repeating: 0, count: kernel * ow)
        for k in 0..<kernel {
            for o in 0..<oh { rows[k * oh + o] = rowMap[o * stride + k] }
            for o in 0..<ow { cols[k * ow + o] = colMap[o * stride + k] }
        }
        self.init(kernelHeight: kernel, kernelWidth: kernel, outHeight: oh, outWidth: ow, rows: rows, cols: cols)
    }

    /// A whole-image convolution of an `height`×`width` input.
    public init(height: Int, width: Int, kernel: Int, stride: Int, padding: Padding) {
        self.init(
            kernel: kernel, stride: stride,
            rowMap: paddedIndexMap(length: height, padding: padding),
            colMap: paddedIndexMap(length: width, padding: padding))
    }
}
