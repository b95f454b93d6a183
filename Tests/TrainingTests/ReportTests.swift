import Foundation
import Imaging
import Tensor
import Testing

@testable import Training

/// A fresh temporary folder, removed when the value is released.
private final class ReportScratch {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory.appending(path: "cyclegand-report-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(at: url) }

    func file(_ name: String) -> URL { url.appending(path: name) }
}

/// A record whose losses are `base`, `base + 1`, ... in `lossNames` order.
private func record(epoch: Int, iters: Int, totalIters: Int, base: Double = 1) -> LossRecord {
    LossRecord(
        epoch: epoch, iters: iters, totalIters: totalIters, lr: 0.0002, losses: (0..<8).map { base + Double($0) },
        secPerIter: 0.25, dataSec: 0.01)
}

/// The image at `url` decoded by libvips, as 8-bit RGB.
private func loadPNG(_ url: URL) throws -> RGB8Image {
    let tensor = try ImageFile.load(url.path).tensor
    var image = RGB8Image(width: tensor.shape[3], height: tensor.shape[2])
    let plane = image.width * image.height
    for i in 0..<plane {
        for c in 0..<3 { image.pixels[i * 3 + c] = UInt8(((tensor.data[c * plane + i] + 1) * 127.5).rounded()) }
    }
    return image
}

/// Pixels in the rectangle that are not white.
private func inked(_ image: RGB8Image, x: Int, y: Int, width: Int, height: Int) -> Int {
    var count = 0
    for row in y..<(y + height) {
        for column in x..<(x + width) where image[column, row] != .white { count += 1 }
    }
    return count
}

@Suite struct LossLogTests {
    @Test func recordsRoundTripUnderTheReferenceNames() throws {
        let scratch = try ReportScratch()
        let url = scratch.file("loss_log.jsonl")
        let written = (1...5).map { record(epoch: 1, iters: $0 * 4, totalIters: $0 * 4, base: 0.1 * Double($0)) }
        let log = try LossLog(url: url)
        for r in written { try log.append(r) }
        #expect(try LossLog.records(at: url) == written)
        #expect(log.records == written)

        let firstLine = try String(contentsOf: url, encoding: .utf8).split(separator: "\n")[0]
        let object = try JSONSerialization.jsonObject(with: Data(firstLine.utf8)) as! [String: Any]
        #expect(
            Set(object.keys) == [
                "epoch", "iters", "total_iters", "lr", "D_A", "G_A", "cycle_A", "idt_A", "D_B", "G_B", "cycle_B",
                "idt_B", "sec_per_iter", "data_sec",
            ])
        #expect(object["cycle_A"] as? Double == 2.1)
        #expect(firstLine.hasPrefix("{\"epoch\":1,\"iters\":4,\"total_iters\":4,\"lr\":0.0002,\"D_A\":0.1,"))
    }

    @Test func aDivergedLossIsWrittenAsNullAndReadAsNaN() throws {
        let scratch = try ReportScratch()
        let url = scratch.file("loss_log.jsonl")
        var diverged = record(epoch: 2, iters: 1, totalIters: 9)
        diverged.gB = .infinity
        diverged.cycleA = .nan
        try LossLog(url: url).append(diverged)
        #expect(try String(contentsOf: url, encoding: .utf8).contains("\"cycle_A\":null"))
        let back = try #require(try LossLog.records(at: url).first)
        #expect(back.cycleA.isNaN && back.gB.isNaN)
        #expect(back.dA == diverged.dA && back.totalIters == 9)
    }

    @Test func aTornLastLineIsDroppedAndCutOffBeforeTheNextRecord() throws {
        let scratch = try ReportScratch()
        let url = scratch.file("loss_log.jsonl")
        let whole = (1...3).map { record(epoch: 1, iters: $0, totalIters: $0) }
        try LossLog(url: url).append(contentsOf: whole)
        // A kill -9 in the middle of the fourth write.
        let torn = String(record(epoch: 1, iters: 4, totalIters: 4).jsonLine.prefix(37))
        let handle = try FileHandle(forWritingTo: url)
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(torn.utf8))
        try handle.close()

