import Control
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Many clients, clients that misbehave, and a flood of garbage: the daemon answers every
/// well-framed line, drops only the connections that broke framing, and keeps its memory.
@Suite struct LoadTests {
    @Test func sixtyFourClientsTranslateAtOnce() async throws {
        let daemon = try DaemonProcess()
        let files = TempDir("many")
        // Distinct sizes, so that a reply delivered to the wrong client would show.
        var inputs: [Data] = []
        for index in 0..<64 {
            let path = try testPNG(width: 8 + index % 16, height: 8 + index / 16, in: files)
            inputs.append(try #require(FileManager.default.contents(atPath: path)))
        }
        let socketPath = daemon.socketPath
        let results = try await withThrowingTaskGroup(of: (Int, Int, Int, Bool).self) { group in
            for (index, input) in inputs.enumerated() {
                group.addTask {
                    try await onThread {
                        let client = try ControlClient(socketPath: socketPath)
                        let reply = try client.call(
                            "translate", ["direction": .string(tinyDirection), "name": .string("\(index).png")],
                            payload: input)
                        let size = reply.payload.flatMap(pngSize)
                        let consistent =
                            size.map {
                                $0.width == Int(reply.json["width"]?.number ?? -1)
                                    && $0.height == Int(reply.json["height"]?.number ?? -1)
                            } ?? false
                        return (index, size?.width ?? -1, size?.height ?? -1, reply.ok && consistent)
                    }
                }
            }
            var all: [(Int, Int, Int, Bool)] = []
            for try await result in group { all.append(result) }
            return all
        }
        #expect(results.count == 64)
        for (index, width, height, ok) in results {
            #expect(ok, "client \(index)")
            #expect(
                width == 8 + index % 16 && height == 8 + index / 16, "client \(index) got a \(width)x\(height) image")
        }
    }

    @Test func clientsThatHangUpMidRequest() throws {
        let daemon = try DaemonProcess()
        let files = TempDir("hangup")
        let input = try #require(FileManager.default.contents(atPath: try testPNG(width: 64, height: 64, in: files)))

        // Half a line, then gone.
        try daemon.client().writeAll(Data(#"{"id":1,"cmd":"pi"#.utf8))
        // A payload announced, half of it sent, then gone.
        try daemon.client().send(
            line: Data(#"{"id":1,"cmd":"translate","direction":"\#(tinyDirection)","bytes":\#(input.count)}"#.utf8),
            payload: input.prefix(input.count / 2))
        // A whole request, gone before the reply.
        try daemon.client().send(
            line: Data(#"{"id":1,"cmd":"translate","direction":"\#(tinyDirection)","bytes":\#(input.count)}"#.utf8),
            payload: input)
        // A subscriber, gone.
        _ = try daemon.client().call("subscribe")

        let client = try daemon.client()
        #expect(try client.call("ping").ok)
        let reply = try client.call("translate", ["direction": .string(tinyDirection)], payload: input)
        #expect(reply.ok)
        #expect(daemon.process.isRunning)
    }

    @Test func tenThousandMalformedLines() throws {
        let daemon = try DaemonProcess()
        var generator = SeededGenerator(seed: 20261122)
        let templates = [
            #"{"id":1,"cmd":"translate","direction":5}"#, #"{"id":[1],"cmd":"ping"}"#, #"{"id":1,"cmd":null}"#,
            #"{"id":1,"cmd":"translate","quality":{"a":1},"direction":"x","input":"/etc/passwd"}"#,
            #"{"id":1,"cmd":"cancel","job":12}"#,
            #"{"id":1,"cmd":"status""#, #"{"id":1,"cmd":"\u12"}"#, #"[[[[[[[[[[]]]]]]]]]]"#, "null",
            "\"just a string\"",
            #"{"id":1e999,"cmd":"ping"}"#,
            #"{"id":1,"cmd":"translate","input":"../../etc/shadow","output":"/etc/x","direction":"y"}"#,
        ]
        var client = try daemon.client()
        var answered = 0
        var sentWellFramed = 0
        var baseline = 0
        for index in 0..<10_000 {
            if index == 1_000 { baseline = daemon.residentBytes }
            let line: Data
            switch index % 10 {
            case 0..<4:
                // Random bytes without a newline, not starting with blank space.
                let count = Int.random(in: 1...300, using: &generator)
                line = Data(
                    (0..<count).map { _ in
                        var byte = UInt8.random(in: 0...255, using: &generator)
                        if byte == 0x0A { byte = 0x41 }
                        return byte
                    }.enumerated().map {
                        $0.offset == 0 && ($0.element == 0x20 || $0.element == 0x09 || $0.element == 0x0D)
                            ? 0x41 : $0.element
                    })
            case 4..<8:
                line = Data(templates[Int.random(in: 0..<templates.count, using: &generator)].utf8)
            default:
                if index % 500 == 9 {
                    // Over-long: answered with too_large, then that connection ends.
                    try client.writeAll(Data(repeating: UInt8(ascii: "{"), count: (1 << 20) + 1))
                    #expect(try client.readReply().error?.code == "too_large")
                    client = try daemon.client()
                    continue
                }
                line = Data(
                    #"{"id":\#(index),"cmd":"translate","direction":"\#(tinyDirection)","quality":"\#(index)"}"#.utf8)
            }
            try client.send(line: line)
            sentWellFramed += 1
            let reply = try client.readReply()
            if reply.json["ok"] != nil { answered += 1 }
        }
        #expect(answered == sentWellFramed, "every malformed line gets exactly one reply")
        #expect(try client.call("ping").ok)
        #expect(daemon.process.isRunning)
        let growth = daemon.residentBytes - baseline
        #expect(growth < 16 << 20, "resident memory grew by \(growth >> 10) KiB over 9,000 malformed lines")
    }
}

/// A small deterministic generator (SplitMix64), so a failing run can be replayed.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
