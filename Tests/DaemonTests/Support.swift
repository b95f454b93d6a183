import Foundation
import Logging

@testable import Daemon

/// A fresh folder under the system temp dir, removed when the value goes away.
final class TempDir: @unchecked Sendable {
    let path: String

    init(_ label: String = "daemon") {
        let base =
            FileManager.default.temporaryDirectory.path + "/cyclegand-test-\(label)-\(UUID().uuidString.prefix(8))"
        try! FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        path = base
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func write(_ relative: String, _ text: String) {
        let full = path + "/" + relative
        try! FileManager.default.createDirectory(
            atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try! Data(text.utf8).write(to: URL(fileURLWithPath: full))
    }

    func read(_ relative: String) -> String? {
        FileManager.default.contents(atPath: path + "/" + relative).map { String(decoding: $0, as: UTF8.self) }
    }

    /// Regular files below `relative`, as paths relative to it, sorted; hidden names (work
    /// journals, temporary outputs) only when asked.
    func files(_ relative: String, hidden: Bool = false) -> [String] {
        let base = path + "/" + relative
        guard let e = FileManager.default.enumerator(atPath: base) else { return [] }
        var out: [String] = []
        while let p = e.nextObject() as? String {
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: base + "/" + p, isDirectory: &isDir), !isDir.boolValue,
                hidden || !(p as NSString).lastPathComponent.hasPrefix(".")
            {
                out.append(p)
            }
        }
        return out.sorted()
    }
}

/// Copies the input to the output (upper-cased, so a test can tell a translation from a copy);
/// fails inputs whose content starts with "BAD"; can hold every call at a gate.
final class FakeTranslator: Translator, @unchecked Sendable {
    private let lock = NSCondition()
    private(set) var calls: [String] = []
    private var gateOpen = true
    private var waiting = 0

    func closeGate() { lock.withLock { gateOpen = false } }
    func openGate() {
        lock.lock()
        gateOpen = true
        lock.broadcast()
        lock.unlock()
    }
    /// Number of calls currently held at the gate.
    var held: Int { lock.withLock { waiting } }
    var callLog: [String] { lock.withLock { calls } }

    func translate(
        input: URL, output: URL, direction: String, options: TranslationOptions, cancel: CancellationFlag,
        progress: @escaping @Sendable (Double) -> Void
    ) throws -> TranslationResult {
        let data = try Data(contentsOf: input)
        let text = String(decoding: data, as: UTF8.self)
        lock.lock()
        calls.append(text)
        waiting += 1
        while !gateOpen { lock.wait() }
        waiting -= 1
        lock.unlock()
        if text.hasPrefix("BAD") { throw DaemonError(.unreadableImage, "fake: \(input.lastPathComponent) is bad") }
        try Data(text.uppercased().utf8).write(to: output)
        return TranslationResult(width: data.count, height: 1, milliseconds: 1)
    }
}

/// Directions from the folder names in a models dir: folder `a2b` offers `a2b`.
struct FolderCatalog: ModelCatalog {
    let dir: String
    var modelsDirectory: URL? { URL(fileURLWithPath: dir) }

    func scan() throws -> ModelScan {
        let names = FS.list(dir).filter { FS.isDirectory(dir + "/" + $0) }.sorted()
        return ModelScan(
            models: names.map { ModelInfo(name: $0, directions: [$0], path: dir + "/" + $0) },
            directions: names.map { DirectionInfo(name: $0, model: $0) })
    }
}

func quietLogger() -> Logger {
    var logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
    logger.logLevel = .critical
    return logger
}

/// Polls `condition` every 20 ms until it holds or `seconds` pass.
func eventually(_ seconds: Double = 20, _ condition: () async -> Bool) async -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if await condition() { return true }
        try? await Task.sleep(nanoseconds: 20_000_000)
    }
    return await condition()
}
