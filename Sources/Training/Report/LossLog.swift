import Foundation
import Models

#if canImport(Glibc)
    import Glibc
#endif

/// The eight losses of one logged iteration, under the reference's names
/// (`loss_names` of its CycleGAN model), with where in the run they were taken.
///
/// JSON keys are the reference's: epoch, iters, total_iters, lr, D_A, G_A,
/// cycle_A, idt_A, D_B, G_B, cycle_B, idt_B, sec_per_iter, data_sec. A loss
/// that is not finite (a run that diverged) is written as null and read back as NaN.
public struct LossRecord: Codable, Equatable, Sendable {
    /// The epoch, counted from 1 as the reference does.
    public var epoch: Int
    /// Images seen so far in this epoch (the reference's `epoch_iter`).
    public var iters: Int
    /// Images seen so far in the whole run (the reference's `total_iters`).
    public var totalIters: Int
    /// The generators' learning rate at this iteration.
    public var lr: Double
    public var dA: Double
    public var gA: Double
    public var cycleA: Double
    public var idtA: Double
    public var dB: Double
    public var gB: Double
    public var cycleB: Double
    public var idtB: Double
    /// Computation time per image (the reference's `t_comp`).
    public var secPerIter: Double
    /// Data loading time per image (the reference's `t_data`).
    public var dataSec: Double

    /// The losses' names in the reference's order, which is also `losses`' order.
    public static let lossNames = ["D_A", "G_A", "cycle_A", "idt_A", "D_B", "G_B", "cycle_B", "idt_B"]

    public init(
        epoch: Int, iters: Int, totalIters: Int, lr: Double, losses: [Double], secPerIter: Double = 0,
        dataSec: Double = 0
    ) {
        precondition(losses.count == 8, "a LossRecord holds 8 losses, got \(losses.count)")
        self.epoch = epoch
        self.iters = iters
        self.totalIters = totalIters
        self.lr = lr
        (dA, gA, cycleA, idtA) = (losses[0], losses[1], losses[2], losses[3])
        (dB, gB, cycleB, idtB) = (losses[4], losses[5], losses[6], losses[7])
        self.secPerIter = secPerIter
        self.dataSec = dataSec
    }

    /// The eight losses in `lossNames` order.
    public var losses: [Double] { (0..<8).map(loss) }

    /// Loss `index` in `lossNames` order.
    public func loss(_ index: Int) -> Double {
        switch index {
        case 0: dA
        case 1: gA
        case 2: cycleA
        case 3: idtA
        case 4: dB
        case 5: gB
        case 6: cycleB
        default: idtB
        }
    }

    /// Where the reference's plot puts this record: epochs done, with the
    /// fraction of the current one (`epoch − 1 + iters / datasetSize`).
    public func fractionalEpoch(datasetSize: Int) -> Double {
        Double(epoch - 1) + Double(iters) / Double(max(datasetSize, 1))
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case epoch, iters
        case totalIters = "total_iters"
        case lr
        case dA = "D_A"
        case gA = "G_A"
        case cycleA = "cycle_A"
        case idtA = "idt_A"
        case dB = "D_B"
        case gB = "G_B"
        case cycleB = "cycle_B"
        case idtB = "idt_B"
        case secPerIter = "sec_per_iter"
        case dataSec = "data_sec"
    }

    /// The record's values in `CodingKeys` order.
    private var doubles: [(CodingKeys, Double)] {
        [
            (.lr, lr), (.dA, dA), (.gA, gA), (.cycleA, cycleA), (.idtA, idtA), (.dB, dB), (.gB, gB),
            (.cycleB, cycleB), (.idtB, idtB), (.secPerIter, secPerIter), (.dataSec, dataSec),
        ]
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func real(_ key: CodingKeys) throws -> Double { try c.decodeIfPresent(Double.self, forKey: key) ?? .nan }
        self.init(
            epoch: try c.decode(Int.self, forKey: .epoch), iters: try c.decode(Int.self, forKey: .iters),
            totalIters: try c.decode(Int.self, forKey: .totalIters), lr: try real(.lr),
            losses: try [CodingKeys.dA, .gA, .cycleA, .idtA, .dB, .gB, .cycleB, .idtB].map(real),
            secPerIter: try real(.secPerIter), dataSec: try real(.dataSec))
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(epoch, forKey: .epoch)
        try c.encode(iters, forKey: .iters)
        try c.encode(totalIters, forKey: .totalIters)
        for (key, value) in doubles {
            if value.isFinite { try c.encode(value, forKey: key) } else { try c.encodeNil(forKey: key) }
        }
    }

