/// Conversion between stored samples and the network's planar floats in [-1, 1]:
/// 8-bit x ↦ x/127.5 − 1 and y ↦ clamp(round((y + 1)·127.5), 0, 255);
/// 16-bit x ↦ x/32767.5 − 1 and y ↦ clamp(round((y + 1)·32767.5), 0, 65535).
/// Rounding is to nearest, ties to even (as torch.round); NaN becomes 0.
enum PixelCodec {
    static func scale(bitDepth: Int) -> Float { bitDepth == 16 ? 32767.5 : 127.5 }

    /// Reads `count` rows of `width` band-interleaved pixels with `bands` bands
    /// (the first three are RGB) into planar floats [3][count][width].
    static func decode(
        _ source: UnsafeRawPointer, bands: Int, bitDepth: Int, width: Int, count: Int,
        into output: UnsafeMutablePointer<Float>
    ) {
        let plane = width * count
        let s = scale(bitDepth: bitDepth)
        if bitDepth == 16 {
            let samples = source.assumingMemoryBound(to: UInt16.self)
            for i in 0..<plane {
                for c in 0..<3 { output[c * plane + i] = Float(samples[i * bands + c]) / s - 1 }
            }
        } else {
            let samples = source.assumingMemoryBound(to: UInt8.self)
            for i in 0..<plane {
                for c in 0..<3 { output[c * plane + i] = Float(samples[i * bands + c]) / s - 1 }
            }
        }
    }

    /// Writes planar floats [3][count][width] as band-interleaved RGB samples.
    static func encode(
        _ input: UnsafePointer<Float>, bitDepth: Int, width: Int, count: Int, into destination: UnsafeMutableRawPointer
    ) {
        let plane = width * count
        let s = scale(bitDepth: bitDepth)
        if bitDepth == 16 {
            let samples = destination.assumingMemoryBound(to: UInt16.self)
            for i in 0..<plane {
                for c in 0..<3 { samples[i * 3 + c] = UInt16(quantise(input[c * plane + i], scale: s, maximum: 65535)) }
            }
        } else {
            let samples = destination.assumingMemoryBound(to: UInt8.self)
            for i in 0..<plane {
                for c in 0..<3 { samples[i * 3 + c] = UInt8(quantise(input[c * plane + i], scale: s, maximum: 255)) }
            }
        }
    }

    @inline(__always)
    static func quantise(_ y: Float, scale: Float, maximum: Float) -> Float {
        let v = ((y + 1) * scale).rounded(.toNearestOrEven)
        // Written so that NaN fails the first test and becomes 0.
        return v >= 0 ? min(v, maximum) : 0
    }
}
