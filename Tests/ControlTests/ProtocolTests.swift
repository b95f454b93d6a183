import Control
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// docs/PROTOCOL.md against the real daemon: every command and every error code it can produce.
@Suite struct ProtocolTests {
    @Test func everyCommandAnswers() throws {
        let daemon = try DaemonProcess()
        let client = try daemon.client()

        #expect(try client.call("ping").json["pong"] == .bool(true))
        let version = try client.call("version")
        #expect(version.json["protocol"] == .number(2))
        #expect(version.json["version"]?.string?.isEmpty == false)

        let status = try client.call("status")
        #expect(status.ok)
        #expect(status.json["status"]?["queues"]?[tinyDirection] == .number(0))
        #expect((status.json["status"]?["memory"]?["resident_bytes"]?.number ?? 0) > 0)
        #expect(status.json["status"]?["training"]?["state"] == .string("idle"))

        let models = try client.call("models")
        #expect(
            models.json["models"]
                == .array([
                    .object([
                        "name": .string("tiny"), "directions": .array([.string(tinyDirection)]),
                        "path": .string(daemon.modelsPath + "/tiny"), "version": .number(1),
                    ])
                ]))
        let directions = try client.call("directions")
        #expect(directions.json["directions"]?.arrayValue?.first?["name"] == .string(tinyDirection))
        #expect(try client.call("jobs").json["jobs"] == .array([]))
        let reload = try client.call("reload")
        #expect(reload.json["directions"] == .array([.string(tinyDirection)]))

        let finetune = try client.call("finetune")
        #expect(finetune.error?.code == "bad_request")
        #expect(finetune.error?.message.contains("'model'") == true)
        let unknown = try client.call("fly")
        #expect(unknown.error?.code == "unknown_command")
        let cancel = try client.call("cancel", ["job": .string("j-none")])
        #expect(cancel.error?.code == "not_found")

        // The connection survived every error above.
        #expect(try client.call("ping").ok)

