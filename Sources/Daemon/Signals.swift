import Dispatch

#if canImport(Glibc)
    import Glibc
#endif

/// SIGTERM and SIGINT (stop) and SIGHUP (reload), turned from signals into calls on a queue of
/// their own. Owns its dispatch sources; `cancel()` ends them.
final class Signals: @unchecked Sendable {
    private let queue = DispatchQueue(label: "cyclegand.signals")
    private var sources: [DispatchSourceSignal] = []

    /// - Parameters:
    ///   - stop: called with the signal's name on SIGTERM or SIGINT.
    ///   - reload: called on SIGHUP.
    init(stop: @escaping @Sendable (String) -> Void, reload: @escaping @Sendable () -> Void) {
        for sig in [SIGTERM, SIGINT, SIGHUP] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: queue)
            source.setEventHandler {
                if sig == SIGHUP { reload() } else { stop(sig == SIGTERM ? "SIGTERM" : "SIGINT") }
            }
            source.resume()
            sources.append(source)
        }
    }

    func cancel() {
        for source in sources { source.cancel() }
    }
}
