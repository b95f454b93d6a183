import Tensor

/// One layer of a network, as the reference's `nn.Sequential` lists it.
///
/// A network is described once, as a list of these, and every path walks that
/// list: the whole-image forward (`Network.forward`), the streamed executor
/// (Imaging) and training (a forward that keeps a tape, and the backward). The
/// reference's parameter names (`model.10.conv_block.1.weight`) come from the
/// layers' names, so import, export and the walkers can never disagree.
///
/// Padding belongs to the convolution: the reference's separate
/// `ReflectionPad2d` layers and `Conv2d(padding:)` both become `padding` here.
public indirect enum Layer: Sendable, Equatable {
    case conv(ConvLayer)
    case convTranspose(ConvTransposeLayer)
    case norm(NormLayer)
    case relu
    case leakyReLU(Float)
    case tanh
    /// `x + f(x)`, where `f` is the inner list.
    case residual([Layer])
}

/// `Conv2d` with bias: weight [out, in, k, k] at `name.weight`, bias [out] at `name.bias`.
public struct ConvLayer: Sendable, Equatable {
    public var name: String
    public var inChannels: Int
    public var outChannels: Int
    public var kernel: Int
    public var stride: Int
    public var padding: Padding
}

/// `ConvTranspose2d` with bias: weight [in, out, k, k], bias [out].
public struct ConvTransposeLayer: Sendable, Equatable {
    public var name: String
    public var inChannels: Int
    public var outChannels: Int
    public var kernel: Int
    public var stride: Int
    public var padding: Int
    public var outputPadding: Int
}

/// `InstanceNorm2d` (eps 1e-5, no running statistics); `affine` adds weight and bias [channels].
public struct NormLayer: Sendable, Equatable {
    public var name: String
    public var channels: Int
    public var affine: Bool
}

extension Layer {
    /// The parameters of these layers, in order, by reference name with their shapes.
    public static func parameterShapes(of layers: [Layer]) -> [(name: String, shape: [Int])] {
        var out: [(String, [Int])] = []
        for layer in layers {
            switch layer {
            case .conv(let c):
                out.append(("\(c.name).weight", [c.outChannels, c.inChannels, c.kernel, c.kernel]))
                out.append(("\(c.name).bias", [c.outChannels]))
            case .convTranspose(let c):
                out.append(("\(c.name).weight", [c.inChannels, c.outChannels, c.kernel, c.kernel]))
                out.append(("\(c.name).bias", [c.outChannels]))
            case .norm(let n) where n.affine:
                out.append(("\(n.name).weight", [n.channels]))
                out.append(("\(n.name).bias", [n.channels]))
            case .residual(let inner):
                out += parameterShapes(of: inner)
            case .norm, .relu, .leakyReLU, .tanh:
                break
            }
        }
        return out
    }

    /// The activation that directly follows a norm, which the kernels fuse into it.
    public var activation: Activation? {
        switch self {
        case .relu: return .relu
        case .leakyReLU(let slope): return .leakyReLU(slope)
        default: return nil
        }
    }
}

extension GeneratorArchitecture {
    /// The reference `ResnetGenerator` (no dropout; imports rename a dropout
    /// layout's keys to these): 7×7 conv, two stride-2 convs, `blocks` residual
    /// blocks at 4·ngf channels, two stride-2 transposed convs, 7×7 conv, tanh.
    public var sequential: [Layer] {
        func conv(_ i: String, _ cin: Int, _ cout: Int, _ k: Int, _ s: Int, _ p: Padding) -> Layer {
            .conv(ConvLayer(name: i, inChannels: cin, outChannels: cout, kernel: k, stride: s, padding: p))
        }
        func norm(_ i: String, _ c: Int) -> Layer { .norm(NormLayer(name: i, channels: c, affine: affine)) }
        func up(_ i: Int, _ cin: Int, _ cout: Int) -> Layer {
            .convTranspose(
                ConvTransposeLayer(
                    name: "model.\(i)", inChannels: cin, outChannels: cout, kernel: 3, stride: 2, padding: 1,
                    outputPadding: 1))
        }
        let c = ngf * 4
        var out: [Layer] = [
            conv("model.1", inputChannels, ngf, 7, 1, .reflect(3)), norm("model.2", ngf), .relu,
            conv("model.4", ngf, ngf * 2, 3, 2, .zero(1)), norm("model.5", ngf * 2), .relu,
            conv("model.7", ngf * 2, c, 3, 2, .zero(1)), norm("model.8", c), .relu,
        ]
        for b in 0..<blocks {
            let p = "model.\(Self.firstBlockIndex + b).conv_block"
            out.append(
                .residual([
                    conv("\(p).1", c, c, 3, 1, .reflect(1)), norm("\(p).2", c), .relu,
                    conv("\(p).5", c, c, 3, 1, .reflect(1)), norm("\(p).6", c),
                ]))
        }
        let (u1, u2) = upIndices
        out += [
            up(u1, c, ngf * 2), norm("model.\(u1 + 1)", ngf * 2), .relu,
            up(u2, ngf * 2, ngf), norm("model.\(u2 + 1)", ngf), .relu,
            conv("model.\(lastConvIndex)", ngf, outputChannels, 7, 1, .reflect(3)), .tanh,
        ]
        return out
    }
}

extension DiscriminatorArchitecture {
    /// The reference `NLayerDiscriminator`: 4×4 convs with zero padding 1,
    /// `layers` of them at stride 2 and one at stride 1, each after the first
    /// with instance norm, all but the last with LeakyReLU(0.2), then a 4×4
    /// conv to one channel of patch logits.
    public var sequential: [Layer] {
        var out: [Layer] = []
        for st in stages {
            out.append(
                .conv(
                    ConvLayer(
                        name: "model.\(st.index)", inChannels: st.cin, outChannels: st.cout, kernel: 4,
                        stride: st.stride, padding: .zero(1))))
            if st.norm {
                out.append(.norm(NormLayer(name: "model.\(st.index + 1)", channels: st.cout, affine: affine)))
            }
            if st.leaky { out.append(.leakyReLU(0.2)) }
        }
        return out
    }
}
