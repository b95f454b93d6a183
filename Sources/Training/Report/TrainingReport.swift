import Foundation
import Tensor

/// The report of one training run, in `<models-dir>/<name>/training/`:
/// `loss_log.jsonl`, `losses.png`, `samples/epochEEE_iterIIIIII.png` and `index.html`.
public final class TrainingReport {
    public let folder: URL
    public let modelName: String
    /// Images per epoch, which places each logged record within its epoch on the plot.
    public let datasetSize: Int
    /// Shown on the page, as the reference prints its options.
    public let options: [String: String]
    public let log: LossLog

    /// Creates the folder when needed and opens its loss log.
    public init(folder: URL, modelName: String, datasetSize: Int, options: [String: String]) throws {
        try FileManager.default.createDirectory(
            at: folder.appending(path: TrainingPage.samplesFolder), withIntermediateDirectories: true)
        self.folder = folder
        self.modelName = modelName
        self.datasetSize = datasetSize
        self.options = options
        log = try LossLog(url: folder.appending(path: "loss_log.jsonl"))
    }

    /// On resume from a checkpoint taken at `totalIters`: forget the records logged after it.
    public func resume(atTotalIters totalIters: Int) throws {
        try log.truncate(afterTotalIters: totalIters)
    }

    public func record(_ record: LossRecord) throws { try log.append(record) }

    /// Redraws the plot and the page from the log as it stands (at the end of a run).
    public func refresh() throws {
        try LossPlot.write(
            log.records, datasetSize: datasetSize, modelName: modelName,
            to: folder.appending(path: TrainingPage.plotFile))
        try TrainingPage.write(folder: folder, modelName: modelName, latest: log.records.last, options: options)
    }

    /// Writes the grid for a sample taken `iters` images into `epoch`, then the plot and the page.
    public func addSamples(rows: [[Tensor]], labels: [[String]], epoch: Int, iters: Int) throws {
        let file = folder.appending(path: TrainingPage.samplesFolder).appending(
            path: SampleGrid.fileName(epoch: epoch, iters: iters))
        try SampleGrid.write(rows: rows, labels: labels, title: "epoch \(epoch), iteration \(iters)", to: file)
        try refresh()
    }
}
