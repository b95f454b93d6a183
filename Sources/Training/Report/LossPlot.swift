import Foundation

/// `training/losses.png`: the eight losses against the fractional epoch, as the
/// reference's visdom plot shows them ("<name> loss over time", x "epoch", y "loss").
///
/// Each curve is reduced to pixel columns before it is drawn, so the cost of
/// drawing depends on the plot's width, not on how many records the run has
/// logged: the curve is the mean of the values in each column, over a pale band
/// that shows their spread (the noise of a GAN's losses, which would otherwise
/// hide the curves under one another).
public enum LossPlot {
    /// One colour per loss, in `LossRecord.lossNames` order (Tableau's palette, grey left out).
    static let colours = [
        RGB8(31, 119, 180), RGB8(255, 127, 14), RGB8(44, 160, 44), RGB8(214, 39, 40),
        RGB8(148, 103, 189), RGB8(140, 86, 75), RGB8(227, 119, 194), RGB8(23, 190, 207),
    ]
    static let ink = RGB8(40, 40, 40)
    static let gridColour = RGB8(228, 228, 228)
    static let lineThickness = 2.0

    /// Draws the plot; `datasetSize` (images per epoch) places each record within its epoch.
    public static func render(
        _ records: [LossRecord], datasetSize: Int, modelName: String, width: Int = 1000, height: Int = 600
    ) throws -> RGB8Image {
        guard width >= PlotFrame.smallest.width, height >= PlotFrame.smallest.height else {
            throw ReportError(
                "a loss plot needs at least \(PlotFrame.smallest.width)×\(PlotFrame.smallest.height) pixels, "
                    + "not \(width)×\(height)")
        }
        var image = RGB8Image(width: width, height: height)
        let frame = PlotFrame(records, datasetSize: datasetSize, width: width, height: height)
        try drawAxes(frame, on: &image)
        let xs = records.map { $0.fractionalEpoch(datasetSize: datasetSize) }
        let summaries = colours.indices.map { curve in
            ColumnSummary(xs: xs, ys: records.map { $0.loss(curve) }, frame: frame)
        }
        // Every curve's spread first, so that no spread hides another curve.
        for (summary, colour) in zip(summaries, colours) {
            drawSpread(summary, frame: frame, colour: colour, on: &image)
        }
        for (summary, colour) in zip(summaries, colours) { drawMean(summary, frame: frame, colour: colour, on: &image) }
        try drawLegend(frame, on: &image)
        let title = try TextMask("\(modelName) loss over time", size: 16, bold: true)
        image.draw(title, x: (width - title.width) / 2, y: (frame.top - title.height) / 2, ink)
        if records.isEmpty {
            let note = try TextMask("no losses logged yet", size: 14)
            image.draw(
                note, x: (frame.left + frame.right - note.width) / 2, y: (frame.top + frame.bottom - note.height) / 2,
                ink)
        }
        return image
    }

    /// Renders the plot and writes it as a PNG at `url` atomically.
    public static func write(
        _ records: [LossRecord], datasetSize: Int, modelName: String, width: Int = 1000, height: Int = 600,
        to url: URL
    ) throws {
        try render(records, datasetSize: datasetSize, modelName: modelName, width: width, height: height)
            .writePNG(to: url)
    }