        #expect(try LossLog.records(at: url) == whole)
        let reopened = try LossLog(url: url)
        #expect(reopened.records == whole)
        let next = record(epoch: 1, iters: 5, totalIters: 5)
        try reopened.append(next)
        #expect(try LossLog.records(at: url) == whole + [next])
    }

    @Test func aDamagedLineBeforeTheLastIsAnError() throws {
        let scratch = try ReportScratch()
        let url = scratch.file("loss_log.jsonl")
        let good = record(epoch: 1, iters: 1, totalIters: 1).jsonLine
        try Data((good + "{\"epoch\":oops}\n" + good).utf8).write(to: url)
        #expect(throws: LossLogError.self) { try LossLog.records(at: url) }
    }

    @Test func aResumedRunsLogReadsAsTheUninterruptedRuns() throws {
        let scratch = try ReportScratch()
        let all = (1...10).map { record(epoch: ($0 - 1) / 4 + 1, iters: ($0 - 1) % 4 + 1, totalIters: $0 * 100) }
        let uninterrupted = scratch.file("a.jsonl")
        try LossLog(url: uninterrupted).append(contentsOf: all)

        // Killed after record 7; the last checkpoint was at 500 images.
        let resumed = scratch.file("b.jsonl")
        try LossLog(url: resumed).append(contentsOf: Array(all[..<7]))
        let log = try LossLog(url: resumed)
        try log.truncate(afterTotalIters: 500)
        #expect(log.records == Array(all[..<5]))
        try log.append(contentsOf: Array(all[5...]))
        #expect(try Data(contentsOf: resumed) == Data(contentsOf: uninterrupted))
        // No temporary file is left beside the log.
        #expect(
            try FileManager.default.contentsOfDirectory(atPath: scratch.url.path).sorted() == ["a.jsonl", "b.jsonl"])
    }
}

extension LossLog {
    fileprivate func append(contentsOf records: [LossRecord]) throws {
        for r in records { try append(r) }
    }
}

@Suite struct LossPlotTests {
    @Test func constantLossesDrawHorizontalLinesAtTheirHeightsInTheirColours() throws {
        let datasetSize = 100
        let records = (0..<40).map { i in record(epoch: i / 20 + 1, iters: (i % 20 + 1) * 5, totalIters: (i + 1) * 5) }
        let image = try LossPlot.render(
            records, datasetSize: datasetSize, modelName: "horse2zebra", width: 800, height: 500)
        #expect(image.width == 800 && image.height == 500)

        let frame = PlotFrame(records, datasetSize: datasetSize, width: 800, height: 500)
        // Losses 1 ... 8 on an axis from 0: evenly spaced rows, the larger higher.
        let rows = (0..<8).map { Int(frame.pixelY(Double($0 + 1)).rounded()) }
        let spacing = Double(rows[0] - rows[7]) / 7
        #expect(spacing > 20)
        for (k, row) in rows.enumerated() {
            #expect(abs(Double(rows[0] - row) - spacing * Double(k)) <= 1)
            // Across the data's extent, and only there.
            for x in stride(from: frame.pixelX(0.1), through: frame.pixelX(1.9), by: 37) {
                #expect(image[Int(x.rounded()), row] == LossPlot.colours[k])
            }
            #expect(image[Int(frame.pixelX(1.9).rounded()), row - 6] != LossPlot.colours[k])
        }
        // The x axis runs from the start of training to the last record.
        #expect(abs(frame.pixelX(0) - Double(frame.left)) < 1e-9)
        #expect(abs(frame.pixelX(2) - Double(frame.right)) < 1e-9)
    }

    @Test func aNoisyCurveIsItsMeanOverAPaleBandOfItsSpread() throws {
        // D_A alternates between 1 and 3 many times per pixel column; the other losses sit at 10.
        let records = (1...4000).map { i in
            LossRecord(
                epoch: 1, iters: i, totalIters: i, lr: 0.0002,
                losses: [i % 2 == 0 ? 1 : 3] + Array(repeating: 10, count: 7))
        }
        let image = try LossPlot.render(records, datasetSize: 4000, modelName: "noisy", width: 800, height: 500)
        let frame = PlotFrame(records, datasetSize: 4000, width: 800, height: 500)
        let tint = LossPlot.colours[0].mixed(with: .white, 0.6)
        for x in stride(from: frame.left + 20, to: frame.right - 20, by: 50) {
            // A column holds 6 or 7 records, so its mean is 2 ± 0.3.
            let nearTwo = Int(frame.pixelY(2.3).rounded())...Int(frame.pixelY(1.7).rounded())
            #expect(nearTwo.contains { image[x, $0] == LossPlot.colours[0] })
            #expect(image[x, Int(frame.pixelY(1.15).rounded())] == tint)
            #expect(image[x, Int(frame.pixelY(2.85).rounded())] == tint)
            #expect(image[x, Int(frame.pixelY(3.3).rounded())] != tint)
        }
    }

    @Test func aPlotTooSmallForItsLegendIsRefused() {
        #expect(throws: ReportError.self) { try LossPlot.render([], datasetSize: 1, modelName: "m", width: 200) }
    }

