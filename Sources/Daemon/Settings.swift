import Foundation
import Logging

/// The configuration and the logger in force. A reload replaces them; every part of the daemon
/// reads them here, so that a changed setting applies to the next image.
final class Settings: @unchecked Sendable {
    private let lock = NSLock()
    private var current: DaemonConfig
    private var logger: Logger

    init(config: DaemonConfig, logger: Logger) {
        self.current = config
        self.logger = logger
    }

    var config: DaemonConfig { lock.withLock { current } }
    var log: Logger { lock.withLock { logger } }

    /// Takes a re-read configuration, except the settings only a restart can change (the
    /// folders, the socket, the worker threads): those keep their running values and their
    /// names are returned.
    func apply(_ fresh: DaemonConfig) -> [String] {
        lock.withLock {
            var applied = fresh
            var kept: [String] = []
            func keep<T: Equatable>(_ key: WritableKeyPath<DaemonConfig, T>, _ name: String) {
                if applied[keyPath: key] != current[keyPath: key] { kept.append(name) }
                applied[keyPath: key] = current[keyPath: key]
            }
            keep(\.root, "root")
            keep(\.modelsDir, "models_dir")
            keep(\.socket, "socket")
            keep(\.socketGroup, "socket_group")
            keep(\.workers, "workers")
            keep(\.threads, "threads")
            current = applied
            logger.logLevel = applied.logLevel
            return kept
        }
    }
}
