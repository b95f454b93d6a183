import CInotifyTools
import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Watches inbox/ (every direction folder, recursively) and the models folder with
/// libinotifytools, on a thread of its own. Reports only files that are complete:
/// `IN_CLOSE_WRITE` (written in place) and `IN_MOVED_TO` (renamed or moved in), never
/// `IN_CREATE`; hidden and temporary names are ignored. A folder that appears is watched from
/// then on and scanned, because files can land in it before its watch exists. `IN_Q_OVERFLOW`
/// (events were lost) re-adds the watches of every folder and asks for a full rescan.
///
/// libinotifytools keeps process-wide state (one inotify descriptor, one table of watches) and
/// is not thread-safe. So there is at most one running `Watcher` per process: `start()` throws
/// while another one runs, and every call into the library happens on the watcher's thread,
/// from `inotifytools_initialize` to `inotifytools_cleanup`.
public final class Watcher: @unchecked Sendable {
    public enum Event: Sendable, Equatable {
        /// A complete file at `inbox/<direction>/<relativePath>` (closed after writing, or moved in).
        case file(direction: String, relativePath: String)
        /// A file found by scanning a new folder: it may still be being written.
        case found(direction: String, relativePath: String)
        /// A new folder directly under inbox/ (a direction, possibly without a model).
        case direction(String)
        /// Events were lost: scan every inbox.
        case rescan
        /// Something changed in the models folder.
        case modelsChanged
    }

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    private enum Target {
        case inboxRoot
        case inbox(direction: String, relative: String)
        case modelsRoot
        case model
    }

    /// Whether a watcher runs in this process (libinotifytools' state is process-wide).
    private static let running = Mutex(false)

    static let fileMask = Int32(IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)
    static let modelsMask = Int32(IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CLOSE_WRITE)
    /// IN_ATTRIB on the inbox root itself is how `stop()` wakes the thread (it touches the folder).
    static let rootMask = Int32(IN_CREATE | IN_MOVED_TO | IN_ATTRIB | IN_ONLYDIR)
    /// Seconds the thread blocks in libinotifytools before it looks at `stopping` again, in
    /// case the wake-up touch could not be made.
    static let pollSeconds = 1

    private let inboxRoot: String
    private let modelsDir: String?
    private let handler: @Sendable (Event) -> Void
    /// The thread's state: set up and read on the watcher thread only.
    private var targets: [String: Target] = [:]
    private let state = NSCondition()
    // Guarded by `state`.
    private var thread: Thread?
    private var stopping = false
    private var finished = false
    private var startResult: Result<Void, Failure>?

    public init(inboxRoot: String, modelsDir: String?, handler: @escaping @Sendable (Event) -> Void) {
        self.inboxRoot = inboxRoot
        self.modelsDir = modelsDir
        self.handler = handler
    }

    /// Starts the thread, which adds every watch before this returns. Events for files that
    /// arrive from now on are reported; the caller scans for what was there before. Throws when
    /// the watches cannot be added or another watcher runs in this process.
    public func start() throws {
        let claimed = Watcher.running.withLock { running in
            defer { running = true }
            return !running
        }
        guard claimed else {
            throw Failure(description: "another inbox watcher runs in this process (libinotifytools allows one)")
        }
        let thread = Thread { [self] in run() }
        thread.name = "cyclegand-watcher"
        state.withLock { self.thread = thread }
        thread.start()
        state.lock()
        while startResult == nil { state.wait() }
        let result = startResult!
        state.unlock()
        if case .failure = result { waitUntilFinished() }
        try result.get()
    }

    /// Stops the thread and waits for it to end.
    public func stop() {
        let started = state.withLock {
            stopping = true
            return thread != nil
        }
        guard started else { return }
        // An IN_ATTRIB on the watched inbox root wakes the thread at once.
        _ = utimes(inboxRoot, nil)
        waitUntilFinished()
    }

    private func waitUntilFinished() {
        state.lock()
        while !finished { state.wait() }
        thread = nil
        state.unlock()
    }

    // MARK: The watcher thread

    private func run() {
        let setUp = Result { try addInitialWatches() }
        state.withLock {
            startResult = setUp.mapError { Failure(description: "\($0)") }
            state.broadcast()
        }
        if case .success = setUp { loop() }
        inotifytools_cleanup()
        targets = [:]
        Watcher.running.withLock { $0 = false }
        state.withLock {
            finished = true
            state.broadcast()
        }
    }

