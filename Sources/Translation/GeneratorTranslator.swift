import CycleGAN
import Daemon
import FileOutput
import Foundation
import Imaging
import Models
import Tensor

/// The daemon's translator: a direction's generator run on one file through `ImageTranslation`
/// (the whole image at once, or streamed in bands when its memory budget asks for it).
///
/// Generators stay loaded between images, one per direction, each built once however many
/// requests ask for it at the same time (`LoadOnce`), and are dropped when the models change.
/// The images the workers translate at once share the cores and the daemon's memory limit
/// through an `Allotment`: each is measured first (`ImageTranslation.Plan`), then waits until
/// its memory fits beside the others, and runs on its grant's live share of the cores (read at
/// each kernel). The configured `threads`, when there are some, replace the share.
public final class GeneratorTranslator: Translator, @unchecked Sendable {
    /// Threads per image when configured; nil: the allotment's share of the cores.
    private let threads: Int?
    private let allotment: Allotment
    private let generators: LoadOnce<Served>

    /// A direction's generator and the model version it came from.
    public struct Served: @unchecked Sendable {
        public var generator: ResnetGenerator
        public var version: Int?

        public init(generator: ResnetGenerator, version: Int?) {
            self.generator = generator
            self.version = version
        }
    }

    /// - Parameters:
    ///   - threads: threads per image (nil: the cores shared out among the images running).
    ///   - load: builds the generator of a direction on the threads it is given (the configured
    ///     ones, or the share of one more image beside those running); its errors become `no_model`.
    ///   - allotment: the cores and memory shared with the other work (the daemon's).
    public init(
        threads: Int?, allotment: Allotment = Allotment(cores: ProcessInfo.processInfo.activeProcessorCount),
        load: @escaping @Sendable (String, Compute) throws -> Served
    ) {
        self.threads = threads
        self.allotment = allotment
        let building =
            threads.map { Compute(threads: $0) } ?? Compute(share: allotment.joining, maxThreads: allotment.cores)
        self.generators = LoadOnce { direction in
            do {
                return try load(direction, building)
            } catch {
                throw DaemonError(.noModel, "\(error)")
            }
        }
    }

    /// Generators from a model store.
    public convenience init(store: ModelStore, threads: Int?, allotment: Allotment) {
        self.init(threads: threads, allotment: allotment) { direction, compute in
            let (generator, version) = try store.servedGenerator(direction: direction, compute: compute)
            return Served(generator: generator, version: version)
        }
    }

    /// Generators built since start (tests check that a burst builds each once).
    public var generatorsBuilt: Int { generators.builds }

    public func modelsChanged() {
        generators.removeAll()
    }

    public func translate(
        input: URL, output: URL, direction: String, options: TranslationOptions, cancel: CancellationFlag,
        progress: @escaping @Sendable (Double) -> Void
    ) throws -> TranslationResult {
        // Held to the end of this image: a publish meanwhile swaps the cache, not this generator.
        let served = try generators.value(for: direction)
        let generator = served.generator
        let shared = MemoryBudget.bytes(options.sharedMemoryLimit)
        // Planned under what the long jobs leave, so that it fits beside them.
        let budget = min(MemoryBudget.bytes(options.memoryLimit), allotment.room(limit: shared))
        let translation = ImageTranslation.Options(
            memoryLimit: budget, load: LoadOptions(pixelLimit: options.maxPixels),
            save: SaveOptions(format: options.format.fileExtension, quality: options.quality))
        do {
            let plan = try ImageTranslation.Plan(input: input.path, generator: generator, options: translation)
            let grant = allotment.admit(bytes: plan.bytes, limit: shared)
            defer { allotment.release(grant) }
            if cancel.isCancelled { throw DaemonError(.cancelled, "cancelled while it waited for memory") }
            let compute = threads.map { Compute(threads: $0) } ?? grant.compute
            let report = try plan.run(
                output: output.path, compute: compute, isCancelled: { cancel.isCancelled }, progress: progress)
            return TranslationResult(
                width: report.width, height: report.height, milliseconds: report.seconds * 1000,
                modelVersion: served.version)
        } catch let e as ImagingError {
            throw Self.daemonError(e)
        }
    }

    /// The daemon's code for an imaging failure.
    static func daemonError(_ e: ImagingError) -> DaemonError {
        switch e.kind {
        case .unreadable, .corrupt: DaemonError(.unreadableImage, e.reason)
        case .tooLarge: DaemonError(.tooLarge, e.reason)
        case .writeFailed: DaemonError(.writeFailed, e.reason)
        case .invalidArgument: DaemonError(.translationFailed, e.reason)
        case .cancelled: DaemonError(.cancelled, "cancelled on request while it was translated")
        }
    }
}

/// The models store as the daemon's catalog of directions.
public struct StoreCatalog: ModelCatalog {
    public let store: ModelStore

    public init(store: ModelStore) {
        self.store = store
    }

    public var modelsDirectory: URL? { store.root }

    public func scan() throws -> ModelScan {
        let catalog = store.catalog()
        let models = catalog.models.map { manifest in
            ModelInfo(
                name: manifest.name, directions: manifest.directions.map(\.name).sorted(),
                path: store.folder(manifest.name).path, version: manifest.versionNumber)
        }
        let directions = catalog.directions.map {
            DirectionInfo(name: $0.name, model: $0.model, from: $0.from, to: $0.to)
        }
        return ModelScan(models: models, directions: directions, problems: catalog.problems)
    }
}
