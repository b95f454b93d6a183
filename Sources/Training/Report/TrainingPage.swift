import Foundation
import Models

/// `training/index.html`: what the reference's HTML visualizer shows, as one
/// page that opens from the disk with no server (every link is relative): the
/// model, where the run is, its options, the loss plot, and the sample grids,
/// newest first, each with its epoch and iteration.
public enum TrainingPage {
    /// A sample grid in `samples/`, named as `SampleGrid.fileName` names it.
    public struct Sample: Equatable, Sendable {
        /// Relative to the training folder, e.g. "samples/epoch003_iter000400.png".
        public var path: String
        public var epoch: Int
        public var iters: Int

        public init(path: String, epoch: Int, iters: Int) {
            self.path = path
            self.epoch = epoch
            self.iters = iters
        }

        /// The sample a grid file name stands for, or nil for any other file.
        init?(fileName: String) {
            guard fileName.hasPrefix("epoch"), fileName.hasSuffix(".png") else { return nil }
            let parts = fileName.dropFirst("epoch".count).dropLast(".png".count).split(separator: "_iter")
            guard parts.count == 2, let epoch = Int(parts[0]), let iters = Int(parts[1]) else { return nil }
            self.init(path: "samples/" + fileName, epoch: epoch, iters: iters)
        }
    }

    static let plotFile = "losses.png"
    static let samplesFolder = "samples"

    /// The grids in `folder/samples`, newest (latest epoch, then iteration) first.
    public static func samples(in folder: URL) -> [Sample] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.appending(path: samplesFolder).path))
        return (names ?? []).compactMap(Sample.init(fileName:))
            .sorted { ($0.epoch, $0.iters) > ($1.epoch, $1.iters) }
    }

    /// Writes `folder/index.html` atomically, linking the plot and the grids that are in `folder` now.
    public static func write(folder: URL, modelName: String, latest: LossRecord?, options: [String: String]) throws {
        let plotExists = FileManager.default.fileExists(atPath: folder.appending(path: plotFile).path)
        let page = html(
            modelName: modelName, latest: latest, options: options, plot: plotExists ? plotFile : nil,
            samples: samples(in: folder))
        try AtomicFile.write(Data(page.utf8), to: folder.appending(path: "index.html"))
    }

    static func html(
        modelName: String, latest: LossRecord?, options: [String: String], plot: String?, samples: [Sample]
    ) -> String {
        let name = escaped(modelName)
        var body = "<h1>\(name)</h1>\n"
        if let latest {
            let losses = zip(LossRecord.lossNames, latest.losses).map { "\($0) \(format($1))" }
            body += "<p class=\"summary\">epoch \(latest.epoch), iteration \(latest.iters) of the epoch, "
            body += "\(latest.totalIters) images in all; lr \(format(latest.lr)); "
            body += escaped(losses.joined(separator: ", ")) + "</p>\n"
        } else {
            body += "<p class=\"summary\">no losses logged yet</p>\n"
        }
        if !options.isEmpty {
            body += "<details open><summary>options</summary>\n<table class=\"options\">\n"
            for key in options.keys.sorted() {
                body += "<tr><td>\(escaped(key))</td><td>\(escaped(options[key]!))</td></tr>\n"
            }
            body += "</table>\n</details>\n"
        }
        if let plot {
            body += "<h2>losses</h2>\n<p><a href=\"\(plot)\"><img src=\"\(plot)\" alt=\"losses\"></a></p>\n"
        }
        if !samples.isEmpty { body += "<h2>samples</h2>\n" }
        for sample in samples {
            let path = escaped(sample.path)
            body += "<h3>epoch \(sample.epoch), iteration \(sample.iters)</h3>\n"
            body += "<p><a href=\"\(path)\"><img src=\"\(path)\" alt=\"epoch \(sample.epoch), "
            body += "iteration \(sample.iters)\"></a></p>\n"
        }
        return """
            <!DOCTYPE html>
            <html lang="en">
            <head>
            <meta charset="utf-8">
            <title>\(name): training</title>
            <style>
            body { font-family: sans-serif; margin: 1.5em; color: #282828; }
            img { max-width: 100%; }
            table.options td { padding: 0 1em 0 0; font-family: monospace; }
            </style>
            </head>
            <body>
            \(body)</body>
            </html>

            """
    }

    /// Four significant digits, as the reference prints losses (it uses three decimals).
    private static func format(_ value: Double) -> String { String(format: "%.4g", value) }

    private static func escaped(_ text: String) -> String {
        var out = ""
        for character in text {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            default: out.append(character)
            }
        }
        return out
    }
}
