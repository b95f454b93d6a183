import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A reply as it came off the socket: the JSON line, its parsed form and any inline payload.
public struct ControlReply: Sendable {
    public var line: Data
    public var json: JSONValue
    public var payload: Data?

    public var ok: Bool { json["ok"]?.bool == true }
    /// The error body of a failed reply.
    public var error: ControlError? {
        guard !ok, let error = json["error"] else { return nil }
        return ControlError(
            code: error["code"]?.string ?? "internal", message: error["message"]?.string ?? "(no message)")
    }

    /// Decodes the reply (or one of its fields) into a protocol type, e.g. `DaemonStatus`.
    public func decode<T: Decodable>(_ type: T.Type, field: String? = nil) throws -> T {
        let value = field.map { json[$0] ?? .null } ?? json
        return try WireJSON.decoder().decode(type, from: try JSONEncoder().encode(value))
    }
}

/// A blocking client for the control socket (the CLI and tests use it): one connection, one
/// request at a time, inline payloads both ways.
public final class ControlClient {
    public let socketPath: String
    private let descriptor: CInt
    private var buffer = Data()
    private var nextID = 1

    /// Connects to the daemon; throws with the reason (no daemon, permission) in words.
    public init(socketPath: String) throws {
        self.socketPath = socketPath
        // The descriptor is stored only once connected: a throw after every property is set
        // runs deinit, which would close it a second time (and perhaps another thread's file
        // that got the number meanwhile).
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ControlSetupError("cannot create a socket: \(ListeningSocket.errnoText())") }
        do {
            try ListeningSocket.connect(fd, to: socketPath)
        } catch {
            let code = errno
            close(fd)
            switch code {
            case ENOENT, ECONNREFUSED:
                throw ControlSetupError(
                    "no cyclegand daemon is listening on \(socketPath); start one with `cyclegand serve` (or `systemctl --user start cyclegand`), or pass --socket"
                )
            case EACCES:
                throw ControlSetupError(
                    "permission denied on \(socketPath): the daemon serves its own user, root and its socket_group only"
                )
            default:
                throw ControlSetupError("cannot connect to \(socketPath): \(ListeningSocket.errnoText(code))")
            }
        }
        descriptor = fd
    }

    deinit { close(descriptor) }

    /// Sends one request (`cmd` plus `fields`, an `id` is added) and reads its reply. The lines
    /// that come before it, a translate's `{"id", "job", "progress"}` lines, go to `progress`.
    public func call(
        _ command: String, _ fields: [String: JSONValue] = [:], payload: Data? = nil,
        progress: (ControlReply) -> Void = { _ in }
    ) throws -> ControlReply {
        var object = fields
        object["id"] = .number(Double(nextID))
        object["cmd"] = .string(command)
        if let payload { object["bytes"] = .number(Double(payload.count)) }
        nextID += 1
        do {
            try send(line: try JSONEncoder().encode(JSONValue.object(object)), payload: payload)
        } catch {
            // A daemon that refuses a client (forbidden, busy) says why and hangs up, perhaps
            // before the request is written: its reason beats a broken pipe.
            if let refusal = try? readReply() { return refusal }
            throw error
        }
        while true {
            let reply = try readReply()
            guard reply.json["ok"] == nil, reply.json["progress"] != nil else { return reply }
            progress(reply)
        }
    }

    /// Writes a raw line (a newline is appended) and a payload; for tests and `--raw` use.
    public func send(line: Data, payload: Data? = nil) throws {
        var bytes = line
        bytes.append(UInt8(ascii: "\n"))
        if let payload { bytes.append(payload) }
        try writeAll(bytes)
    }

    public func writeAll(_ bytes: Data) throws {
        try bytes.withUnsafeBytes { raw in
            var done = 0
            while done < raw.count {
                let sent = Glibc.send(descriptor, raw.baseAddress! + done, raw.count - done, Int32(MSG_NOSIGNAL))
                if sent < 0, errno == EINTR { continue }
                guard sent > 0 else {
                    throw ControlSetupError("the daemon closed the connection: \(ListeningSocket.errnoText())")
                }
                done += sent
            }
        }
    }

    /// Reads the next line (a reply or an event) and the payload it announces.
    public func readReply() throws -> ControlReply {
        let line = try readLine()
        let json: JSONValue
        do {
            json = try JSONDecoder().decode(JSONValue.self, from: line)
        } catch {
            throw ControlSetupError(
                "the daemon sent a line that is not JSON: \(String(decoding: line.prefix(200), as: UTF8.self))")
        }
        var payload: Data?
        if let count = json["bytes"]?.number, count >= 0 {
            payload = try readExactly(Int(count))
        }
        return ControlReply(line: line, json: json, payload: payload)
    }

    private func readLine() throws -> Data {
        while true {
            if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = buffer[buffer.startIndex..<newline]
                buffer = Data(buffer[(newline + 1)...])
                return Data(line)
            }
            try fill()
        }
    }

    private func readExactly(_ count: Int) throws -> Data {
        while buffer.count < count { try fill() }
        let bytes = Data(buffer.prefix(count))
        buffer = Data(buffer.dropFirst(count))
        return bytes
    }

    private func fill() throws {
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let got = recv(descriptor, &chunk, chunk.count, 0)
            if got < 0, errno == EINTR { continue }
            guard got > 0 else { throw ControlSetupError("the daemon closed the connection") }
            buffer.append(contentsOf: chunk[0..<got])
            return
        }
    }
}
