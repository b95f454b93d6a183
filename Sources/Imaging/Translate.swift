import CycleGAN
import Foundation
import Tensor

/// Translating one image file: options, report, and the entry point.
public enum ImageTranslation {}

extension ImageTranslation {
    /// How one image is translated.
    public struct Options: Sendable {
        /// Most memory the translation may hold (activations, bands, decoded pixels).
        public var memoryLimit: Int
        public var threads: Int?
        public var load: LoadOptions
        public var save: SaveOptions
        /// Force a mode instead of choosing by `memoryLimit` (tests, benchmarks).
        public var mode: Mode?
        /// Rows per band in streamed mode (nil: the largest the limit allows).
        public var bandRows: Int?

        public enum Mode: String, Sendable, Codable {
            case whole
            case streamed
        }

        public static let defaultMemoryLimit = 1 << 30

        public init(
            memoryLimit: Int = Options.defaultMemoryLimit, threads: Int? = nil,
            load: LoadOptions = LoadOptions(),
            save: SaveOptions = SaveOptions(), mode: Mode? = nil, bandRows: Int? = nil
        ) {
            self.memoryLimit = memoryLimit
            self.threads = threads
            self.load = load
            self.save = save
            self.mode = mode
            self.bandRows = bandRows
        }
    }

    /// What a translation did.
    public struct Report: Sendable, Codable, Equatable {
        public var width: Int
        public var height: Int
        public var mode: Options.Mode
        public var seconds: Double
    }

    /// Translates the image at `input` with `generator` and writes the result to
    /// `output` (atomically: nothing appears there unless all went well).
    ///
    /// Images whose whole-image pass fits `options.memoryLimit` run in one piece;
    /// larger ones run through `StreamedGenerator`, whose output is the same.
    public static func translateFile(
        input: String, output: String, generator: ResnetGenerator, options: Options = Options()
    ) throws -> Report {
        try Plan(input: input, generator: generator, options: options).run(output: output)
    }

    /// One image opened and measured (its header read, nothing decoded yet) and its mode
    /// chosen: what translating it will hold in memory is known before it runs, so that
    /// several translations can share a memory budget.
    public final class Plan {
        public let width: Int
        public let height: Int
        public let mode: Options.Mode
        /// The most memory the translation holds at once (an estimate from the
        /// architecture and the size; streamed runs stay under `memoryLimit`).
        public let bytes: Int
        private let source: ImageSource
        private let generator: ResnetGenerator
        private let options: Options

        public init(input: String, generator: ResnetGenerator, options: Options = Options()) throws {
            source = try ImageSource(path: input, options: options.load)
            (height, width) = (source.height, source.width)
            self.generator = generator
            self.options = options
            let a = generator.architecture
            mode = options.mode ?? chooseMode(a, height: height, width: width, limit: options.memoryLimit)
            let whole = wholeImageBytes(a, height: height, width: width)
            bytes = mode == .whole ? whole : min(options.memoryLimit, whole)
        }

