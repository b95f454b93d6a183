import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Watches inbox/ (every direction folder, recursively) and the models folder with plain Linux
/// inotify, on a dedicated thread that polls with a timeout so it can be stopped. Reports only
/// files that are complete: `IN_CLOSE_WRITE` (written in place) and `IN_MOVED_TO` (renamed or
/// moved in), never `IN_CREATE`. New folders are watched and then scanned, because files can land
/// in them before the watch exists. `IN_Q_OVERFLOW` asks for a full rescan.
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

    private enum Target {
        case inboxRoot
        case inbox(direction: String, relative: String)
        case modelsRoot
        case model
    }

    private let inboxRoot: String
    private let modelsDir: String?
    private let handler: @Sendable (Event) -> Void
    // Only the watcher thread touches these after start().
    private var fd: Int32 = -1
    private var targets: [Int32: Target] = [:]
    private var wakePipe: [Int32] = [-1, -1]
    private var thread: Thread?
    private let stopped = NSCondition()
    private var running = false

    static let fileMask = UInt32(IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE_SELF | IN_MOVE_SELF)
    static let modelsMask = UInt32(IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CLOSE_WRITE)

    public init(inboxRoot: String, modelsDir: String?, handler: @escaping @Sendable (Event) -> Void) {
        self.inboxRoot = inboxRoot
        self.modelsDir = modelsDir
        self.handler = handler
    }

    deinit {
        if fd >= 0 { close(fd) }
        for p in wakePipe where p >= 0 { close(p) }
    }

    /// Adds every watch, then starts the reading thread. Events for files that arrive from now on
    /// are reported; the caller scans for what was there before.
    public func start() throws {
        fd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        guard fd >= 0 else { throw FS.fail("inotify_init1", inboxRoot) }
        guard pipe(&wakePipe) == 0 else { throw FS.fail("pipe", "watcher") }
        try add(inboxRoot, .inboxRoot, mask: UInt32(IN_CREATE | IN_MOVED_TO | IN_ONLYDIR))
        for direction in FS.list(inboxRoot)
        where FS.isDirectory(inboxRoot + "/" + direction) && !direction.hasPrefix(".") {
            addInboxTree(direction: direction, relative: "", scan: false)
        }
        if let modelsDir, FS.isDirectory(modelsDir) {
            try add(modelsDir, .modelsRoot, mask: Watcher.modelsMask | UInt32(IN_ONLYDIR))
            for name in FS.list(modelsDir) where FS.isDirectory(modelsDir + "/" + name) {
                try? add(modelsDir + "/" + name, .model, mask: Watcher.modelsMask)
            }
        }
        running = true
        let thread = Thread { [self] in loop() }
        thread.name = "cyclegand-watcher"
        self.thread = thread
        thread.start()
    }

    /// Stops the thread and waits for it to end.
    public func stop() {
        guard thread != nil else { return }
        var byte: UInt8 = 1
        _ = write(wakePipe[1], &byte, 1)
        stopped.lock()
        while running { stopped.wait() }
        stopped.unlock()
        thread = nil
    }

    private func add(_ path: String, _ target: Target, mask: UInt32) throws {
        let wd = inotify_add_watch(fd, path, mask)
        guard wd >= 0 else { throw FS.fail("inotify_add_watch", path) }
        targets[wd] = target
    }

    /// Watches `inbox/<direction>/<relative>` and every folder below it; with `scan`, reports
    /// the files already inside (they may have arrived before the watch).
    private func addInboxTree(direction: String, relative: String, scan: Bool) {
        let base = inboxRoot + "/" + direction
        var stack = [relative]
        while let rel = stack.popLast() {
            let path = rel.isEmpty ? base : base + "/" + rel
            guard
                (try? add(
                    path, .inbox(direction: direction, relative: rel), mask: Watcher.fileMask | UInt32(IN_ONLYDIR)))
                    != nil
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

    private func loop() {
        let bufferSize = 64 * 1024
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: bufferSize, alignment: 8)
        defer {
            buffer.deallocate()
            stopped.lock()
            running = false
            stopped.broadcast()
            stopped.unlock()
        }
        var fds = [
            pollfd(fd: fd, events: Int16(POLLIN), revents: 0),
            pollfd(fd: wakePipe[0], events: Int16(POLLIN), revents: 0),
        ]
        while true {
            let ready = poll(&fds, 2, 1000)
            if ready < 0 && errno != EINTR { return }
            if fds[1].revents != 0 { return }
            guard fds[0].revents != 0 else { continue }
            while true {
                let n = read(fd, buffer, bufferSize)
                if n <= 0 { break }
                var offset = 0
                while offset < n {
                    let event = buffer.load(fromByteOffset: offset, as: inotify_event.self)
                    let headerSize = MemoryLayout<inotify_event>.size
                    var name = ""
                    if event.len > 0 {
                        let namePointer = (buffer + offset + headerSize).assumingMemoryBound(to: CChar.self)
                        name = String(cString: namePointer)
                    }
                    handle(wd: event.wd, mask: event.mask, name: name)
                    offset += headerSize + Int(event.len)
                }
            }
        }
    }

    private func handle(wd: Int32, mask: UInt32, name: String) {
        if mask & UInt32(IN_Q_OVERFLOW) != 0 {
            handler(.rescan)
            return
        }
        if mask & UInt32(IN_IGNORED) != 0 {
            targets[wd] = nil
            return
        }
        guard let target = targets[wd] else { return }
        let isDir = mask & UInt32(IN_ISDIR) != 0
        switch target {
        case .inboxRoot:
            guard isDir, !name.hasPrefix(".") else { return }
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
