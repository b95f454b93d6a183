import Foundation
import Testing

@testable import Control

#if canImport(Glibc)
    import Glibc
#endif

/// `translate` with `"progress": true` through the real daemon's socket: `{"id", "job",
/// "progress"}` lines, monotone, ending at 1, then the reply (docs/PROTOCOL.md).
@Suite struct ProgressTests {
    /// A 1353×900 photo: the tiny model takes about a second on it, long enough for several lines.
    static func photo(in files: TempDir) throws -> Data {
        let path = files.file("photo.png")
        let zoom = try runProcess(
            "/usr/bin/vips", ["zoom", repositoryRoot + "/examples/images/chelsea.png", path, "3", "3"])
        try #require(zoom.status == 0, "vips zoom failed: \(zoom.error)")
        return try #require(FileManager.default.contents(atPath: path))
    }

    /// Sends a translate and collects the lines before its reply.
    static func translate(_ client: ControlClient, _ image: Data, _ extra: [String: JSONValue]) throws -> (
        lines: [JSONValue], reply: ControlReply
    ) {
        var lines: [JSONValue] = []
        var fields = extra
        fields["direction"] = .string(tinyDirection)
        let reply = try client.call("translate", fields, payload: image) { lines.append($0.json) }
        return (lines, reply)
    }

    static func checkLines(_ lines: [JSONValue], _ reply: ControlReply, _ label: String) {
        #expect(reply.ok, "\(label): \(String(decoding: reply.line, as: UTF8.self))")
        let values = lines.compactMap { $0["progress"]?.number }
        #expect(values.count == lines.count && values.count >= 3, "\(label): \(values)")
        #expect(values.first == 0 && values.last == 1, "\(label): \(values)")
        #expect(values.contains { $0 > 0 && $0 < 1 }, "\(label): no value between 0 and 1: \(values)")
        #expect(zip(values, values.dropFirst()).allSatisfy { $1 - $0 >= 0.01 || $1 == 1 }, "\(label): \(values)")
        #expect(lines.allSatisfy { $0["id"]?.number == reply.json["id"]?.number }, "\(label): ids")
        #expect(lines.allSatisfy { $0["job"]?.string == reply.json["job"]?.string }, "\(label): job ids")
    }

    @Test func wholeAndStreamedImagesReportProgressBeforeTheirReply() throws {
        let daemon = try DaemonProcess()
        let files = TempDir("progress")
        let image = try Self.photo(in: files)
        let whole = try Self.translate(daemon.client(), image, ["progress": .bool(true)])
        Self.checkLines(whole.lines, whole.reply, "whole image")
        // 32 MiB is far below the whole-image pass's ~230 MiB: bands.
        let streamed = try Self.translate(
            daemon.client(), image, ["progress": .bool(true), "memory_limit": .number(Double(32 << 20))])
        Self.checkLines(streamed.lines, streamed.reply, "streamed")
        print("progress: whole \(whole.lines.count) lines, streamed \(streamed.lines.count) lines")

        let quiet = try Self.translate(daemon.client(), image, [:])
        #expect(quiet.reply.ok && quiet.lines.isEmpty, "no progress lines unless asked: \(quiet.lines)")
    }

    /// `ctl translate` draws a live line on a terminal and writes one plain line to a pipe.
    @Test func ctlTranslateShowsALiveLineOnATerminalOnly() throws {
        let daemon = try DaemonProcess()
        let binary = try #require(cyclegandBinary)
        let files = TempDir("ctl-progress")
        let input = files.file("photo.png")
        try Self.photo(in: files).write(to: URL(fileURLWithPath: input))
        let command = [binary, "ctl", "translate", input, files.file("tty.png"), "--direction", tinyDirection]
        // `script` gives the command a terminal and copies what it shows.
        let tty = try runProcess(
            "/usr/bin/script",
            ["-qec", (command + ["--socket", daemon.socketPath]).joined(separator: " "), "/dev/null"])
        #expect(tty.status == 0, "\(tty.output)")
        #expect(tty.output.contains("\r\u{1B}[K") && tty.output.contains("100 %"), "\(tty.output)")
        #expect(tty.output.contains(files.file("tty.png") + ": 1353×900"), "\(tty.output)")
        let pipe = try runProcess(
            binary,
            [
                "ctl", "translate", input, files.file("pipe.png"), "--direction", tinyDirection, "--socket",
                daemon.socketPath,
            ])
        #expect(pipe.status == 0 && !pipe.error.contains("\r") && !pipe.error.contains("%"), "\(pipe.error)")
        #expect(pipe.error.split(separator: "\n").count == 1, "\(pipe.error)")
    }

