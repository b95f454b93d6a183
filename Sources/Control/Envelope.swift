import Foundation

/// What every request line has in common, read leniently so that a malformed request still gets
/// an answer with its id: `id`, `cmd`, and the inline payload's size.
struct Envelope: Decodable, Sendable {
    /// What the `bytes` field says about an inline payload.
    enum Payload: Sendable, Equatable {
        case none
        case bytes(Int)
        /// Present but not a non-negative integer: the stream can no longer be framed.
        case invalid
    }

    var id: RequestID
    /// Why `id` is unusable, when it is.
    var idProblem: String?
    var cmd: String?
    var cmdProblem: String?
    var payload: Payload

    private enum Keys: String, CodingKey { case id, cmd, bytes }

    init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: Keys.self)
        if !container.contains(.id) {
            id = .null
            idProblem = "field 'id' is required (a string or a number that the reply echoes)"
        } else if let value = try? container.decode(RequestID.self, forKey: .id), value != .null {
            id = value
        } else {
            id = .null
            idProblem = "field 'id' should be a string or a number"
        }
        if !container.contains(.cmd) {
            cmdProblem = "field 'cmd' is required"
        } else if let value = try? container.decode(String.self, forKey: .cmd) {
            cmd = value
        } else {
            cmdProblem = "field 'cmd' should be a string"
        }
        if !container.contains(.bytes) || (try? container.decodeNil(forKey: .bytes)) == true {
            payload = .none
        } else if let count = try? container.decode(Int.self, forKey: .bytes), count >= 0 {
            payload = .bytes(count)
        } else {
            payload = .invalid
        }
    }

    /// Parses a request line; nil when it is not a JSON object at all.
    static func parse(_ line: Data) -> Envelope? {
        try? JSONDecoder().decode(Envelope.self, from: line)
    }
}
