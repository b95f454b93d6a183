import Foundation

/// Fans daemon events out to every current subscriber. Slow subscribers lose the oldest events
/// beyond a bound instead of growing the daemon's memory.
final class EventHub: @unchecked Sendable {
    private let lock = NSLock()
    private var subscribers: [UInt64: AsyncStream<DaemonEvent>.Continuation] = [:]
    private var nextKey: UInt64 = 0
    private var closed = false

    func subscribe() -> AsyncStream<DaemonEvent> {
        let (stream, continuation) = AsyncStream<DaemonEvent>.makeStream(bufferingPolicy: .bufferingNewest(1024))
        let key: UInt64? = lock.withLock {
            guard !closed else { return nil }
            nextKey += 1
            subscribers[nextKey] = continuation
            return nextKey
        }
        guard let key else {
            continuation.finish()
            return stream
        }
        continuation.onTermination = { [weak self] _ in
            self?.lock.withLock { self?.subscribers[key] = nil }
        }
        return stream
    }

    func publish(_ event: DaemonEvent) {
        let targets = lock.withLock { Array(subscribers.values) }
        for continuation in targets { continuation.yield(event) }
    }

    func finish() {
        let targets = lock.withLock {
            closed = true
            let t = Array(subscribers.values)
            subscribers = [:]
            return t
        }
        for continuation in targets { continuation.finish() }
    }
}