    /// The first value goes at once; then one a `interval` at most, only when it moved by `step`,
    /// never backwards; 1 once at the end.
    @Test func theThrottleKeepsLinesFewAndMonotone() async throws {
        let throttle = ProgressThrottle(interval: .milliseconds(100), step: 0.01)
        #expect(throttle.admit(0) == 0)
        #expect(throttle.admit(0.5) == nil, "too soon")
        try await Task.sleep(for: .milliseconds(120))
        #expect(throttle.admit(0.005) == nil, "moved too little")
        #expect(throttle.admit(0.3) == 0.3)
        try await Task.sleep(for: .milliseconds(120))
        #expect(throttle.admit(0.2) == nil, "backwards")
        #expect(throttle.admit(0.9) == 0.9)
        #expect(throttle.finish() == 1)
        #expect(throttle.finish() == nil && throttle.admit(1) == nil)
    }

    /// A client that hangs up mid-progress: its job is cancelled, the daemon serves on.
    @Test func aClientThatHangsUpMidProgressLeavesTheDaemonServing() throws {
        let daemon = try DaemonProcess()
        let files = TempDir("hangup")
        let image = try Self.photo(in: files)
        func jobs() throws -> [JSONValue] {
            guard case .array(let items) = try daemon.client().call("jobs").json["jobs"] else { return [] }
            return items
        }
        do {
            let client = try daemon.client()
            var request = Data(
                #"{"id":"h1","cmd":"translate","direction":"photo2test","progress":true,"memory_limit":33554432,"bytes":\#(image.count)}"#
                    .utf8)
            request.append(UInt8(ascii: "\n"))
            request.append(image)
            try client.writeAll(request)
            var seen: [Double] = []
            while seen.count < 2 {
                let line = try client.readReply()
                seen.append(try #require(line.json["progress"]?.number, "a progress line: \(line.json)"))
            }
            #expect(try jobs().count == 1)
        }  // The client hangs up here.

        // The job goes (cancelled at its next band), and the daemon answers others.
        let gone = Date().addingTimeInterval(20)
        while Date() < gone, try !jobs().isEmpty { usleep(50_000) }
        let left = try jobs()
        #expect(left.isEmpty, "the job is still listed: \(left)")
        #expect(try daemon.client().call("ping").ok)
        let again = try Self.translate(daemon.client(), image, ["progress": .bool(true)])
        Self.checkLines(again.lines, again.reply, "after a hang-up")
        #expect(daemon.process.isRunning)
        #expect(daemon.logText.contains("cancelled"), "the log says the job was cancelled:\n\(daemon.logText)")
    }

    /// The job id of the first progress line is what `cancel` takes: the translation stops.
    @Test func cancellingTheJobOfAProgressLineStopsIt() throws {
        let daemon = try DaemonProcess()
        let files = TempDir("cancel")
        let image = try Self.photo(in: files)
        let socketPath = daemon.socketPath
        var cancelled: JSONValue?
        let reply = try ControlClient(socketPath: socketPath).call(
            "translate", ["direction": .string(tinyDirection), "progress": .bool(true)], payload: image
        ) { line in
            // Once it runs: the whole-image pass stops after the layer that sees the cancel.
            guard cancelled == nil, (line.json["progress"]?.number ?? 0) > 0, let job = line.json["job"]?.string
            else { return }
            cancelled = try? ControlClient(socketPath: socketPath).call("cancel", ["job": .string(job)]).json
        }
        #expect(cancelled?["ok"]?.bool == true, "\(String(describing: cancelled))")
        #expect(reply.error?.code == "cancelled", "\(String(decoding: reply.line, as: UTF8.self))")
    }
}