    private func addInitialWatches() throws {
        guard inotifytools_initialize() != 0 else { throw libraryFailure("cannot start inotify for", inboxRoot) }
        try add(inboxRoot, .inboxRoot, mask: Watcher.rootMask)
        for direction in FS.list(inboxRoot)
        where FS.isDirectory(inboxRoot + "/" + direction) && !direction.hasPrefix(".") {
            addInboxTree(direction: direction, relative: "", scan: false)
        }
        if let modelsDir, FS.isDirectory(modelsDir) {
            try add(modelsDir, .modelsRoot, mask: Watcher.modelsMask | Int32(IN_ONLYDIR))
            for name in FS.list(modelsDir) where FS.isDirectory(modelsDir + "/" + name) {
                try? add(modelsDir + "/" + name, .model, mask: Watcher.modelsMask)
            }
        }
    }

    private func loop() {
        while !state.withLock({ stopping }) {
            guard let event = inotifytools_next_event(Watcher.pollSeconds) else { continue }
            let mask = event.pointee.mask
            var name = ""
            if event.pointee.len > 0 {
                let bytes = UnsafeRawPointer(event) + MemoryLayout<inotify_event>.size
                name = String(cString: bytes.assumingMemoryBound(to: CChar.self))
            }
            handle(wd: event.pointee.wd, mask: mask, name: name)
        }
    }

    private func libraryFailure(_ what: String, _ path: String) -> Failure {
        let code = inotifytools_error()
        return Failure(description: "\(what) \(path): \(String(cString: strerror(code == 0 ? errno : code)))")
    }

    private func add(_ path: String, _ target: Target, mask: Int32) throws {
        guard inotifytools_watch_file(path, mask) != 0 else { throw libraryFailure("cannot watch", path) }
        targets[path] = target
    }

    /// Watches `inbox/<direction>/<relative>` and every folder below it; with `scan`, reports
    /// the files already inside (they may have arrived before the watch).
    private func addInboxTree(direction: String, relative: String, scan: Bool) {
        let base = inboxRoot + "/" + direction
        var stack = [relative]
        while let rel = stack.popLast() {
            let path = rel.isEmpty ? base : base + "/" + rel
            guard (try? add(path, .inbox(direction: direction, relative: rel), mask: Watcher.fileMask)) != nil
            else { continue }
            for name in FS.list(path).sorted() where !IncomingName.isIgnored(name) {
                let child = rel.isEmpty ? name : rel + "/" + name
                if FS.isDirectory(base + "/" + child) {
                    stack.append(child)
                } else if scan && FS.isRegularFile(base + "/" + child) {
                    handler(.found(direction: direction, relativePath: child))
                }
            }
        }
    }

    /// The folder a watch descriptor stands for, as libinotifytools recorded it (without its
    /// trailing slash).
    private func folder(of wd: Int32) -> String? {
        guard let name = inotifytools_filename_from_wd(wd) else { return nil }
        let path = String(cString: name)
        return path.hasSuffix("/") && path.count > 1 ? String(path.dropLast()) : path
    }

    private func handle(wd: Int32, mask: UInt32, name: String) {
        if mask & UInt32(IN_Q_OVERFLOW) != 0 {
            // Folders made while events were lost have no watch yet: add them (re-adding a watch
            // keeps it), then let the daemon scan for the files.
            for direction in FS.list(inboxRoot)
            where FS.isDirectory(inboxRoot + "/" + direction) && !direction.hasPrefix(".") {
                addInboxTree(direction: direction, relative: "", scan: false)
            }
            handler(.rescan)
            return
        }
        guard let path = folder(of: wd) else { return }
        if mask & UInt32(IN_IGNORED) != 0 {
            targets[path] = nil
            return
        }
        guard let target = targets[path] else { return }
        let isDir = mask & UInt32(IN_ISDIR) != 0
        switch target {
        case .inboxRoot:
            guard isDir, !name.isEmpty, !name.hasPrefix("."), mask & UInt32(IN_CREATE | IN_MOVED_TO) != 0 else {
                return
            }
            addInboxTree(direction: name, relative: "", scan: true)
            handler(.direction(name))
        case .inbox(let direction, let relative):
            guard !name.isEmpty, !IncomingName.isIgnored(name) else { return }
            let child = relative.isEmpty ? name : relative + "/" + name
            if isDir {
                if mask & UInt32(IN_CREATE | IN_MOVED_TO) != 0 {
                    addInboxTree(direction: direction, relative: child, scan: true)
                }
            } else if mask & UInt32(IN_CLOSE_WRITE | IN_MOVED_TO) != 0 {
                handler(.file(direction: direction, relativePath: child))
            }
        case .modelsRoot:
            if isDir && mask & UInt32(IN_CREATE | IN_MOVED_TO) != 0, let modelsDir {
                try? add(modelsDir + "/" + name, .model, mask: Watcher.modelsMask)
            }
            handler(.modelsChanged)
        case .model:
            handler(.modelsChanged)
        }
    }
}
