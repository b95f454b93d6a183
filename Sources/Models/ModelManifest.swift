import CycleGAN
import Foundation

/// The four networks of a CycleGAN model, named as the reference names them.
public enum NetworkRole: String, Codable, CaseIterable, Sendable, Comparable {
    case generatorA = "G_A"
    case generatorB = "G_B"
    case discriminatorA = "D_A"
    case discriminatorB = "D_B"

    public var kind: NetworkKind {
        self == .generatorA || self == .generatorB ? .generator : .discriminator
    }

    public static func < (a: NetworkRole, b: NetworkRole) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }
}

/// A network's architecture as model.json records it (flat, so that it reads
/// well as JSON): kind, channels, ngf/blocks or ndf/layers, norm, affine.
public struct NetworkArchitecture: Codable, Equatable, Sendable {
    public var kind: NetworkKind
    public var inputChannels: Int
    public var outputChannels: Int?
    public var ngf: Int?
    public var blocks: Int?
    public var ndf: Int?
    public var layers: Int?
    public var norm: String
    public var affine: Bool
    /// Generators trained with dropout (the layout export writes back).
    public var dropout: Bool?

    public init(_ g: GeneratorArchitecture, dropout: Bool) {
        kind = .generator
        inputChannels = g.inputChannels
        outputChannels = g.outputChannels
        ngf = g.ngf
        blocks = g.blocks
        norm = "instance"
        affine = g.affine
        self.dropout = dropout
    }

    public init(_ d: DiscriminatorArchitecture) {
        kind = .discriminator
        inputChannels = d.inputChannels
        ndf = d.ndf
        layers = d.layers
        norm = "instance"
        affine = d.affine
    }

    public var generator: GeneratorArchitecture? {
        guard kind == .generator, let ngf, let blocks else { return nil }
        return GeneratorArchitecture(
            inputChannels: inputChannels, outputChannels: outputChannels ?? 3, ngf: ngf, blocks: blocks,
            affine: affine)
    }

    public var discriminator: DiscriminatorArchitecture? {
        guard kind == .discriminator, let ndf, let layers else { return nil }
        return DiscriminatorArchitecture(
            inputChannels: inputChannels, ndf: ndf, layers: layers, affine: affine)
    }
}

/// Where a network came from.
public struct Provenance: Codable, Equatable, Sendable {
    /// The file it was imported from, as given on the command line.
    public var source: String
    public var sourceSHA256: String
    /// ISO 8601, UTC.
    public var importedAt: String
    /// Free text, e.g. "vintagify 0.1.2 wheel, sha256 …".
    public var note: String?
    /// What layout normalisation changed.
    public var changes: [String]?
}

public struct NetworkEntry: Codable, Equatable, Sendable {
    public var architecture: NetworkArchitecture
    /// The `.safetensors` file inside the model folder.
    public var file: String
    public var sha256: String
    public var bytes: Int
    public var provenance: Provenance?
}

/// model.json: what a model folder holds.
public struct ModelManifest: Codable, Equatable, Sendable {
    public static let currentFormatVersion = 1

    public struct Domains: Codable, Equatable, Sendable {
        /// The source domain of G_A (e.g. horse).
        public var a: String
        /// The source domain of G_B (e.g. zebra).
        public var b: String

        public init(a: String, b: String) {
            self.a = a
            self.b = b
        }

        enum CodingKeys: String, CodingKey {
            case a = "A"
            case b = "B"
        }
    }

    /// Counters of the training run the weights come from, when known.
    public struct Training: Codable, Equatable, Sendable {
        public var epoch: Int?
        public var iterations: Int?
        public init(epoch: Int? = nil, iterations: Int? = nil) {
            self.epoch = epoch
            self.iterations = iterations
        }
    }

    public var formatVersion: Int
    public var name: String
    public var domains: Domains
    /// Keyed by role ("G_A", "G_B", "D_A", "D_B").
    public var networks: [String: NetworkEntry]
    public var training: Training?
    /// The number of this version of the model (`versions/<n>/` keeps it once the
    /// model has been published to). Absent in models that were only imported:
    /// those are version 1, or 0 while they have no network.
    public var version: Int?

    public init(
        name: String, domains: Domains, networks: [String: NetworkEntry] = [:],
        training: Training? = nil, version: Int? = nil
    ) {
        formatVersion = Self.currentFormatVersion
        self.name = name
        self.domains = domains
        self.networks = networks
        self.training = training
        self.version = version
    }

    /// `version`, or what an unversioned model counts as: 1, or 0 without networks.
    public var versionNumber: Int { version ?? (networks.isEmpty ? 0 : 1) }

    /// This manifest with another version number (to compare content).
    func replacing(version: Int?) -> ModelManifest {
        var copy = self
        copy.version = version
        return copy
    }

    public subscript(role: NetworkRole) -> NetworkEntry? {
        get { networks[role.rawValue] }
        set { networks[role.rawValue] = newValue }
    }

    public var roles: [NetworkRole] { NetworkRole.allCases.filter { networks[$0.rawValue] != nil } }

    /// The translation directions this model offers: A→B through G_A, B→A through G_B.
    public var directions: [(name: String, role: NetworkRole)] {
        var out: [(String, NetworkRole)] = []
        if self[.generatorA] != nil { out.append(("\(domains.a)2\(domains.b)", .generatorA)) }
        if self[.generatorB] != nil { out.append(("\(domains.b)2\(domains.a)", .generatorB)) }
        return out
    }

    func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(self) + Data("\n".utf8)
    }

    static func decode(_ data: Data) throws -> ModelManifest {
        try JSONDecoder().decode(ModelManifest.self, from: data)
    }
}
