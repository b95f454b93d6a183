import Foundation
import Models
import Testing
import Translation

@testable import Daemon

/// The generator cache: however many requests arrive at once, each generator is built once.
@Suite struct LoadOnceTests {
    /// Runs `body(n)` for n in 0..<count, each on a thread of its own, all at once.
    func concurrently(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
        let group = DispatchGroup()
        for n in 0..<count {
            group.enter()
            Thread.detachNewThread {
                body(n)
                group.leave()
            }
        }
        group.wait()
    }

    @Test func aBurstBuildsEachKeyOnceAndAnErrorIsSharedThenRetried() {
        let cache = LoadOnce<String> { key in
            Thread.sleep(forTimeInterval: 0.1)
            if key == "bad" { throw DaemonError(.noModel, "no bad") }
            return key.uppercased()
        }
        let results = Results()
        concurrently(32) { n in
            let key = ["a", "b", "bad"][n % 3]
            results.add(n, Result { try cache.value(for: key) })
        }
        #expect(cache.builds == 3)
        for (n, result) in results.all {
            let key = ["a", "b", "bad"][n % 3]
            if key == "bad" {
                #expect(throws: DaemonError(.noModel, "no bad")) { try result.get() }
            } else {
                #expect((try? result.get()) == key.uppercased())
            }
        }
        // Kept: no build. Failed: tried again.
        #expect((try? cache.value(for: "a")) == "A" && cache.builds == 3)
        #expect((try? cache.value(for: "bad")) == nil && cache.builds == 4)
        cache.removeAll()
        concurrently(32) { _ in _ = try? cache.value(for: "a") }
        #expect(cache.builds == 5)
    }

    @Test(.enabled(if: Binary.path != nil, "\(Binary.missing)"))
    func thirtyTwoFirstRequestsAfterAReloadBuildTheGeneratorOnce() throws {
        let dir = TempDir("translator")
        let models = dir.path + "/models"
        let (status, output) = try Binary.run([
            "import", Binary.tinyGenerator, "--name", "tiny", "--domains", "photo,test", "--as", "G_A",
            "--models-dir", models,
        ])
        try #require(status == 0, "cyclegand import failed: \(output)")
        let store = ModelStore(root: URL(fileURLWithPath: models))
        let translator = GeneratorTranslator(threads: 1) { direction, compute in
            // A slow build widens the window in which a racing cache would build twice.
            Thread.sleep(forTimeInterval: 0.2)
            return GeneratorTranslator.Served(
                generator: try store.generator(direction: direction, compute: compute), version: nil)
        }
        let input = dir.path + "/in.png"
        try PNG.make(width: 24, height: 16, seed: 3).write(to: URL(fileURLWithPath: input))
        let options = TranslationOptions(format: .png, quality: 90, memoryLimit: 1 << 30, maxPixels: 1 << 20)
        let results = Results()
        for round in 0..<2 {
            if round == 1 { translator.modelsChanged() }
            concurrently(32) { n in
                let output = dir.path + "/out-\(round)-\(n).png"
                results.add(
                    round * 32 + n,
                    Result {
                        _ = try translator.translate(
                            input: URL(fileURLWithPath: input), output: URL(fileURLWithPath: output),
                            direction: "photo2test", options: options, cancel: CancellationFlag())
                        return output
                    })
            }
            #expect(translator.generatorsBuilt == round + 1)
        }
        #expect(results.all.count == 64)
        for (_, result) in results.all {
            let path = try result.get()
            let size = PNG.check(try #require(FileManager.default.contents(atPath: path)))
            #expect(size?.width == 24 && size?.height == 16)
        }
    }
}

/// Results gathered from many threads.
final class Results: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [(Int, Result<String, any Error>)] = []

    func add(_ n: Int, _ result: Result<String, any Error>) { lock.withLock { values.append((n, result)) } }
    var all: [(Int, Result<String, any Error>)] { lock.withLock { values } }
}
