import Foundation
import Models
import Tensor

/// The fixtures that tools/make_fixtures.py writes with PyTorch.
enum Fixtures {
    static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")

    static func files(in folder: String) throws -> [URL] {
        try FileManager.default.contentsOfDirectory(
            at: root.appendingPathComponent(folder), includingPropertiesForKeys: nil
        )
        .filter { $0.pathExtension == "safetensors" }
        .sorted { $0.lastPathComponent < $1.lastPathComponent }
    }

    static func open(_ url: URL) throws -> SafeTensorsFile { try SafeTensorsFile.open(url) }
}

extension SafeTensorsFile {
    func tensor(_ name: String) throws -> Tensor {
        guard let t = self[name] else { throw FixtureError(message: "\(url.lastPathComponent) has no tensor \(name)") }
        return t
    }

    func int(_ key: String) throws -> Int {
        guard let s = metadata[key], let v = Int(s) else {
            throw FixtureError(message: "\(url.lastPathComponent) has no integer metadata \(key)")
        }
        return v
    }
}

struct FixtureError: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}
