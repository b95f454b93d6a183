import Imaging
import Tensor

/// What the reference's `get_transform` does to one 8-bit image, in its order: grey (PIL's
/// `convert("L")`) when asked, the resize of `options.preprocess` (bicubic, through libvips),
/// a random crop, a random horizontal flip, then samples to [-1, 1] as `(x / 255 - 0.5) / 0.5`.
struct ImageTransform {
    let options: DataOptions

    /// Where the crop falls and whether the image is mirrored.
    struct Placement: Equatable {
        var x = 0
        var y = 0
        var width: Int
        var height: Int
        var flip = false
    }

    /// Why an image cannot become a sample (it is then skipped like an unreadable file).
    struct Unusable: Error {
        let reason: String
    }

    /// The size the image is resized to: the reference's `Resize`, `__scale_width` and `__make_power_2`.
    func resizedSize(width: Int, height: Int) -> (width: Int, height: Int) {
        let load = options.loadSize
        let crop = options.cropSize
        switch options.preprocess {
        case .resizeAndCrop:
            return (load, load)
        case .scaleWidth, .scaleWidthAndCrop:
            if width == load && height >= crop { return (width, height) }
            return (load, Int(max(Double(load * height) / Double(width), Double(crop))))
        case .crop:
            return (width, height)
        case .none:
            // Python's round (halves to even); at least 4, where the reference would fail resizing to 0.
            func multipleOf4(_ side: Int) -> Int { max(4, Int((Double(side) / 4).rounded(.toNearestOrEven)) * 4) }
            return (multipleOf4(width), multipleOf4(height))
        }
    }

    /// Draws the crop (top, then left, as torchvision's `RandomCrop`) and the flip for an image
    /// of this size after resizing.
    func placement(width: Int, height: Int, random: inout SplitMix64) throws(Unusable) -> Placement {
        var placed = Placement(width: width, height: height)
        if options.preprocess.crops {
            let size = options.cropSize
            guard width >= size && height >= size else {
                throw Unusable(
                    reason: "it is \(width)×\(height) after preprocessing, smaller than the \(size)×\(size) crop")
            }
            placed.y = random.int(in: 0...(height - size))
            placed.x = random.int(in: 0...(width - size))
            placed.width = size
            placed.height = size
        }
        if !options.noFlip { placed.flip = random.uniform() < 0.5 }
        return placed
    }

    /// The sample [1, channels, h, w] made from a decoded RGB image.
    func apply(to decoded: ByteImage, channels: Int, random: inout SplitMix64) throws -> Tensor {
        let image = channels == 1 ? Self.grey(decoded) : decoded
        let size = resizedSize(width: image.width, height: image.height)
        let resized: ByteImage
        do {
            resized = try image.resizedBicubic(width: size.width, height: size.height)
        } catch let error as ImagingError {
            throw Unusable(reason: error.reason)
        }
        let placed = try placement(width: resized.width, height: resized.height, random: &random)
        return Self.tensor(resized, placed)
    }

    /// PIL's `convert("L")`: ITU-R 601 weights in 16-bit fixed point, rounded.
    static func grey(_ image: ByteImage) -> ByteImage {
        let pixels = image.width * image.height
        var out = [UInt8](repeating: 0, count: pixels)
        image.samples.withUnsafeBufferPointer { rgb in
            for p in 0..<pixels {
                let r = UInt32(rgb[3 * p]), g = UInt32(rgb[3 * p + 1]), b = UInt32(rgb[3 * p + 2])
                out[p] = UInt8((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16)
            }
        }
        return ByteImage(width: image.width, height: image.height, bands: 1, samples: out)
    }

    /// `(x / 255 - 0.5) / 0.5` in Float, as torchvision's ToTensor and Normalize compute it.
    static let levels: [Float] = (0..<256).map { (Float($0) / 255 - 0.5) / 0.5 }

    /// The placed window of `image` as planar floats [1, bands, height, width].
    static func tensor(_ image: ByteImage, _ placed: Placement) -> Tensor {
        let bands = image.bands
        let (w, h) = (placed.width, placed.height)
        let out = Tensor(shape: [1, bands, h, w])
        image.samples.withUnsafeBufferPointer { src in
            levels.withUnsafeBufferPointer { level in
                for y in 0..<h {
                    let row = (placed.y + y) * image.width
                    for x in 0..<w {
                        let sx = placed.x + (placed.flip ? w - 1 - x : x)
                        let from = (row + sx) * bands
                        for c in 0..<bands { out.data[(c * h + y) * w + x] = level[Int(src[from + c])] }
                    }
                }
            }
        }
        return out
    }
}
