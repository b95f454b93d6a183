import Foundation
import Tensor

/// Writes a stored model back out as the reference repository names its
/// checkpoints (`latest_net_G_A.pth`, ...), as PyTorch `.pth` or `.safetensors`,
/// in the layout it was imported from (generators trained with dropout get
/// their `conv_block.6` back).
public struct ModelExporter {
    public enum Format: String, CaseIterable, Sendable {
        case pth, safetensors
    }

    public let store: ModelStore

    public init(store: ModelStore) {
        self.store = store
    }

    /// Exports every network of `model` into `directory` (created if needed);
    /// returns the files written.
    @discardableResult
    public func export(model: String, to directory: URL, format: Format, prefix: String = "latest")
        throws -> [URL]
    {
        guard let manifest = try store.manifest(model) else {
            throw ModelStoreError("no model named \(model) in \(store.root.path)")
        }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var written: [URL] = []
        for role in manifest.roles {
            var weights = try store.weights(model: model, role: role)
            if manifest[role]?.architecture.dropout == true {
                weights = StateDictLayout.dropoutLayout(weights)
            }
            let ordered = Self.stateDictOrder(weights)
            let url = directory.appendingPathComponent(
                "\(prefix)_net_\(role.rawValue).\(format.rawValue)")
            switch format {
            case .pth: try TorchCheckpointWriter.write(ordered, to: url)
            case .safetensors: try SafeTensors.write(ordered, metadata: ["format": "pt"], to: url)
            }
            written.append(url)
        }
        return written
    }

    /// The order PyTorch's state_dict lists parameters: by module index path
    /// (numerically), weight before bias.
    static func stateDictOrder(_ weights: [String: Tensor]) -> [(name: String, tensor: Tensor)] {
        func key(_ name: String) -> [String] {
            name.split(separator: ".").map { part in
                if let n = Int(part) { return String(format: "%08d", n) }
                return part == "weight" ? "0weight" : part == "bias" ? "1bias" : String(part)
            }
        }
        return weights.sorted { key($0.key).lexicographicallyPrecedes(key($1.key)) }.map {
            ($0.key, $0.value)
        }
    }
}
