import Daemon
import Foundation

// The protocol's vocabulary (docs/PROTOCOL.md): request ids, error codes, and how replies become
// JSON lines. Client and server share it, so the CLI never re-spells a field name.

/// Version of docs/PROTOCOL.md this build speaks.
public let controlProtocolVersion = 2

/// A request id: any JSON string or number, echoed untouched (`null` when a request had none).
public enum RequestID: Codable, Sendable, Hashable, CustomStringConvertible {
    case string(String)
    case number(Double)
    case null

    public init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let text = try? container.decode(String.self) {
            self = .string(text)
        } else {
            let value = try container.decode(Double.self)
            guard value.isFinite else {
                throw DecodingError.dataCorruptedError(in: container, debugDescription: "an id must be a finite number")
            }
            self = .number(value)
        }
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .string(let text): try container.encode(text)
        // Integral ids go back as integers: a client that sent 7 compares against 7, not 7.0.
        case .number(let value) where value == value.rounded() && abs(value) < 1e15:
            try container.encode(Int64(value))
        case .number(let value): try container.encode(value)
        case .null: try container.encodeNil()
        }
    }

    public var description: String {
        switch self {
        case .string(let text): text
        case .number(let value): value == value.rounded() ? String(Int64(value)) : String(value)
        case .null: "null"
        }
    }
}

/// The error codes of docs/PROTOCOL.md. Translation failures pass the daemon's own codes through
/// (`DaemonError.Code`), so the code is kept as a string on the wire.
public enum ControlErrorCode: String, Sendable, CaseIterable {
    case badRequest = "bad_request"
    case unknownCommand = "unknown_command"
    case notFound = "not_found"
    case forbidden
    case busy
    case tooLarge = "too_large"
    case `internal`
    case unsupported
}

/// An error reply's body: a code and a message a person can act on.
public struct ControlError: Error, Codable, Sendable, Equatable, CustomStringConvertible {
    public var code: String
    public var message: String

    public init(_ code: ControlErrorCode, _ message: String) {
        self.code = code.rawValue
        self.message = message
    }

    public init(_ error: DaemonError) {
        code = error.code.rawValue
        message = error.message
    }

    public init(code: String, message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }
}

/// Encoders and decoders with the protocol's conventions: snake_case names, ISO 8601 dates.
enum WireJSON {
    static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.withoutEscapingSlashes, .sortedKeys]
        return encoder
    }

    static func decoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }

    /// Says what is wrong with a request field in words a client author can act on.
    static func describe(_ error: Error) -> String {
        guard let error = error as? DecodingError else { return "\(error)" }
        func field(_ path: [CodingKey]) -> String {
            let name = path.map { key in key.intValue.map { "[\($0)]" } ?? key.stringValue }
                .joined(separator: ".")
            return name.isEmpty ? "the request" : "field '\(snakeCase(name))'"
        }
        switch error {
        case .typeMismatch(let type, let context):
            return "\(field(context.codingPath)) should be \(typeName(type))"
        case .valueNotFound(let type, let context):
            return "\(field(context.codingPath)) should be \(typeName(type)), not null"
        case .keyNotFound(let key, let context):
            return "\(field(context.codingPath + [key])) is required"
        case .dataCorrupted(let context):
            return "\(field(context.codingPath)): \(context.debugDescription)"
        @unknown default:
            return "\(error)"
        }
    }

    private static func typeName(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: "a string"
        case is Bool.Type: "true or false"
        case is Int.Type, is UInt64.Type, is Int64.Type: "an integer"
        case is Double.Type: "a number"
        default: "\(type)".lowercased().hasPrefix("array") ? "an array" : "a valid \(type)"
        }
    }

    private static func snakeCase(_ name: String) -> String {
        var out = ""
        for character in name {
            if character.isUppercase {
                out += "_" + character.lowercased()
            } else {
                out.append(character)
            }
        }
        return out
    }
}

/// A reply line: `{"id":..,"ok":..}` merged with a body's own fields.
struct ReplyLine<Body: Encodable>: Encodable {
    var id: RequestID
    var ok: Bool
    var body: Body

    private enum Keys: String, CodingKey { case id, ok }

    func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: Keys.self)
        try container.encode(id, forKey: .id)
        try container.encode(ok, forKey: .ok)
        try body.encode(to: encoder)
    }
}

/// The body of an error reply.
struct ErrorBody: Encodable {
    var error: ControlError
}

/// A reply ready for the wire: its JSON line (with the trailing newline) and an optional payload.
public struct EncodedReply: Sendable {
    public var line: Data
    public var payload: Data?

    static func make<Body: Encodable>(id: RequestID, body: Body, payload: Data? = nil) -> EncodedReply {
        encode(ReplyLine(id: id, ok: true, body: body), payload: payload)
    }

    static func failure(id: RequestID, _ error: ControlError) -> EncodedReply {
        encode(ReplyLine(id: id, ok: false, body: ErrorBody(error: error)), payload: nil)
    }

    static func encode(_ value: some Encodable, payload: Data?) -> EncodedReply {
        do {
            var line = try WireJSON.encoder().encode(value)
            line.append(UInt8(ascii: "\n"))
            return EncodedReply(line: line, payload: payload)
        } catch {
            // Our own types always encode; this keeps a bug from becoming a silent hang-up.
            let text = #"{"id":null,"ok":false,"error":{"code":"internal","message":"could not encode reply"}}"#
            return EncodedReply(line: Data((text + "\n").utf8), payload: nil)
        }
    }
}
