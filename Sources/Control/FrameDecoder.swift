import Foundation
import NIOCore

/// One unit read off a connection.
enum InboundFrame: Sendable {
    /// A request line (without its newline), its envelope (nil when the line is not a JSON
    /// object) and the inline payload it announced, if any.
    case request(line: Data, envelope: Envelope?, payload: Data?)
    /// The stream can no longer be read (over-long line, payload over the limit, unframeable
    /// `bytes`): answer with this error and close the connection.
    case fatal(id: RequestID, ControlError)
}

/// Splits a connection's bytes into request lines and their inline payloads (docs/PROTOCOL.md,
/// "Inline payloads"). It never throws: what cannot be framed becomes a `.fatal` frame, after
/// which the rest of the stream is discarded.
struct FrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = InboundFrame

    let maxLineBytes: Int
    let maxPayloadBytes: Int

    /// A line whose payload has not fully arrived yet.
    private var pendingLine: (line: Data, envelope: Envelope, count: Int)?
    /// How far the current line has been searched for its newline (no rescans of a slow line).
    private var scanned = 0
    private var broken = false

    init(maxLineBytes: Int, maxPayloadBytes: Int) {
        self.maxLineBytes = maxLineBytes
        self.maxPayloadBytes = maxPayloadBytes
    }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        if broken {
            buffer.moveReaderIndex(to: buffer.writerIndex)
            return .needMoreData
        }
        if let pending = pendingLine {
            guard buffer.readableBytes >= pending.count else { return .needMoreData }
            let payload = Self.readData(&buffer, count: pending.count)
            pendingLine = nil
            context.fireChannelRead(
                wrapInboundOut(.request(line: pending.line, envelope: pending.envelope, payload: payload)))
            return .continue
        }
        let view = buffer.readableBytesView
        let searchStart = view.startIndex + min(scanned, view.count)
        guard let newline = view[searchStart...].firstIndex(of: UInt8(ascii: "\n")) else {
            scanned = view.count
            if view.count > maxLineBytes {
                return fail(context, &buffer, id: .null, tooLongLine(view.count))
            }
            return .needMoreData
        }
        scanned = 0
        let length = newline - view.startIndex
        if length > maxLineBytes {
            return fail(context, &buffer, id: .null, tooLongLine(length))
        }
        var line = Self.readData(&buffer, count: length)
        buffer.moveReaderIndex(forwardBy: 1)
        if line.last == UInt8(ascii: "\r") { line.removeLast() }
        if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { return .continue }

        let envelope = Envelope.parse(line)
        switch envelope?.payload {
        case .bytes(let count)?:
            guard count <= maxPayloadBytes else {
                return fail(
                    context, &buffer, id: envelope?.id ?? .null,
                    ControlError(
                        .tooLarge,
                        "inline payload of \(count) bytes is over the limit of \(maxPayloadBytes) bytes (control.max_inline_bytes); pass a file path instead or raise the limit"
                    )
                )
            }
            pendingLine = (line, envelope!, count)
        case .invalid?:
            return fail(
                context, &buffer, id: envelope?.id ?? .null,
                ControlError(
                    .badRequest,
                    "field 'bytes' should be a non-negative integer (the number of raw bytes after this line); the connection cannot be read further"
                )
            )
        case .none?, nil:
            context.fireChannelRead(wrapInboundOut(.request(line: line, envelope: envelope, payload: nil)))
        }
        return .continue
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws
        -> DecodingState
    {
        // A client that hangs up mid-line or mid-payload sent nothing we could answer.
        while try decode(context: context, buffer: &buffer) == .continue {}
        buffer.moveReaderIndex(to: buffer.writerIndex)
        return .needMoreData
    }

    private func tooLongLine(_ length: Int) -> ControlError {
        ControlError(
            .tooLarge,
            "request line of \(length)+ bytes is over the limit of \(maxLineBytes) bytes (control.max_line_bytes); send images as inline payloads or paths, not inside the JSON"
        )
    }

    private mutating func fail(
        _ context: ChannelHandlerContext, _ buffer: inout ByteBuffer, id: RequestID, _ error: ControlError
    ) -> DecodingState {
        broken = true
        buffer.moveReaderIndex(to: buffer.writerIndex)
        context.fireChannelRead(wrapInboundOut(.fatal(id: id, error)))
        return .needMoreData
    }

    private static func readData(_ buffer: inout ByteBuffer, count: Int) -> Data {
        guard count > 0 else { return Data() }
        let data = buffer.withUnsafeReadableBytes { Data(bytes: $0.baseAddress!, count: count) }
        buffer.moveReaderIndex(forwardBy: count)
        return data
    }
}
