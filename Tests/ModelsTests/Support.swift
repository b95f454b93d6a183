import Foundation
import Tensor

/// Fixture files and scratch directories for the Models tests.
enum Fixtures {
    /// Tests/Fixtures/checkpoints/<name>, found from this source file's path.
    static func url(_ name: String, filePath: String = #filePath) -> URL {
        URL(fileURLWithPath: filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/checkpoints").appendingPathComponent(name)
    }

    /// weights/vintagify/G_A2B_epoch33.pth in the repository (fetched by `make`, git-ignored).
    static var vintagify: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("weights/vintagify/G_A2B_epoch33.pth")
    }
}

/// A fresh temporary directory, removed when the value is released.
final class ScratchDirectory {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent(
            "cyclegand-models-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(at: url) }

    func file(_ name: String) -> URL { url.appendingPathComponent(name) }
}

/// The values tools/make_checkpoint_fixtures.py's `arange` produces.
func arange(_ count: Int, scale: Double = 0.25) -> [Float] {
    (0..<count).map { Float(Double($0) * scale - 1) }
}