    @Test func theLegendTitleAndTickLabelsAreDrawn() throws {
        let records = (1...30).map { record(epoch: 1, iters: $0 * 10, totalIters: $0 * 10, base: Double($0) / 30) }
        let image = try LossPlot.render(records, datasetSize: 300, modelName: "apple2orange")
        let frame = PlotFrame(records, datasetSize: 300, width: 1000, height: 600)
        let legend = frame.legendArea
        for entry in 0..<8 {
            let y = legend.y + 10 + entry * PlotFrame.legendRowHeight
            #expect(image[legend.x + 11, y] == LossPlot.colours[entry])
            // The name beside the swatch: a word's worth of ink.
            let ink = inked(image, x: legend.x + 30, y: y - 8, width: 80, height: 16)
            #expect(ink > 20)
        }
        #expect(inked(image, x: 0, y: 0, width: image.width, height: frame.top - 2) > 100)
        #expect(inked(image, x: 0, y: frame.top, width: frame.left - 8, height: frame.bottom - frame.top) > 100)
        #expect(inked(image, x: frame.left, y: frame.bottom + 6, width: frame.right - frame.left, height: 40) > 100)
        // Nothing but white past the legend's bottom on the right.
        #expect(inked(image, x: legend.x, y: legend.y + legend.height + 4, width: 100, height: 200) == 0)
    }

    @Test func theWrittenPNGHoldsTheRenderedPixels() throws {
        let scratch = try ReportScratch()
        let records = (1...50).map {
            record(epoch: 1, iters: $0, totalIters: $0, base: 1 + sin(Double($0) / 5))
        }
        let url = scratch.file("losses.png")
        try LossPlot.write(records, datasetSize: 50, modelName: "m", width: 640, height: 400, to: url)
        let rendered = try LossPlot.render(records, datasetSize: 50, modelName: "m", width: 640, height: 400)
        #expect(try loadPNG(url) == rendered)
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.url.path) == ["losses.png"])
    }

    @Test func anEmptyLogStillDrawsAPlot() throws {
        let image = try LossPlot.render([], datasetSize: 10, modelName: "new", width: 600, height: 400)
        let frame = PlotFrame([], datasetSize: 10, width: 600, height: 400)
        #expect(
            inked(
                image, x: frame.left + 2, y: frame.top + 2, width: frame.right - frame.left - 4,
                height: frame.bottom - frame.top - 4) > 0)
    }

    @Test func aHundredThousandRecordsRenderInUnderASecond() throws {
        var random = SplitMix64(seed: 3)
        let records = (1...100_000).map { i in
            LossRecord(
                epoch: (i - 1) / 1000 + 1, iters: (i - 1) % 1000 + 1, totalIters: i, lr: 0.0002,
                losses: (0..<8).map { Double($0) * 0.3 + random.uniform() })
        }
        _ = try LossPlot.render(Array(records.prefix(10)), datasetSize: 1000, modelName: "warm-up")
        let clock = ContinuousClock()
        let elapsed = try clock.measure {
            _ = try LossPlot.render(records, datasetSize: 1000, modelName: "many")
        }
        print("LossPlot.render of 100000 records: \(elapsed)")
        #expect(elapsed < .seconds(1))
    }
}

@Suite struct SampleGridTests {
    /// A [1, 3, h, w] tensor whose values differ per tile, channel and pixel, in [-1, 1].
    private func tile(_ index: Int, width: Int = 24, height: Int = 16) -> Tensor {
        let t = Tensor(shape: [1, 3, height, width])
        for i in 0..<t.count { t.data[i] = Float((i * 7 + index * 53) % 255) / 127 - 1 }
        return t
    }

    @Test func tilesKeepTheirPixelsAndLabelsAreDrawn() throws {
        let names = [["real_A", "fake_B", "rec_A", "idt_B"], ["real_B", "fake_A", "rec_B", "idt_A"]]
        let rows = (0..<2).map { r in (0..<4).map { tile(r * 4 + $0) } }
        let image = try SampleGrid.render(rows: rows, labels: names)
        let widest = try names.joined().map { try TextMask($0, size: 13).width }.max()!
        let layout = GridLayout(
            tileWidth: 24, tileHeight: 16, columns: 4, rows: 2, widestLabel: widest, hasTitle: false)
        #expect(image.width == layout.width && image.height == layout.height)
        #expect(layout.cellWidth > 24)

        for r in 0..<2 {
            for c in 0..<4 {
                let origin = layout.tileOrigin(row: r, column: c)
                let t = rows[r][c]
                for y in 0..<16 {
                    for x in 0..<24 {
                        let expected = (0..<3).map { ch in
                            UInt8(((t.data[ch * 384 + y * 24 + x] + 1) * 127.5).rounded(.toNearestOrEven))
                        }
                        let pixel = image[origin.x + x, origin.y + y]
                        #expect([pixel.r, pixel.g, pixel.b] == expected)
                    }
                }
                // White around the tile, a label under it.
                #expect(image[origin.x - 1, origin.y] == .white && image[origin.x, origin.y - 1] == .white)
                #expect(inked(image, x: origin.x - 4, y: origin.y + 16, width: 32, height: GridLayout.labelHeight) > 20)
            }
        }
    }

