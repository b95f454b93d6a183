import Daemon
import Foundation
import NIOCore
import Synchronization

/// Which progress values of one request become lines: the first (0, once it is queued), then
/// at most one per `interval` and only when the value moved by `step` since the last line, never
/// backwards, and 1 at the end. A 12 MP photo reports hundreds of bands; a client wants a bar.
final class ProgressThrottle: Sendable {
    let interval: Duration
    let step: Double
    private let state = Mutex<(sent: Double?, at: ContinuousClock.Instant)>((nil, .now))

    init(interval: Duration = .milliseconds(100), step: Double = 0.01) {
        self.interval = interval
        self.step = step
    }

    /// The value to send for `fraction` now, or nil to stay quiet.
    func admit(_ fraction: Double) -> Double? {
        state.withLock { state in
            let now = ContinuousClock.now
            let value = min(max(fraction, state.sent ?? 0, 0), 1)
            if let sent = state.sent {
                guard value - sent >= step, now - state.at >= interval, sent < 1 else { return nil }
            }
            state = (value, now)
            return value
        }
    }

    /// 1, unless it was the last value sent.
    func finish() -> Double? {
        state.withLock { state in
            guard state.sent != 1 else { return nil }
            state = (1, .now)
            return 1
        }
    }
}

/// Writes the progress lines of the request a connection is serving, in order, before its
/// reply, without ever blocking the daemon's worker threads that report: lines wait in a short
/// queue (the oldest dropped for a client that reads too slowly) for one writer task, started
/// with the first line. A client that has hung up makes `isBroken` true; nothing else changes.
final class ProgressLines: Sendable {
    private let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    private let writer = Mutex<(queue: AsyncStream<Data>.Continuation, task: Task<Void, Never>)?>(nil)
    private let broken = Mutex(false)

    init(outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>) {
        self.outbound = outbound
    }

    var isBroken: Bool { broken.withLock { $0 } }

    func send(_ line: Data) {
        writer.withLock { writer in
            if writer == nil {
                let (lines, queue) = AsyncStream.makeStream(of: Data.self, bufferingPolicy: .bufferingNewest(16))
                let task = Task {
                    for await line in lines where !self.isBroken {
                        do {
                            try await self.outbound.write(ByteBuffer(bytes: line))
                        } catch {
                            self.broken.withLock { $0 = true }
                        }
                    }
                }
                writer = (queue, task)
            }
            writer?.queue.yield(line)
        }
    }

    /// Waits until every line sent is written (or dropped); the reply may follow.
    func drain() async {
        let task = writer.withLock { writer -> Task<Void, Never>? in
            defer { writer = nil }
            writer?.queue.finish()
            return writer?.task
        }
        await task?.value
    }
}

/// A progress line: `{"id": <request id>, "job": "j12", "progress": 0.42}`.
struct ProgressLine: Encodable {
    var id: RequestID
    var job: String
    var progress: Double

    var encoded: Data { EncodedReply.encode(self, payload: nil).line }
}

/// True the first time only: one cancel for a client that hung up.
final class HangUp: Sendable {
    private let seen = Mutex(false)

    func first() -> Bool {
        seen.withLock { seen in
            defer { seen = true }
            return !seen
        }
    }
}
