import Foundation
import Models
import Tensor

/// Tests/Fixtures/<path>, found from this source file's path.
func fixture(_ path: String, filePath: String = #filePath) -> URL {
    URL(fileURLWithPath: filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures").appendingPathComponent(path)
}

/// The repository's top folder.
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

/// A fresh temporary directory, removed when the value is released.
final class Scratch {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("cyclegand-training-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(at: url) }

    func path(_ name: String) -> String { url.appendingPathComponent(name).path }
}

/// Every tensor of a safetensors fixture, copied out of the mapping.
func tensors(_ url: URL) throws -> [String: Tensor] {
    try SafeTensorsFile.open(url).tensors.mapValues { $0.copy() }
}
