/// The shape of a ResNet generator as the reference CycleGAN builds it:
/// 7×7 conv, two stride-2 downsamplings, `blocks` residual blocks at 4·ngf
/// channels, two stride-2 transposed convolutions, 7×7 conv and tanh, with an
/// instance norm after every conv but the last.
///
/// Weights are named as the reference's `state_dict` names them
/// (`model.1.weight`, `model.10.conv_block.1.weight`, ...). `affine` says
/// whether the norms carry `weight`/`bias` (the vintagify layout does, the
/// reference's `InstanceNorm2d(affine=False)` does not).
public struct GeneratorArchitecture: Codable, Equatable, Sendable {
    public var inputChannels: Int
    public var outputChannels: Int
    public var ngf: Int
    public var blocks: Int
    public var affine: Bool

    public init(inputChannels: Int = 3, outputChannels: Int = 3, ngf: Int = 64, blocks: Int = 9, affine: Bool = false) {
        self.inputChannels = inputChannels
        self.outputChannels = outputChannels
        self.ngf = ngf
        self.blocks = blocks
        self.affine = affine
    }

    /// Index in `model.N` of the first residual block.
    static let firstBlockIndex = 10

    /// Indices of the two transposed convolutions and of the last conv.
    var upIndices: (Int, Int) { (Self.firstBlockIndex + blocks, Self.firstBlockIndex + blocks + 3) }
    var lastConvIndex: Int { Self.firstBlockIndex + blocks + 7 }

    /// Every parameter this architecture needs, by its reference name, with its shape.
    public func parameterShapes() -> [(name: String, shape: [Int])] { Layer.parameterShapes(of: sequential) }

    /// Infers the architecture from a state dict already in reference names.
    ///
    /// Throws `ArchitectureError` naming the keys or shapes that did not fit.
    public static func infer(from shapes: [String: [Int]]) throws -> GeneratorArchitecture {
        guard let first = shapes["model.1.weight"], first.count == 4, first[2] == 7, first[3] == 7 else {
            throw ArchitectureError.notAGenerator(
                "no 7×7 convolution at model.1.weight (keys: \(shapes.keys.sorted().prefix(6).joined(separator: ", "))…)"
            )
        }
        var blocks = 0
        while shapes["model.\(firstBlockIndex + blocks).conv_block.1.weight"] != nil { blocks += 1 }
        var arch = GeneratorArchitecture(
            inputChannels: first[1], outputChannels: 3, ngf: first[0], blocks: blocks,
            affine: shapes["model.2.weight"] != nil)
        if let last = shapes["model.\(arch.lastConvIndex).weight"], last.count == 4 {
            arch.outputChannels = last[0]
        }
        try arch.check(shapes)
        return arch
    }

    /// Checks that `shapes` holds exactly this architecture's parameters.
    public func check(_ shapes: [String: [Int]]) throws {
        let expected = parameterShapes()
        var problems: [String] = []
        for (name, shape) in expected {
            guard let got = shapes[name] else {
                problems.append("missing \(name) \(shape)")
                continue
            }
            if got != shape { problems.append("\(name) is \(got), expected \(shape)") }
        }
        let known = Set(expected.map(\.name))
        for name in shapes.keys.sorted() where !known.contains(name) {
            problems.append("unexpected \(name) \(shapes[name]!)")
        }
        if !problems.isEmpty {
            throw ArchitectureError.mismatch(
                "not a ResNet generator with ngf \(ngf), \(blocks) blocks\(affine ? ", affine norms" : ""): "
                    + problems.prefix(8).joined(separator: "; ")
                    + (problems.count > 8 ? "; and \(problems.count - 8) more" : ""))
        }
    }
}

/// The reference `NLayerDiscriminator` (PatchGAN): a 4×4 stride-2 conv with
/// LeakyReLU(0.2), `layers - 1` more stride-2 convs and one stride-1 conv,
/// each followed by instance norm and LeakyReLU, then a 4×4 conv to one channel.
public struct DiscriminatorArchitecture: Codable, Equatable, Sendable {
    public var inputChannels: Int
    public var ndf: Int
    public var layers: Int
    public var affine: Bool

    public init(inputChannels: Int = 3, ndf: Int = 64, layers: Int = 3, affine: Bool = false) {
        self.inputChannels = inputChannels
        self.ndf = ndf
        self.layers = layers
        self.affine = affine
    }

    /// One conv of the stack: its `model.N` index, channels and stride, and
    /// whether a norm follows it (at N+1) and a LeakyReLU.
    struct Stage {
        var index: Int
        var cin: Int
        var cout: Int
        var stride: Int
        var norm: Bool
        var leaky: Bool
    }

    var stages: [Stage] {
        var s: [Stage] = [Stage(index: 0, cin: inputChannels, cout: ndf, stride: 2, norm: false, leaky: true)]
        var index = 2
        var mult = 1
        for n in 1..<max(layers, 1) {
            let prev = mult
            mult = min(1 << n, 8)
            s.append(Stage(index: index, cin: ndf * prev, cout: ndf * mult, stride: 2, norm: true, leaky: true))
            index += 3
        }
        let prev = mult
        mult = min(1 << layers, 8)
        s.append(Stage(index: index, cin: ndf * prev, cout: ndf * mult, stride: 1, norm: true, leaky: true))
        index += 3
        s.append(Stage(index: index, cin: ndf * mult, cout: 1, stride: 1, norm: false, leaky: false))
        return s
    }

    public func parameterShapes() -> [(name: String, shape: [Int])] { Layer.parameterShapes(of: sequential) }

    public static func infer(from shapes: [String: [Int]]) throws -> DiscriminatorArchitecture {
        guard let first = shapes["model.0.weight"], first.count == 4, first[2] == 4, first[3] == 4 else {
            throw ArchitectureError.notADiscriminator("no 4×4 convolution at model.0.weight")
        }
        // Convs sit at 0, 2, 5, 8, ...: count those present.
        var convs = 1
        var index = 2
        while let w = shapes["model.\(index).weight"], w.count == 4 {
            convs += 1
            index += 3
        }
        let arch = DiscriminatorArchitecture(
            inputChannels: first[1], ndf: first[0], layers: max(convs - 2, 1),
            affine: shapes["model.3.weight"]?.count == 1)
        let expected = Dictionary(uniqueKeysWithValues: arch.parameterShapes().map { ($0.name, $0.shape) })
        var problems: [String] = []
        for (k, v) in expected where shapes[k] != v {
            problems.append(shapes[k] == nil ? "missing \(k) \(v)" : "\(k) is \(shapes[k]!), expected \(v)")
        }
        for k in shapes.keys.sorted() where expected[k] == nil { problems.append("unexpected \(k) \(shapes[k]!)") }
        if !problems.isEmpty {
            throw ArchitectureError.mismatch(
                "not an NLayerDiscriminator with ndf \(arch.ndf), \(arch.layers) layers: "
                    + problems.prefix(8).joined(separator: "; "))
        }
        return arch
    }
}

public enum ArchitectureError: Error, CustomStringConvertible, Equatable {
    case notAGenerator(String)
    case notADiscriminator(String)
    case mismatch(String)

    public var description: String {
        switch self {
        case .notAGenerator(let s): return "not a CycleGAN ResNet generator: \(s)"
        case .notADiscriminator(let s): return "not a PatchGAN discriminator: \(s)"
        case .mismatch(let s): return s
        }
    }
}