    /// One JSON object on one line, keys in the order above (JSONEncoder's
    /// order is unspecified), numbers in their shortest exact form.
    var jsonLine: String {
        var fields = [
            "\"epoch\":\(epoch)", "\"iters\":\(iters)", "\"total_iters\":\(totalIters)",
        ]
        for (key, value) in doubles {
            fields.append("\"\(key.rawValue)\":" + (value.isFinite ? "\(value)" : "null"))
        }
        return "{" + fields.joined(separator: ",") + "}\n"
    }
}

/// Why the loss log could not be read or written.
public struct LossLogError: Error, CustomStringConvertible, Sendable {
    public let path: String
    public let reason: String
    public var description: String { "\(path): \(reason)" }
}

/// `training/loss_log.jsonl`: one `LossRecord` per line, appended as training goes.
///
/// Each record is one `write` of one whole line, so a process killed mid-write
/// leaves at most a torn last line without its newline; reading drops it, and
/// opening the log for appending cuts it off first so the next record starts
/// on a line of its own. On resume the trainer calls `truncate(afterTotalIters:)`
/// with its checkpoint's counter, so the log reads as the uninterrupted run's would.
public final class LossLog {
    public let url: URL
    /// Every record in the log, kept for the plot (100 000 of them take about 15 MB).
    public private(set) var records: [LossRecord]
    private var descriptor: Int32

    /// Opens (creating) the log at `url` for appending, repairing a torn last line.
    public init(url: URL) throws {
        self.url = url
        let (records, torn) = try Self.read(url)
        if torn { try Self.rewrite(url, records) }
        self.records = records
        descriptor = try Self.openForAppend(url)
    }

    deinit { close(descriptor) }

    /// Appends `record` as one line.
    public func append(_ record: LossRecord) throws {
        let line = Array(record.jsonLine.utf8)
        let written = line.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
        guard written == line.count else {
            let reason =
                written < 0 ? String(cString: strerror(errno)) : "only \(written) of \(line.count) bytes written"
            throw LossLogError(path: url.path, reason: "cannot append a loss record: \(reason)")
        }
        records.append(record)
    }

    /// Keeps only the records with `totalIters <= totalIters` (those a
    /// checkpoint taken there had seen), rewriting the file atomically.
    public func truncate(afterTotalIters totalIters: Int) throws {
        let kept = records.filter { $0.totalIters <= totalIters }
        try Self.rewrite(url, kept)
        records = kept
        // The old descriptor appends to the file the rename replaced.
        close(descriptor)
        descriptor = try Self.openForAppend(url)
    }

    /// The records in the log at `url` (none when it does not exist), without a torn last line.
    public static func records(at url: URL) throws -> [LossRecord] { try read(url).records }

    /// The records, and whether a torn last line was dropped.
    private static func read(_ url: URL) throws -> (records: [LossRecord], torn: Bool) {
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch CocoaError.fileReadNoSuchFile {
            return ([], false)
        } catch {
            throw LossLogError(path: url.path, reason: "cannot read the loss log: \(error.localizedDescription)")
        }
        var lines = data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        // What follows the last newline: empty for a whole log, else a line cut short.
        let tail = lines.removeLast()
        let decoder = JSONDecoder()
        var records: [LossRecord] = []
        records.reserveCapacity(lines.count)
        for (number, line) in lines.enumerated() where !line.isEmpty {
            do {
                records.append(try decoder.decode(LossRecord.self, from: Data(line)))
            } catch {
                throw LossLogError(
                    path: url.path,
                    reason: "line \(number + 1) is not a loss record (\(error)); move the file aside to start a new log"
                )
            }
        }
        return (records, !tail.isEmpty)
    }

    private static func rewrite(_ url: URL, _ records: [LossRecord]) throws {
        try AtomicFile.write(Data(records.map(\.jsonLine).joined().utf8), to: url)
    }

    private static func openForAppend(_ url: URL) throws -> Int32 {
        let fd = open(url.path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw LossLogError(path: url.path, reason: "cannot open the loss log: \(String(cString: strerror(errno)))")
        }
        return fd
    }
}