        /// Decodes, translates and writes the image on `compute` (default: `options.threads`); a
        /// live `Compute` is read at each kernel, and streamed bands are sized for its `maxThreads`.
        /// `isCancelled` is asked after each layer of a whole-image pass and between the bands
        /// of a streamed one; when it says yes the run throws `cancelled`.
        ///
        /// `progress` hears how far the run is, from 0 to 1, monotone: decoding is the first
        /// `Share.decode`, the network the next (by layer or by band, weighted by multiply-adds),
        /// encoding the rest; 1 comes once the output is written.
        public func run(
            output: String, compute: Compute? = nil, isCancelled: @escaping @Sendable () -> Bool = { false },
            progress: @escaping (Double) -> Void = { _ in }
        ) throws -> Report {
            let start = DispatchTime.now().uptimeNanoseconds
            let compute = compute ?? Compute(threads: options.threads)
            progress(0)
            try source.decode()
            progress(Share.decode)
            let network = { (f: Double) in progress(Share.decode + f * Share.network) }
            let (h, w) = (height, width)
            let sink = try ImageSink(
                destination: output, width: w, height: h, template: try source.template(), options: options.save)
            switch mode {
            case .whole:
                let x = Tensor(shape: [1, 3, h, w])
                try source.readRows(y: 0, count: h, into: x.data)
                let y = try generator.forward(x, compute: compute) { f in
                    network(f)
                    if isCancelled() { throw ImagingError(.cancelled, path: output, reason: "cancelled on request") }
                }
                try sink.writeRows(y: 0, count: h, from: y.data)
            case .streamed:
                var budget = options
                budget.threads = compute.maxThreads
                let rows =
                    options.bandRows
                    ?? streamedBandRows(generator.architecture, height: h, width: w, options: budget)
                var executor = StreamedGenerator(
                    generator: generator, compute: compute, bandRows: rows, storesInMemory: false,
                    temporaryDirectory: temporaryDirectory(options.load.temporaryDirectory))
                executor.isCancelled = isCancelled
                executor.progress = network
                try executor.run(
                    height: h, width: w,
                    read: { y, n, into in try self.source.readRows(y: y, count: n, into: into) },
                    write: { y, n, from in try sink.writeRows(y: y, count: n, from: from) })
            }
            try sink.finish()
            progress(1)
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            return Report(width: w, height: h, mode: mode, seconds: seconds)
        }

        /// The parts of `progress` decoding and the network take (encoding takes the rest). Each
        /// codec step is one libvips call with no progress of its own, and both take a few
        /// percent of an image's time (the network dominates, more so the larger the image).
        public enum Share {
            public static let decode = 0.02
            public static let network = 0.95
        }
    }

    /// Runs `generator` on an in-memory image in streamed mode (tests and benchmarks
    /// compare it with `ResnetGenerator.forward`).
    public static func streamedForward(
        _ generator: ResnetGenerator, _ x: Tensor, bandRows: Int, storesInMemory: Bool,
        compute: Compute = Compute(), progress: @escaping (Double) -> Void = { _ in }
    ) throws -> Tensor {
        let h = x.shape[2]
        let w = x.shape[3]
        let y = Tensor(shape: [1, 3, h, w])
        var executor = StreamedGenerator(
            generator: generator, compute: compute, bandRows: bandRows, storesInMemory: storesInMemory,
            temporaryDirectory: temporaryDirectory(nil))
        executor.progress = progress
        try executor.run(
            height: h, width: w,
            read: { row, n, into in
                for c in 0..<3 { (into + c * n * w).update(from: x.data + (c * h + row) * w, count: n * w) }
            },
            write: { row, n, from in
                for c in 0..<3 { (y.data + (c * h + row) * w).update(from: from + c * n * w, count: n * w) }
            })
        return y
    }
}

/// Bytes a whole-image pass holds at its peak, per working-size pixel: the
/// full-resolution activation and the next layer's output (first and last
/// layers), the decoded input and output, and the convolutions' scratch.
func wholeImageBytes(_ a: GeneratorArchitecture, height: Int, width: Int) -> Int {
    let (wh, ww) = ResnetGenerator.workingSize(height: height, width: width)
    let perPixel = 4 * (a.ngf * 2 + a.ngf / 2 + 3 * 4) + 8
    return wh * ww * perPixel + (64 << 20)
}

func chooseMode(_ a: GeneratorArchitecture, height: Int, width: Int, limit: Int)
    -> ImageTranslation.Options.Mode
{
    wholeImageBytes(a, height: height, width: width) <= limit ? .whole : .streamed
}

/// The tallest bands (a multiple of 4 rows, from 4 to 128) whose working set fits
/// the limit, after the decoded input and output spools (up to 8 bytes a pixel).
/// Past 128 rows the kernel halos cost under 10 % and taller bands only use memory.
func streamedBandRows(
    _ a: GeneratorArchitecture, height: Int, width: Int, options: ImageTranslation.Options
) -> Int {
    let threads = Compute(threads: options.threads).threads
    let budget = options.memoryLimit - height * width * 8
    var rows = 128
    while rows > 4
        && StreamedGenerator.estimatedBytes(
            architecture: a, height: height, width: width, bandRows: rows, storesInMemory: false, threads: threads)
            > budget
    {
        rows -= 4
    }
    return rows
}
