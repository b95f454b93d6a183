import CycleGAN
import Foundation
import Tensor

public enum NetworkKind: String, Codable, Sendable {
    case generator, discriminator
}

/// A network's weights under the reference names the CycleGAN module expects,
/// with what was found out about them on the way.
public struct NormalizedWeights: @unchecked Sendable {
    public var kind: NetworkKind
    public var generator: GeneratorArchitecture?
    public var discriminator: DiscriminatorArchitecture?
    public var weights: [String: Tensor]
    /// The generator was built with dropout (`conv_block.6` was its second
    /// conv); export writes that layout back.
    public var dropout: Bool
    /// What normalisation changed, for the user and for provenance.
    public var notes: [String]
}

public struct LayoutError: Error, CustomStringConvertible, Sendable {
    public let source: String
    public let problem: String
    public var description: String { "\(source): \(problem)" }
}

/// Maps the state-dict layouts found in the wild onto the reference names:
/// DataParallel's `module.` prefix, the vintagify wheel's `block` instead of
/// `conv_block`, generators built with dropout, and the InstanceNorm running
/// statistics that PyTorch < 0.4 saved.
public enum StateDictLayout {
    private static let leftoverSuffixes = [".running_mean", ".running_var", ".num_batches_tracked"]

    public static func normalize(_ raw: [String: Tensor], source: String) throws -> NormalizedWeights {
        var notes: [String] = []
        var weights: [String: Tensor] = [:]

        let prefixed = raw.keys.filter { $0.hasPrefix("module.") }.count
        if prefixed > 0 {
            notes.append("removed the DataParallel prefix module. from \(prefixed) keys")
        }
        var dropped = 0
        var renamed = 0
        for (key, tensor) in raw {
            var name = key.hasPrefix("module.") ? String(key.dropFirst("module.".count)) : key
            if leftoverSuffixes.contains(where: { name.hasSuffix($0) }) {
                dropped += 1
                continue
            }
            if let range = name.range(of: #"^model\.\d+\.block\."#, options: .regularExpression) {
                name =
                    name[range].replacingOccurrences(of: ".block.", with: ".conv_block.")
                    + name[range.upperBound...]
                renamed += 1
            }
            guard weights[name] == nil else {
                throw LayoutError(
                    source: source, problem: "two tensors map to \(name) (\(key) and another)")
            }
            weights[name] = tensor
        }
        if dropped > 0 {
            notes.append(
                "dropped \(dropped) InstanceNorm running statistics (running_mean/var, num_batches_tracked)"
            )
        }
        if renamed > 0 {
            notes.append("renamed \(renamed) keys from model.N.block.K to model.N.conv_block.K")
        }

        let dropout = try undoDropoutLayout(&weights, source: source)
        if dropout { notes.append("generator built with dropout: conv_block.6/.7 moved to .5/.6") }

        let shapes = weights.mapValues(\.shape)
        if let first = shapes["model.1.weight"], first.count == 4, first[2] == 7 {
            do {
                let arch = try GeneratorArchitecture.infer(from: shapes)
                return NormalizedWeights(
                    kind: .generator, generator: arch, discriminator: nil, weights: weights, dropout: dropout,
                    notes: notes)
            } catch {
                throw LayoutError(source: source, problem: "looks like a ResNet generator, but \(error)")
            }
        }
        if let first = shapes["model.0.weight"], first.count == 4, first[2] == 4 {
            do {
                let arch = try DiscriminatorArchitecture.infer(from: shapes)
                return NormalizedWeights(
                    kind: .discriminator, generator: nil, discriminator: arch, weights: weights,
                    dropout: false, notes: notes)
            } catch {
                throw LayoutError(
                    source: source, problem: "looks like a PatchGAN discriminator, but \(error)")
            }
        }
        let listing = shapes.sorted { $0.key < $1.key }.prefix(8).map { "\($0.key) \($0.value)" }
            .joined(separator: ", ")
        throw LayoutError(
            source: source,
            problem:
                "neither a CycleGAN ResNet generator (a 7×7 conv at model.1.weight) nor a PatchGAN discriminator "
                + "(a 4×4 conv at model.0.weight); its \(shapes.count) tensors begin: \(listing)")
    }

    /// A block built with dropout has its second conv at `conv_block.6` (and its
    /// norm at `.7`), where the plain layout has them at `.5` and `.6`.
    private static func undoDropoutLayout(_ weights: inout [String: Tensor], source: String) throws
        -> Bool
    {
        let pattern = #"^model\.(\d+)\.conv_block\.6\.weight$"#
        let dropoutBlocks = weights.filter {
            $0.key.range(of: pattern, options: .regularExpression) != nil && $0.value.rank == 4
        }
        .map { $0.key.split(separator: ".")[1] }
        guard !dropoutBlocks.isEmpty else { return false }
        let allBlocks = Set(
            weights.keys.filter { $0.contains(".conv_block.1.weight") }.map {
                $0.split(separator: ".")[1]
            })
        guard Set(dropoutBlocks) == allBlocks else {
            throw LayoutError(
                source: source,
                problem:
                    "some residual blocks have the dropout layout (a conv at conv_block.6) and some do not: "
                    + "blocks \(dropoutBlocks.sorted().joined(separator: ", ")) of \(allBlocks.sorted().joined(separator: ", "))"
            )
        }
        var out: [String: Tensor] = [:]
        for (key, t) in weights {
            var name = key
            for b in allBlocks {
                for (from, to) in [("6", "5"), ("7", "6")] {
                    let old = "model.\(b).conv_block.\(from)."
                    if key.hasPrefix(old) { name = "model.\(b).conv_block.\(to)." + key.dropFirst(old.count) }
                }
            }
            out[name] = t
        }
        weights = out
        return true
    }

    /// The reverse for export: the dropout layout's names for a plain-layout generator.
    public static func dropoutLayout(_ weights: [String: Tensor]) -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for (key, t) in weights {
            let parts = key.split(separator: ".", omittingEmptySubsequences: false)
            if parts.count >= 5, parts[0] == "model", parts[2] == "conv_block", let k = Int(parts[3]),
                k >= 5
            {
                out[(parts[0..<3] + ["\(k + 1)"] + parts[4...]).joined(separator: ".")] = t
            } else {
                out[key] = t
            }
        }
        return out
    }
}

/// Reads a weights file of any supported format: `.safetensors`, or a
/// PyTorch checkpoint (zip or legacy) under any other name.
public func loadStateDict(_ url: URL) throws -> [String: Tensor] {
    if url.pathExtension.lowercased() == "safetensors" {
        return try SafeTensorsFile.open(url).tensors
    }
    return try TorchCheckpoint.load(url)
}

/// The generator in a weights file (`.pth` of either format or `.safetensors`),
/// in any layout `StateDictLayout` understands. For `cyclegand translate --weights`.
public func loadGenerator(weights url: URL) throws -> ResnetGenerator {
    let normalized = try StateDictLayout.normalize(try loadStateDict(url), source: url.path)
    guard normalized.kind == .generator, let arch = normalized.generator else {
        throw LayoutError(source: url.path, problem: "holds a discriminator, not a generator")
    }
    return try ResnetGenerator(architecture: arch, weights: normalized.weights)
}
