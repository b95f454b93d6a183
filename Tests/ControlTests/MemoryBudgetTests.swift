import Control
import Foundation
import Testing

/// The daemon's `memory_limit` bounds everything it holds at once; a request's own
/// `memory_limit` may lower its share, never lift it (docs/PROTOCOL.md, translate).
@Suite struct MemoryBudgetTests {
    @Test func aRequestsMemoryLimitCannotLiftTheDaemons() async throws {
        let limit = 256 << 20
        let daemon = try DaemonProcess(config: "memory_limit = \"256MiB\"\nworkers = 2\n")
        let files = TempDir("budget")
        // 2255×1500: the tiny model's whole-image pass holds about 520 MiB, twice the limit.
        let large = files.file("large.png")
        let zoom = try runProcess(
            "/usr/bin/vips", ["zoom", repositoryRoot + "/examples/images/chelsea.png", large, "5", "5"])
        try #require(zoom.status == 0, "vips zoom failed: \(zoom.error)")
        let input = try #require(FileManager.default.contents(atPath: large))
        // The generator loaded and the libraries warmed up before the baseline.
        let small = try #require(FileManager.default.contents(atPath: try testPNG(width: 64, height: 64, in: files)))
        #expect(try daemon.client().call("translate", ["direction": .string(tinyDirection)], payload: small).ok)
        let baseline = daemon.peakResidentBytes

        // Two large requests at once, one asking for no limit, one for far more than the daemon's.
        let socketPath = daemon.socketPath
        let asks: [Double] = [0, Double(8 << 30)]
        let sizes = try await withThrowingTaskGroup(of: (Int, Int).self) { group in
            for ask in asks {
                group.addTask {
                    try await onThread {
                        let reply = try ControlClient(socketPath: socketPath).call(
                            "translate", ["direction": .string(tinyDirection), "memory_limit": .number(ask)],
                            payload: input)
                        try #require(reply.ok, "translate failed: \(String(decoding: reply.line, as: UTF8.self))")
                        return try #require(reply.payload.flatMap(pngSize))
                    }
                }
            }
            var all: [(Int, Int)] = []
            for try await size in group { all.append(size) }
            return all
        }
        #expect(sizes.count == 2 && sizes.allSatisfy { $0 == (2255, 1500) })
        let growth = daemon.peakResidentBytes - baseline
        // Held to the limit (plus libvips' own buffers for decoding and encoding a 3.4 Mpixel PNG);
        // lifted, the two whole-image passes side by side would add over 1 GiB.
        #expect(growth < limit + (96 << 20), "peak resident memory grew by \(growth >> 20) MiB over 256 MiB")
        print("memory budget: peak resident grew by \(growth >> 20) MiB for two requests under 256 MiB")
    }
}