    private static func drawAxes(_ frame: PlotFrame, on image: inout RGB8Image) throws {
        for tick in frame.yTicks {
            let y = Int(frame.pixelY(tick).rounded())
            image.fill(x: frame.left, y: y, width: frame.right - frame.left + 1, height: 1, gridColour)
            let label = try TextMask(frame.yLabel(tick), size: 12)
            image.draw(label, x: frame.left - 7 - label.width, y: y - label.height / 2, ink)
            image.fill(x: frame.left - 4, y: y, width: 4, height: 1, ink)
        }
        for tick in frame.xTicks {
            let x = Int(frame.pixelX(tick).rounded())
            image.fill(x: x, y: frame.top, width: 1, height: frame.bottom - frame.top + 1, gridColour)
            let label = try TextMask(frame.xLabel(tick), size: 12)
            image.draw(label, x: x - label.width / 2, y: frame.bottom + 8, ink)
            image.fill(x: x, y: frame.bottom + 1, width: 1, height: 4, ink)
        }
        // The frame around the plot area.
        let w = frame.right - frame.left + 1
        let h = frame.bottom - frame.top + 1
        image.fill(x: frame.left - 1, y: frame.top - 1, width: w + 2, height: 1, ink)
        image.fill(x: frame.left - 1, y: frame.bottom + 1, width: w + 2, height: 1, ink)
        image.fill(x: frame.left - 1, y: frame.top - 1, width: 1, height: h + 2, ink)
        image.fill(x: frame.right + 1, y: frame.top - 1, width: 1, height: h + 2, ink)

        let xTitle = try TextMask("epoch", size: 14)
        image.draw(xTitle, x: (frame.left + frame.right - xTitle.width) / 2, y: image.height - xTitle.height - 8, ink)
        let yTitle = try TextMask("loss", size: 14).rotatedAnticlockwise()
        image.draw(yTitle, x: 10, y: (frame.top + frame.bottom - yTitle.height) / 2, ink)
    }

    /// One curve's values reduced to pixel columns: per column, in pixel rows, the
    /// first and last value falling in it, the lowest and highest, and their mean.
    private struct ColumnSummary {
        var first: [Double]
        var last: [Double]
        var lowest: [Double]
        var highest: [Double]
        var sum: [Double]
        var count: [Int]

        init(xs: [Double], ys: [Double], frame: PlotFrame) {
            let columns = frame.right - frame.left + 1
            first = [Double](repeating: 0, count: columns)
            (last, lowest, highest, sum) = (first, first, first, first)
            count = [Int](repeating: 0, count: columns)
            for (x, y) in zip(xs, ys) where x.isFinite && y.isFinite {
                let c = min(max(Int(frame.pixelX(x).rounded()) - frame.left, 0), columns - 1)
                let row = frame.pixelY(y)
                if count[c] == 0 {
                    (first[c], lowest[c], highest[c]) = (row, row, row)
                } else {
                    lowest[c] = max(lowest[c], row)
                    highest[c] = min(highest[c], row)
                }
                last[c] = row
                sum[c] += row
                count[c] += 1
            }
        }
    }

    /// The spread of a curve, in a pale tint: a vertical stroke over the values
    /// in each column and a stroke from each column's last value to the next one's first.
    private static func drawSpread(_ summary: ColumnSummary, frame: PlotFrame, colour: RGB8, on image: inout RGB8Image)
    {
        let tint = colour.mixed(with: .white, 0.6)
        var previous: (x: Double, y: Double)?
        for c in summary.count.indices where summary.count[c] > 0 {
            let x = Double(frame.left + c)
            if let previous { image.line(previous.x, previous.y, x, summary.first[c], tint, thickness: 1) }
            image.line(x, summary.lowest[c], x, summary.highest[c], tint, thickness: 1)
            previous = (x, summary.last[c])
        }
    }

    /// The curve itself: its mean in each column, joined.
    private static func drawMean(_ summary: ColumnSummary, frame: PlotFrame, colour: RGB8, on image: inout RGB8Image) {
        var previous: (x: Double, y: Double)?
        for c in summary.count.indices where summary.count[c] > 0 {
            let point = (x: Double(frame.left + c), y: summary.sum[c] / Double(summary.count[c]))
            let from = previous ?? point
            image.line(from.x, from.y, point.x, point.y, colour, thickness: lineThickness)
            previous = point
        }
    }

    private static func drawLegend(_ frame: PlotFrame, on image: inout RGB8Image) throws {
        let area = frame.legendArea
        for (entry, name) in LossRecord.lossNames.enumerated() {
            let y = area.y + 10 + entry * PlotFrame.legendRowHeight
            image.line(
                Double(area.x), Double(y), Double(area.x + 22), Double(y), colours[entry], thickness: 3)
            let label = try TextMask(name, size: 13)
            image.draw(label, x: area.x + 30, y: y - label.height / 2, ink)
        }
    }
}

