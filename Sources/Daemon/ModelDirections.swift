import Dispatch
import Foundation

/// The models the daemon offers and their reloads: the last scan of the catalog, a debounced
/// rescan when the models folder changes (a model import writes several files), and what a new
/// set of directions brings: their inbox folders, the translator's stale generators dropped,
/// a `directions_changed` event. Owns the timer of the pending reload. (The caller takes the files
/// already waiting in a new direction's inbox: `ReloadReply.added`.)
final class ModelDirections: @unchecked Sendable {
    private let catalog: ModelCatalog
    private let translator: Translator
    private let spool: Spool
    private let settings: Settings
    private let hub: EventHub
    private let queue = DispatchQueue(label: "cyclegand.models")
    private let lock = NSLock()
    // Guarded by `lock`.
    private var scan = ModelScan(models: [], directions: [])
    private var pending: DispatchWorkItem?

    /// Seconds the models folder must stay quiet before it is rescanned.
    static let quietSeconds = 0.5

    init(catalog: ModelCatalog, translator: Translator, spool: Spool, settings: Settings, hub: EventHub) {
        self.catalog = catalog
        self.translator = translator
        self.spool = spool
        self.settings = settings
        self.hub = hub
    }

    var folder: String? { catalog.modelsDirectory?.path }
    var models: [ModelInfo] { lock.withLock { scan.models } }
    var directions: [DirectionInfo] { lock.withLock { scan.directions } }
    var names: [String] { lock.withLock { scan.directions.map(\.name) } }
    func offers(_ direction: String) -> Bool { lock.withLock { scan.directions.contains { $0.name == direction } } }

    /// Rescans once the models folder has been quiet for a moment, then hands the result to `then`.
    func scheduleReload(then: @escaping @Sendable (ReloadReply) -> Void) {
        let work = DispatchWorkItem { [weak self] in
            guard let self else { return }
            then(reload(reason: "models folder changed"))
        }
        lock.withLock {
            pending?.cancel()
            pending = work
        }
        queue.asyncAfter(deadline: .now() + Self.quietSeconds, execute: work)
    }

    func cancelPending() {
        lock.withLock { pending }?.cancel()
    }

    /// Rescans the models folder; creates inboxes for new directions. A folder that cannot be
    /// read keeps the models loaded before.
    @discardableResult
    func reload(reason: String) -> ReloadReply {
        let log = settings.log
        let fresh: ModelScan
        do {
            fresh = try catalog.scan()
        } catch {
            log.error("cannot read the models folder (\(reason)): \(error); keeping the models loaded before")
            return ReloadReply(directions: names, added: [], removed: [])
        }
        let old = lock.withLock {
            defer { scan = fresh }
            return scan
        }
        for problem in fresh.problems { log.warning("model skipped: \(problem)") }
        let oldNames = Set(old.directions.map(\.name))
        let newNames = fresh.directions.map(\.name)
        for name in newNames {
            do {
                try spool.ensureDirection(name)
            } catch {
                log.error("cannot create the inbox for \(name): \(error)")
            }
        }
        translator.modelsChanged()
        let added = newNames.filter { !oldNames.contains($0) }
        let removed = oldNames.subtracting(newNames).sorted()
        if !added.isEmpty || !removed.isEmpty {
            let news = added.isEmpty ? "" : "; new: " + added.joined(separator: ", ")
            let gone = removed.isEmpty ? "" : "; gone: " + removed.joined(separator: ", ")
            log.notice("directions (\(reason)): \(newNames.joined(separator: ", "))\(news)\(gone)")
            hub.publish(DaemonEvent(kind: .directionsChanged, directions: newNames))
        }
        return ReloadReply(directions: newNames, added: added, removed: removed)
    }
}