    @Test func theGridIsWrittenAsAPNGOfItsSize() throws {
        let scratch = try ReportScratch()
        let url = scratch.file(SampleGrid.fileName(epoch: 3, iters: 400))
        #expect(url.lastPathComponent == "epoch003_iter000400.png")
        let rows = [[tile(0, width: 64, height: 48), tile(1, width: 64, height: 48)]]
        try SampleGrid.write(rows: rows, labels: [["real_A", "fake_B"]], title: "epoch 3, iteration 400", to: url)
        let loaded = try loadPNG(url)
        let layout = GridLayout(tileWidth: 64, tileHeight: 48, columns: 2, rows: 1, widestLabel: 0, hasTitle: true)
        #expect(loaded.width == layout.width && loaded.height == layout.height)
        #expect(inked(loaded, x: 0, y: 0, width: loaded.width, height: GridLayout.titleHeight) > 50)
    }

    @Test func mismatchedImagesOrLabelsAreRefused() {
        #expect(throws: ReportError.self) { try SampleGrid.render(rows: [[tile(0)]], labels: [["a", "b"]]) }
        #expect(throws: ReportError.self) {
            try SampleGrid.render(rows: [[tile(0), tile(1, width: 8)]], labels: [["a", "b"]])
        }
        #expect(throws: ReportError.self) { try SampleGrid.render(rows: [], labels: []) }
    }
}

@Suite struct TrainingPageTests {
    @Test func thePageLinksOnlyFilesThatExistAndListsGridsNewestFirst() throws {
        let scratch = try ReportScratch()
        let folder = scratch.file("horse2zebra/training")
        let report = try TrainingReport(
            folder: folder, modelName: "horse<2>zebra", datasetSize: 1000,
            options: ["lambda_A": "10.0", "netG": "resnet_9blocks", "name": "a&b"])
        let tiles = [[Tensor(shape: [1, 3, 16, 16]), Tensor(shape: [1, 3, 16, 16])]]
        let labels = [["real_A", "fake_B"]]
        let taken = [(1, 400), (2, 100), (1, 900)]
        for (n, (epoch, iters)) in taken.enumerated() {
            try report.record(record(epoch: epoch, iters: iters, totalIters: (n + 1) * 100))
            try report.addSamples(rows: tiles, labels: labels, epoch: epoch, iters: iters)
        }
        // A stray file in samples/ is not a grid.
        try Data().write(to: folder.appending(path: "samples/notes.txt"))
        try TrainingPage.write(
            folder: folder, modelName: report.modelName, latest: report.log.records.last,
            options: report.options)

        let page = try String(contentsOf: folder.appending(path: "index.html"), encoding: .utf8)
        let links = try page.matches(of: Regex(#"(?:src|href)="([^"]*)""#)).map { String($0.output[1].substring!) }
        #expect(
            Set(links) == [
                "losses.png", "samples/epoch002_iter000100.png", "samples/epoch001_iter000900.png",
                "samples/epoch001_iter000400.png",
            ])
        for link in links {
            #expect(!link.hasPrefix("/") && !link.contains(".."))
            #expect(FileManager.default.fileExists(atPath: folder.appending(path: link).path), "\(link)")
        }
        let captions = ["epoch 2, iteration 100", "epoch 1, iteration 900", "epoch 1, iteration 400"]
        let positions = try captions.map { try #require(page.range(of: "<h3>\($0)</h3>")).lowerBound }
        #expect(positions == positions.sorted())
        #expect(page.contains("<h1>horse&lt;2&gt;zebra</h1>"))
        #expect(page.contains("<td>name</td><td>a&amp;b</td>"))
        #expect(page.contains("epoch 1, iteration 900 of the epoch, 300 images in all"))
        #expect(
            try FileManager.default.contentsOfDirectory(atPath: folder.path).sorted() == [
                "index.html", "loss_log.jsonl", "losses.png", "samples",
            ])
    }

    @Test func aPageBeforeAnyPlotLinksNoPlot() throws {
        let scratch = try ReportScratch()
        try TrainingPage.write(folder: scratch.url, modelName: "m", latest: nil, options: [:])
        let page = try String(contentsOf: scratch.file("index.html"), encoding: .utf8)
        #expect(!page.contains("<img"))
        #expect(page.contains("no losses logged yet"))
    }
}
