import Foundation
import Tensor

/// A grid of the trainer's current visuals, each labelled, as the reference's
/// HTML page shows them: one row per direction (real_A fake_B rec_A idt_B,
/// then real_B fake_A rec_B idt_A), written to `training/samples/`.
public enum SampleGrid {
    static let labelColour = RGB8(40, 40, 40)

    /// The grid's file name for a sample taken at `iters` images into `epoch`,
    /// which `TrainingPage` reads back for its captions.
    public static func fileName(epoch: Int, iters: Int) -> String {
        "epoch" + zeroPadded(epoch, 3) + "_iter" + zeroPadded(iters, 6) + ".png"
    }

    /// Draws `rows` of [1, 3, H, W] tensors in [-1, 1] (all the same size), each
    /// tile labelled by the matching entry of `labels`, under `title` when given.
    public static func render(rows: [[Tensor]], labels: [[String]], title: String? = nil) throws -> RGB8Image {
        guard let first = rows.first?.first else { throw ReportError("a sample grid needs at least one image") }
        guard labels.count == rows.count, zip(rows, labels).allSatisfy({ $0.count == $1.count }) else {
            throw ReportError(
                "sample grid: \(rows.map(\.count)) images per row but \(labels.map(\.count)) labels per row")
        }
        guard first.shape.count == 4, first.shape[0] == 1, first.shape[1] == 3,
            rows.joined().allSatisfy({ $0.shape == first.shape })
        else {
            throw ReportError(
                "sample grid: every image must be [1, 3, H, W] of one size, got \(rows.map { $0.map(\.shape) })")
        }
        let labelMasks = try labels.map { try $0.map { try TextMask($0, size: 13) } }
        let titleMask = try title.map { try TextMask($0, size: 15, bold: true) }
        let layout = GridLayout(
            tileWidth: first.shape[3], tileHeight: first.shape[2], columns: rows.map(\.count).max() ?? 0,
            rows: rows.count, widestLabel: labelMasks.joined().map(\.width).max() ?? 0,
            hasTitle: titleMask != nil)
        var image = RGB8Image(width: layout.width, height: layout.height)
        if let titleMask {
            image.draw(titleMask, x: GridLayout.gap, y: (GridLayout.titleHeight - titleMask.height) / 2, labelColour)
        }
        for (r, row) in rows.enumerated() {
            for (c, tile) in row.enumerated() {
                let origin = layout.tileOrigin(row: r, column: c)
                draw(tile, on: &image, x: origin.x, y: origin.y)
                let label = labelMasks[r][c]
                image.draw(
                    label, x: origin.x + (layout.tileWidth - label.width) / 2,
                    y: origin.y + layout.tileHeight + (GridLayout.labelHeight - label.height) / 2, labelColour)
            }
        }
        return image
    }

    /// Renders the grid and writes it as a PNG at `url` atomically.
    public static func write(rows: [[Tensor]], labels: [[String]], title: String? = nil, to url: URL) throws {
        try render(rows: rows, labels: labels, title: title).writePNG(to: url)
    }

    /// Copies a [1, 3, H, W] tensor into the image, quantised as output images
    /// are: round((v + 1) · 127.5) to nearest even, clamped to 0...255, NaN to 0.
    private static func draw(_ tile: Tensor, on image: inout RGB8Image, x: Int, y: Int) {
        let height = tile.shape[2]
        let width = tile.shape[3]
        let plane = width * height
        for row in 0..<height {
            for column in 0..<width {
                let o = ((y + row) * image.width + x + column) * 3
                for c in 0..<3 {
                    let v = ((tile.data[c * plane + row * width + column] + 1) * 127.5).rounded(.toNearestOrEven)
                    image.pixels[o + c] = v >= 0 ? UInt8(min(v, 255)) : 0
                }
            }
        }
    }

    private static func zeroPadded(_ n: Int, _ digits: Int) -> String {
        let text = String(n)
        return String(repeating: "0", count: max(digits - text.count, 0)) + text
    }
}

/// Where each tile of a sample grid goes: tiles in cells wide enough for their
/// labels, a label strip under each tile, a gap around every cell.
struct GridLayout {
    static let gap = 6
    static let labelHeight = 22
    static let titleHeight = 30

    let tileWidth: Int
    let tileHeight: Int
    let columns: Int
    let rows: Int
    let cellWidth: Int
    let titleHeight: Int

    init(tileWidth: Int, tileHeight: Int, columns: Int, rows: Int, widestLabel: Int, hasTitle: Bool) {
        self.tileWidth = tileWidth
        self.tileHeight = tileHeight
        self.columns = columns
        self.rows = rows
        cellWidth = max(tileWidth, widestLabel + 4)
        titleHeight = hasTitle ? Self.titleHeight : 0
    }

    var width: Int { Self.gap + columns * (cellWidth + Self.gap) }
    var height: Int { titleHeight + Self.gap + rows * (tileHeight + Self.labelHeight + Self.gap) }

    /// Top-left pixel of the tile in `row`, `column`, centred in its cell.
    func tileOrigin(row: Int, column: Int) -> (x: Int, y: Int) {
        (
            Self.gap + column * (cellWidth + Self.gap) + (cellWidth - tileWidth) / 2,
            titleHeight + Self.gap + row * (tileHeight + Self.labelHeight + Self.gap)
        )
    }
}
