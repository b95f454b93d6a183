import Foundation

/// Values built at most once per key, however many threads ask at the same time: the first
/// caller builds, the others wait for its result and share it (or its error). A generator costs
/// about 170 MB with its Winograd filters, so a burst of requests after a reload must not build
/// the same one several times.
///
/// `removeAll()` (the models changed) forgets what was built. A build that is running then still
/// answers the callers waiting for it, but its value is not kept: the next caller builds afresh
/// from the new models. A failed build is not kept either, so a later call tries again.
public final class LoadOnce<Value>: @unchecked Sendable {
    /// One build in progress and the callers waiting for it.
    private final class Flight {
        var result: Result<Value, any Error>?
    }

    private enum Entry {
        case building(Flight)
        case ready(Value)
    }

    private let build: @Sendable (String) throws -> Value
    private let condition = NSCondition()
    // Guarded by `condition`.
    private var entries: [String: Entry] = [:]
    private var generation = 0
    private var buildsStarted = 0

    public init(build: @escaping @Sendable (String) throws -> Value) {
        self.build = build
    }

    /// The value for `key`, built now (once) if it is not there yet.
    public func value(for key: String) throws -> Value {
        condition.lock()
        switch entries[key] {
        case .ready(let value):
            condition.unlock()
            return value
        case .building(let flight):
            while flight.result == nil { condition.wait() }
            condition.unlock()
            return try flight.result!.get()
        case nil:
            let flight = Flight()
            entries[key] = .building(flight)
            let startedIn = generation
            buildsStarted += 1
            condition.unlock()

            let result = Result { try build(key) }

            condition.lock()
            flight.result = result
            if generation == startedIn {
                switch result {
                case .success(let value): entries[key] = .ready(value)
                case .failure: entries[key] = nil
                }
            }
            condition.broadcast()
            condition.unlock()
            return try result.get()
        }
    }

    /// Forgets every value (and every build in progress, for later callers).
    public func removeAll() {
        condition.withLock {
            entries = [:]
            generation += 1
        }
    }

    /// Builds started since this cache was made (tests check that a burst builds once).
    public var builds: Int { condition.withLock { buildsStarted } }
}
