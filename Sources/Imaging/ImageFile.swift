import Tensor

/// A whole image decoded into a tensor, with what is needed to write the output.
public struct LoadedImage: Sendable {
    /// [1, 3, height, width], RGB in [-1, 1].
    public let tensor: Tensor
    public let template: ImageTemplate
}

/// Whole-image load and save, built on `ImageSource` and `ImageSink`.
public enum ImageFile {
    /// Reads any image libvips reads (see docs/IMAGING.md) as upright sRGB.
    public static func load(_ path: String, options: LoadOptions = LoadOptions()) throws -> LoadedImage {
        let source = try ImageSource(path: path, options: options)
        let tensor = Tensor(shape: [1, 3, source.height, source.width])
        try source.readRows(y: 0, count: source.height, into: tensor.data)
        return LoadedImage(tensor: tensor, template: try source.template())
    }

    /// Writes an RGB tensor [1, 3, H, W] in [-1, 1] to `path`, in the format
    /// `options.format`, else the path's extension, else the template's input
    /// format; with the template's alpha and metadata when given.
    public static func save(
        _ tensor: Tensor, to path: String, template: ImageTemplate? = nil, options: SaveOptions = SaveOptions()
    ) throws {
        guard tensor.shape.count == 4, tensor.shape[0] == 1, tensor.shape[1] == 3 else {
            throw ImagingError(
                .invalidArgument, path: path, reason: "expected a [1, 3, H, W] tensor, got \(tensor.shape)")
        }
        let sink = try ImageSink(
            destination: path, width: tensor.shape[3], height: tensor.shape[2], template: template, options: options)
        try sink.writeRows(y: 0, count: tensor.shape[2], from: tensor.data)
        try sink.finish()
    }
}