/// Where the plot area, the legend and the axis ranges are, and how values map to pixels.
struct PlotFrame {
    static let legendRowHeight = 22
    /// Room for the margins, the legend and a plot area of 100 × 100 pixels.
    static let smallest = (width: 308, height: 200)

    let left: Int
    let top: Int
    let right: Int
    let bottom: Int
    let xRange: ClosedRange<Double>
    let yRange: ClosedRange<Double>
    let xTicks: [Double]
    let yTicks: [Double]
    private let xStep: Double
    private let yStep: Double

    init(_ records: [LossRecord], datasetSize: Int, width: Int, height: Int) {
        left = 78
        top = 44
        right = width - 130
        bottom = height - 56
        let xs = records.map { $0.fractionalEpoch(datasetSize: datasetSize) }.filter(\.isFinite)
        let ys = (0..<8).flatMap { curve in records.map { $0.loss(curve) } }.filter(\.isFinite)
        // Training starts at epoch 0, and losses are not negative: axes from 0 show both.
        xRange = Self.range(xs, margin: 0, startsAtZero: xs.allSatisfy { $0 >= 0 })
        yRange = Self.range(ys, margin: 0.05, startsAtZero: ys.allSatisfy { $0 >= 0 })
        (xStep, xTicks) = Self.ticks(xRange, count: max((right - left) / 110, 2))
        (yStep, yTicks) = Self.ticks(yRange, count: max((bottom - top) / 60, 2))
    }

    /// Pixel column of an x value (pixel centres), the range spanning the plot area.
    func pixelX(_ x: Double) -> Double {
        Double(left) + (x - xRange.lowerBound) / (xRange.upperBound - xRange.lowerBound) * Double(right - left)
    }

    /// Pixel row of a loss, larger values higher up.
    func pixelY(_ y: Double) -> Double {
        Double(bottom) - (y - yRange.lowerBound) / (yRange.upperBound - yRange.lowerBound) * Double(bottom - top)
    }

    /// The legend's top-left corner and size, right of the plot area.
    var legendArea: (x: Int, y: Int, width: Int, height: Int) {
        (right + 16, top, 110, LossRecord.lossNames.count * Self.legendRowHeight)
    }

    func xLabel(_ tick: Double) -> String { Self.label(tick, step: xStep) }
    func yLabel(_ tick: Double) -> String { Self.label(tick, step: yStep) }

    /// The data's extent, widened by `margin` of it above (and below unless it
    /// starts at 0), or around a single value; never empty.
    private static func range(_ values: [Double], margin: Double, startsAtZero: Bool) -> ClosedRange<Double> {
        guard let low = values.min(), let high = values.max() else { return 0...1 }
        let pad = high > low ? (high - low) * margin : max(abs(high) * 0.1, 0.5)
        let lower = startsAtZero ? 0 : low - (high > low ? 0 : pad)
        let upper = high + pad
        return lower...(upper > lower ? upper : lower + 1)
    }

    /// Round ticks (1, 2 or 5 times a power of ten apart), about `count` of them, inside `range`.
    private static func ticks(_ range: ClosedRange<Double>, count: Int) -> (step: Double, ticks: [Double]) {
        let raw = (range.upperBound - range.lowerBound) / Double(count)
        let power = pow(10, (log10(raw)).rounded(.down))
        let step = [1.0, 2, 5, 10].map { $0 * power }.first { $0 >= raw * 0.999 } ?? 10 * power
        var ticks: [Double] = []
        var k = (range.lowerBound / step).rounded(.up)
        while k * step <= range.upperBound + step * 1e-9 {
            ticks.append(k * step)
            k += 1
        }
        return (step, ticks)
    }

    /// As many decimals as the step between ticks needs.
    private static func label(_ tick: Double, step: Double) -> String {
        let decimals = max(0, Int(-log10(step).rounded(.down)))
        let text = String(format: "%.\(decimals)f", tick)
        // "-0.0" for a tick a rounding error below zero.
        return text.hasPrefix("-") && Double(text) == 0 ? String(text.dropFirst()) : text
    }
}
