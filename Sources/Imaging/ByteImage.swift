import CVips

/// An 8-bit image in memory: samples band-interleaved, rows top-down. The trainer's data
/// is made from these, as the reference works on 8-bit PIL images.
public struct ByteImage: Sendable, Equatable {
    public let width: Int
    public let height: Int
    /// 3 (RGB) or 1 (grey).
    public let bands: Int
    /// width × height × bands samples.
    public var samples: [UInt8]

    public init(width: Int, height: Int, bands: Int, samples: [UInt8]) {
        precondition(
            samples.count == width * height * bands, "\(samples.count) samples for \(width)×\(height)×\(bands)")
        self.width = width
        self.height = height
        self.bands = bands
        self.samples = samples
    }
}

extension ImageFile {
    /// Reads a file as upright 8-bit sRGB with the alpha dropped, as PIL's `convert("RGB")`
    /// does for the reference; 16-bit samples keep their high byte. The header checks,
    /// orientation, colour conversion and JPEG rules are `ImageSource`'s.
    public static func loadBytes(_ path: String, options: LoadOptions = LoadOptions()) throws -> ByteImage {
        do {
            return try decodeBytes(path, options: options)
        } catch let error where ImageSource.isHarmlessJPEGWarning(error, options) {
            return try decodeBytes(path, options: options.lenientJPEG)
        }
    }

    private static func decodeBytes(_ path: String, options: LoadOptions) throws -> ByteImage {
        // Header reads are short and go under the error lock; so does a JPEG's decode, whose
        // warnings must be read as its own (see VipsErrors).
        let decoded = try VipsErrors.fresh { try DecodePipeline(path: path, options: options) }
        var image = decoded.image
        if decoded.hasAlpha {
            image = try image.derive(path: path, .unreadable, "alpha removal") { cvips_extract_bands($0, $1, 0, 3) }
        }
        if decoded.bitDepth == 16 {
            image = try image.derive(path: path, .unreadable, "8-bit conversion") { cvips_ushort_to_uchar($0, $1) }
        }
        if decoded.inputFormat == "jpg" {
            return try VipsErrors.fresh { try image.bytes(path: path) }
        }
        return try image.bytes(path: path)
    }
}

extension ByteImage {
    /// This image resized to `width` × `height` by libvips with PIL's BICUBIC semantics
    /// (`cvips_resize_bicubic`: Catmull-Rom, centres aligned, antialiased when shrinking).
    public func resizedBicubic(width newWidth: Int, height newHeight: Int) throws -> ByteImage {
        guard newWidth > 0, newHeight > 0 else {
            throw ImagingError(
                .invalidArgument, path: "", reason: "cannot resize \(width)×\(height) to \(newWidth)×\(newHeight)")
        }
        if newWidth == width && newHeight == height { return self }
        try VipsRuntime.ready(for: "")
        let space = bands == 1 ? VIPS_INTERPRETATION_B_W : VIPS_INTERPRETATION_sRGB
        return try samples.withUnsafeBytes { buffer in
            guard
                let wrapped = cvips_image_from_memory(
                    buffer.baseAddress, buffer.count, Int32(width), Int32(height), Int32(bands), VIPS_FORMAT_UCHAR,
                    space)
            else {
                throw ImagingError(
                    .invalidArgument, path: "",
                    reason: "cannot wrap a \(width)×\(height) image: \(takeVipsError(fallback: "no reason given"))")
            }
            // The pixels are read before `buffer` goes: `bytes` runs the whole pipeline.
            let resized = try VipsImageRef(wrapped).derive(path: "", .invalidArgument, "resize") {
                cvips_resize_bicubic($0, $1, Int32(newWidth), Int32(newHeight))
            }
            return try resized.bytes(path: "")
        }
    }
}

extension VipsImageRef {
    /// Runs the pipeline into memory as an 8-bit image.
    fileprivate func bytes(path: String) throws -> ByteImage {
        var size = 0
        guard let data = vips_image_write_to_memory(pointer, &size) else {
            throw ImagingError(
                .corrupt, path: path,
                reason:
                    "cannot decode (the file is damaged or truncated): \(takeVipsError(fallback: "no reason given"))")
        }
        defer { g_free(data) }
        guard format == VIPS_FORMAT_UCHAR, size == width * height * bands else {
            throw ImagingError(.unreadable, path: path, reason: "decoded to an unexpected \(bands)-band layout")
        }
        let samples = [UInt8](UnsafeRawBufferPointer(start: data, count: size))
        return ByteImage(width: width, height: height, bands: bands, samples: samples)
    }
}