        let shutdown = try client.call("shutdown")
        #expect(shutdown.json["stopping"] == .bool(true))
        daemon.process.waitUntilExit()
        #expect(daemon.process.terminationStatus == 0)
        #expect(!FileManager.default.fileExists(atPath: daemon.socketPath), "the socket file is removed on exit")
    }

    @Test func translateWithPathsAndInline() throws {
        let daemon = try DaemonProcess()
        let files = TempDir("files")
        let input = try testPNG(width: 40, height: 24, in: files)
        let client = try daemon.client()

        let output = files.file("out.png")
        let reply = try client.call(
            "translate", ["direction": .string(tinyDirection), "input": .string(input), "output": .string(output)])
        #expect(reply.ok, "\(reply.error.map(\.description) ?? "")")
        #expect(reply.json["output"] == .string(output))
        #expect(reply.json["width"] == .number(40) && reply.json["height"] == .number(24))
        let written = try #require(FileManager.default.contents(atPath: output))
        #expect(pngSize(written)! == (40, 24))

        // The output now exists: refused, and nothing is overwritten.
        let again = try client.call(
            "translate", ["direction": .string(tinyDirection), "input": .string(input), "output": .string(output)])
        #expect(again.error?.code == "bad_request")
        #expect(FileManager.default.contents(atPath: output) == written)

        // Inline: the image goes in as bytes and comes back as bytes, the same pixels as the file form.
        let inline = try client.call(
            "translate", ["direction": .string(tinyDirection), "name": .string("x.png")],
            payload: FileManager.default.contents(atPath: input))
        #expect(inline.ok)
        #expect(inline.json["bytes"]?.number == Double(inline.payload?.count ?? -1))
        #expect(pngSize(try #require(inline.payload))! == (40, 24))

        // JPEG by the output's extension.
        let jpeg = try client.call(
            "translate",
            ["direction": .string(tinyDirection), "input": .string(input), "output": .string(files.file("out.jpg"))])
        #expect(jpeg.json["format"] == .string("jpeg"))
        #expect(FileManager.default.contents(atPath: files.file("out.jpg"))?.prefix(2) == Data([0xFF, 0xD8]))
    }

    @Test func errorCodes() throws {
        let daemon = try DaemonProcess()
        let files = TempDir("errors")
        let input = try testPNG(width: 16, height: 16, in: files)
        let client = try daemon.client()
        func code(_ line: String) throws -> String? {
            try client.send(line: Data(line.utf8))
            return try client.readReply().error?.code
        }
        #expect(try code("not json") == "bad_request")
        #expect(try code("[1,2]") == "bad_request")
        #expect(try code(#"{"cmd":"ping"}"#) == "bad_request")
        #expect(try code(#"{"id":true,"cmd":"ping"}"#) == "bad_request")
        #expect(try code(#"{"id":1}"#) == "bad_request")
        #expect(try code(#"{"id":1,"cmd":7}"#) == "bad_request")
        #expect(
            try code(
                #"{"id":1,"cmd":"translate","direction":"\#(tinyDirection)","input":"\#(input)","quality":"high"}"#)
                == "bad_request")
        #expect(
            try code(
                #"{"id":1,"cmd":"translate","direction":"\#(tinyDirection)","input":"relative.png","output":"/tmp/x.png"}"#
            ) == "bad_request")
        #expect(try code(#"{"id":1,"cmd":"translate","input":"\#(input)"}"#) == "bad_request")
        #expect(try code(#"{"id":1,"cmd":"translate","direction":"\#(tinyDirection)"}"#) == "bad_request")
        #expect(
            try code(
                #"{"id":1,"cmd":"translate","direction":"nope2never","input":"\#(input)","output":"\#(files.file("o.png"))"}"#
            ) == "not_found")
        #expect(
            try code(
                #"{"id":1,"cmd":"translate","direction":"\#(tinyDirection)","input":"\#(files.file("missing.png"))","output":"\#(files.file("o.png"))"}"#
            ) == "not_found")
        #expect(
            try code(
                #"{"id":1,"cmd":"translate","direction":"\#(tinyDirection)","input":"\#(files.path)","output":"\#(files.file("o.png"))"}"#
            ) == "bad_request")

        // Ids come back as they were sent.
        try client.send(line: Data(#"{"id":"abc-1","cmd":"ping"}"#.utf8))
        #expect(try client.readReply().json["id"] == .string("abc-1"))
        try client.send(line: Data(#"{"id":42,"cmd":"nope"}"#.utf8))
        let reply = try client.readReply()
        #expect(reply.json["id"] == .number(42) && reply.error?.code == "unknown_command")

        // A payload that is not an image fails in the daemon with its own code; the connection goes on.
        let garbage = try client.call(
            "translate", ["direction": .string(tinyDirection)], payload: Data("not an image at all".utf8))
        #expect(garbage.error?.code == "unreadable_image")
        #expect(try client.call("ping").ok)

        // A payload announced on a command that takes none is skipped, the stream stays framed.
        #expect(try client.call("ping", [:], payload: Data(repeating: 0x0A, count: 100)).error?.code == "bad_request")
        #expect(try client.call("ping").ok)
    }

    @Test func tooLargeEndsOnlyThatConnection() throws {
        let daemon = try DaemonProcess()
        let bystander = try daemon.client()

        let long = try daemon.client()
        try long.writeAll(Data(repeating: UInt8(ascii: "x"), count: (1 << 20) + 10))
        #expect(try long.readReply().error?.code == "too_large")
        #expect(throws: (any Error).self) { _ = try long.call("ping") }

        let huge = try daemon.client()
        try huge.send(line: Data(#"{"id":1,"cmd":"translate","direction":"x","bytes":999999999999}"#.utf8))
        #expect(try huge.readReply().error?.code == "too_large")

        let broken = try daemon.client()
        try broken.send(line: Data(#"{"id":1,"cmd":"translate","bytes":"ten"}"#.utf8))
        #expect(try broken.readReply().error?.code == "bad_request")
        #expect(throws: (any Error).self) { _ = try broken.call("ping") }

        #expect(try bystander.call("ping").ok)
    }

    @Test func busyWhenTooManyClients() throws {
        let daemon = try DaemonProcess()
        var clients: [ControlClient] = []
        for _ in 0..<128 { clients.append(try daemon.client()) }
        // Every admitted client is served; make sure all 128 have been counted in.
        for client in clients { #expect(try client.call("ping").ok) }
        // The daemon says "busy" as soon as it accepts, and hangs up: the request may meet a
        // closed socket, and `call` then reads the refusal instead of reporting the broken pipe.
        let extra = try daemon.client()
        let reply = try extra.call("ping")
        #expect(reply.error?.code == "busy")
        clients.removeLast()
        // Once a slot is free again (the server notices the hang-up), a new client is served.
        var served = false
        for _ in 0..<100 where !served {
            usleep(20_000)
            served = (try? daemon.client().call("ping").ok) == true
        }
        #expect(served)
    }

    @Test func subscribeStreamsEvents() throws {
        let daemon = try DaemonProcess()
        let files = TempDir("events")
        let input = try testPNG(width: 20, height: 20, in: files)
        let subscriber = try daemon.client()
        let subscribed = try subscriber.call("subscribe")
        #expect(subscribed.json["subscribed"] == .bool(true))

        let worker = try daemon.client()
        let output = files.file("o.png")
        #expect(
            try worker.call(
                "translate", ["direction": .string(tinyDirection), "input": .string(input), "output": .string(output)]
            ).ok)
        let event = try subscriber.readReply()
        #expect(event.json["id"] == subscribed.json["id"])
        #expect(event.json["event"] == .string("image_done"))
        #expect(event.json["direction"] == .string(tinyDirection))

        // A subscriber that hangs up is forgotten; the daemon goes on.
        _ = consume subscriber
        #expect(try worker.call("ping").ok)
    }
}

extension JSONValue {
    var arrayValue: [JSONValue]? { if case .array(let items) = self { items } else { nil } }
}
