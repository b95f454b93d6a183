import ArgumentParser
import Control
import Daemon
import Foundation

// What every `cyclegand ctl` subcommand shares: the socket options, failures with exit codes,
// and the tables and human-readable sizes and durations they print.

/// Options every `ctl` subcommand takes.
struct CtlOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The daemon's control socket.", valueName: "path"))
    var socket: String?

    @Flag(help: "Print the daemon's JSON replies as they came instead of a readable summary.")
    var json = false

    var socketPath: String {
        socket ?? ProcessInfo.processInfo.environment["CYCLEGAND_SOCKET"] ?? DaemonConfig.defaults().socket
    }

    /// Connects, sends one request and fails with the documented exit code on an error reply.
    /// Lines before the reply (progress) go to `progress`.
    func call(
        _ command: String, _ fields: [String: JSONValue] = [:], payload: Data? = nil,
        progress: (ControlReply) -> Void = { _ in }
    ) throws -> ControlReply {
        let client = try connect()
        let reply: ControlReply
        do {
            reply = try client.call(command, fields, payload: payload, progress: progress)
        } catch {
            throw CtlFailure(code: 70, message: "\(error)")
        }
        try check(reply)
        return reply
    }

    func connect() throws -> ControlClient {
        do {
            return try ControlClient(socketPath: socketPath)
        } catch {
            throw CtlFailure(code: 69, message: "\(error)")
        }
    }

    func check(_ reply: ControlReply) throws {
        guard let error = reply.error else { return }
        if json { printLine(reply.line) }
        let code: Int32 =
            switch error.code {
            case "not_found": 2
            case "forbidden": 3
            case "busy": 4
            default: 1
            }
        throw CtlFailure(code: code, message: "\(error.code): \(error.message)")
    }

    /// Prints the raw reply with --json; returns true when it did.
    func printRaw(_ reply: ControlReply) -> Bool {
        if json { printLine(reply.line) }
        return json
    }

    /// Sends `command` and prints the list in the reply's `field` as a table (one `row` per
    /// item under `headers`), `empty` when there is none, or the raw reply with --json.
    func list<Item: Decodable>(
        _ command: String, field: String, as item: Item.Type, empty: String? = nil, headers: [String],
        row: (Item) -> [String]
    ) throws {
        try runCtl {
            let reply = try call(command)
            if printRaw(reply) { return }
            let items = try reply.decode([Item].self, field: field)
            if items.isEmpty, let empty {
                print(empty)
                return
            }
            print(table(headers, items.map(row)))
        }
    }
}

/// A live status line on a terminal's standard error ("translating cat.jpg … 42 %"), redrawn in
/// place; on anything else (a pipe, a log file) it writes nothing.
struct TerminalProgress {
    let label: String
    let isTerminal: Bool

    init(label: String, enabled: Bool = true) {
        self.label = label
        isTerminal = enabled && isatty(STDERR_FILENO) == 1
    }

    func show(_ fraction: Double) {
        guard isTerminal else { return }
        let percent = Int((min(max(fraction, 0), 1) * 100).rounded(.down))
        let filled = percent / 5
        let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: 20 - filled)
        FileHandle.standardError.write(Data("\r\u{1B}[K\(label) \(bar) \(percent) %".utf8))
    }

    /// Clears the line (the result is printed after it).
    func end() {
        guard isTerminal else { return }
        FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
    }
}

/// An error reply or a connection problem, with its exit code.
struct CtlFailure: Error, CustomStringConvertible {
    var code: Int32
    var message: String
    var description: String { message }
}

/// Runs a ctl body and turns failures into a one-line message on stderr and the exit code.
func runCtl(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let failure as CtlFailure {
        FileHandle.standardError.write(Data("cyclegand ctl: \(failure.message)\n".utf8))
        throw ExitCode(failure.code)
    }
}

func printLine(_ data: Data) {
    FileHandle.standardOutput.write(data + Data("\n".utf8))
}

/// Left-aligned columns with two spaces between them.
func table(_ header: [String], _ rows: [[String]]) -> String {
    let all = [header] + rows
    let widths = header.indices.map { column in all.map { $0[column].count }.max() ?? 0 }
    return all.map { row in
        row.enumerated().map { index, cell in
            index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
        }.joined(separator: "  ")
    }.joined(separator: "\n")
}

func humanBytes(_ bytes: UInt64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var value = Double(bytes)
    var unit = 0
    while value >= 1024, unit < units.count - 1 {
        value /= 1024
        unit += 1
    }
    return unit == 0 ? "\(bytes) B" : String(format: "%.1f %@", value, units[unit])
}

func humanDuration(_ seconds: Double) -> String {
    let total = Int(seconds)
    if total < 60 { return "\(total) s" }
    if total < 3600 { return "\(total / 60) min \(total % 60) s" }
    return "\(total / 3600) h \(total % 3600 / 60) min"
}

extension String {
    var nonEmpty: String? { isEmpty ? nil : self }
}
