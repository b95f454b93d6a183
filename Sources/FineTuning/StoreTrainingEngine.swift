import CycleGAN
import Daemon
import FileOutput
import Foundation
import Imaging
import Models
import Tensor
import Training

#if canImport(Glibc)
    import Glibc
#endif

/// The daemon's trainer: `finetune` jobs run `Training.Trainer` on a model of the store, with
/// `continue_train` semantics (a model with training state resumes it, one without starts from
/// its networks), under the long-job share of the daemon's cores.
///
/// A job is kept in its model's folder (`training/job.json`) from its start to its end, so that a
/// daemon that restarts, or was killed, finds it and continues it from the last checkpoint.
public final class StoreTrainingEngine: TrainingEngine, @unchecked Sendable {
    private let store: ModelStore

    public init(store: ModelStore) {
        self.store = store
    }

    // MARK: Checking a request

    public func check(_ request: FineTuneRequest) throws -> Int {
        let options = try Self.options(request.options)
        guard (try? store.manifest(request.model)) ?? nil != nil else {
            let known = store.catalog().models.map(\.name)
            throw DaemonError(
                .notFound,
                "field 'model': no model named \(request.model) (known: \(known.isEmpty ? "none" : known.joined(separator: ", ")))"
            )
        }
        // Folders the peer may read that the daemon's own user may not (a system service with
        // ProtectHome, another user): `ctl finetune` sends the images instead when it hears forbidden.
        let folders: [String] =
            switch request.data {
            case .dataroot(let root): [root, root + "/trainA", root + "/trainB"]
            case .folders(let a, let b): [a, b]
            case .uploaded: []
            }
        for folder in folders where access(folder, R_OK | X_OK) != 0 && errno == EACCES {
            throw DaemonError(
                .forbidden,
                "the daemon (uid \(getuid())) cannot read \(folder); send the images over the socket "
                    + "(`cyclegand ctl finetune --upload`, or training_data)")
        }
        // The options as the run will have them (over the model's checkpoint or its networks),
        // and the folders listed: a conflict, or a missing, empty or imageless folder, fails
        // before anything starts.
        let effective = try Self.badRequest { try Trainer.options(for: trainingRequest(request, options: options)) }
        do {
            _ = try dataset(request, options: effective)
        } catch {
            throw DaemonError(.badRequest, "\(fieldOfData(request.data)): \(error)")
        }
        return Self.bytes(effective)
    }

    /// What `cyclegand train --continue_train` would be asked for this request.
    private func trainingRequest(_ request: FineTuneRequest, options: TrainingOptions) -> TrainingRequest {
        let data: TrainingRequest.Data =
            switch request.data {
            case .dataroot(let root): .dataroot(root)
            case .folders(let a, let b): .folders(a: a, b: b)
            case .uploaded: .folders(a: uploads(request.model, "A").path, b: uploads(request.model, "B").path)
            }
        return TrainingRequest(
            data: data, name: request.model, store: store, continueTrain: true, options: options,
            given: Set(request.options.keys))
    }

    /// Runs `body`, its training errors as `bad_request` in the protocol's words ("option ngf 32: …").
    private static func badRequest<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch TrainingError.badOptions(let problems) {
            throw DaemonError(.badRequest, problems.map(protocolWords).joined(separator: "; "))
        } catch let error as DaemonError {
            throw error
        } catch {
            throw DaemonError(.badRequest, "\(error)")
        }
    }

    /// A trainer's problem in the protocol's words: "--ngf 32: … (leave --ngf out)" becomes
    /// "option ngf 32: … (leave ngf out)", since a socket client names its options without dashes.
    private static func protocolWords(_ problem: String) -> String {
        let named = problem.hasPrefix("--") ? "option " + problem.dropFirst(2) : problem
        return named.replacingOccurrences(of: "--", with: "")
    }

    /// The request's options over the defaults; `threads` is the daemon's to decide.
    static func options(_ given: [String: OptionValue]) throws -> TrainingOptions {
        if given["threads"] != nil {
            throw DaemonError(
                .badRequest, "option 'threads': the daemon shares its cores between images and training itself")
        }
        return try badRequest {
            let options = try TrainingOptions.overlaying(try JSONEncoder().encode(given))
            let problems = options.problems()
            if !problems.isEmpty { throw TrainingError.badOptions(problems) }
            return options
        }
    }

    /// About what a run holds: the four networks' weights with their gradients and Adam moments
    /// (16 bytes a parameter), the scratch, tapes and libraries of any run, and the activations,
    /// by the crop's pixels and the networks' width. Calibrated against peak RSS at 128² and 256²
    /// (docs/TRAINING.md: 718 and 1041 MiB for the reference networks).
    static func bytes(_ options: TrainingOptions) -> Int {
        let generator = Layer.parameterShapes(of: options.generatorArchitecture.sequential)
        let discriminator = Layer.parameterShapes(of: options.discriminatorArchitecture(channels: 3).sequential)
        let parameters = (generator + discriminator).reduce(0) { $0 + $1.shape.reduce(1, *) }
        let pixels = options.cropSize * options.cropSize * options.batchSize
        let widthScale = Double(options.ngf) / 64
        return 2 * 16 * parameters + (192 << 20) + Int(6900 * widthScale * Double(pixels))
    }

    private func dataset(_ request: FineTuneRequest, options: TrainingOptions) throws -> UnalignedDataset {
        switch request.data {
        case .dataroot(let root): try UnalignedDataset(dataroot: root, options: options.data)
        case .folders(let a, let b): try UnalignedDataset(folderA: a, folderB: b, options: options.data)
        case .uploaded:
            try UnalignedDataset(
                folderA: uploads(request.model, "A").path, folderB: uploads(request.model, "B").path,
                options: options.data)
        }
    }

    private func fieldOfData(_ data: FineTuneRequest.Data) -> String {
        switch data {
        case .dataroot: "field 'dataroot'"
        case .folders: "fields 'dir_a'/'dir_b'"
        case .uploaded: "the uploaded images (training_data)"
        }
    }

    // MARK: Running

    public func run(_ request: FineTuneRequest, id: String, slot: LongJobSlot, control: TrainingJobControl) throws
        -> String
    {
        let options = try Self.options(request.options)
        try JobFile(store: store, model: request.model).write(SavedJob(id: id, request: request))
        let observer = JobObserver(control: control)
        let trainer = try Self.badRequest {
            try Trainer(trainingRequest(request, options: options), observer: observer, compute: slot.compute)
        }
        // print_freq as the run has it (a checkpoint's, unless the request gave one).
        observer.printFreq = trainer.options.printFreq
        let planned = trainer.plannedIterations
        control.progress { s in
            s.plannedIterations = planned
            s.epochSize = trainer.epochSize
        }
        let summary = try trainer.run {
            let command = control.next()
            switch command {
            case .proceed: return .proceed
            case .stop(let publish): return .stop(publish: publish)
            case .publish:
                do {
                    let version = try trainer.publish()
                    control.progress({ $0.publishedVersion = version }, event: .modelPublished)
                } catch {
                    control.progress { $0.message = "publishing failed, training goes on: \(error)" }
                }
                return .proceed
            }
        }
        if let version = summary.version {
            control.progress({ $0.publishedVersion = version }, event: .modelPublished)
        }
        let ending =
            switch summary.reason {
            case .finished: "the schedule ended"
            case .maxIters: "max_iters reached"
            case .stopped: "stopped"
            }
        return "\(ending) at iteration \(summary.iterations)"
            + (summary.version.map { "; published as version \($0)" } ?? "; checkpointed, not published")
    }

    // MARK: Jobs kept in the models' folders

    public func unfinishedJobs() -> [(id: String, request: FineTuneRequest)] {
        store.catalog().models.compactMap { manifest in
            (try? JobFile(store: store, model: manifest.name).read()).map { ($0.id, $0.request) }
        }
    }

    public func finish(model: String) {
        JobFile(store: store, model: model).remove()
    }

    public func rollback(model: String, version: Int) throws -> Int {
        guard (try? store.manifest(model)) ?? nil != nil else {
            throw DaemonError(.notFound, "field 'model': no model named \(model)")
        }
        do {
            try store.rollback(model: model, to: version)
            return try store.manifest(model)?.versionNumber ?? version
        } catch {
            throw DaemonError(.notFound, "\(error)")
        }
    }

    // MARK: Uploads

    private func uploads(_ model: String, _ domain: String) -> URL {
        store.trainingFolder(model).appendingPathComponent("data/train\(domain)")
    }

    public func storeUpload(model: String, domain: String, name: String, bytes: Data, clear: Bool) throws -> Int {
        guard (try? store.manifest(model)) ?? nil != nil else {
            throw DaemonError(.notFound, "field 'model': no model named \(model)")
        }
        let base = (name as NSString).lastPathComponent
        guard !base.isEmpty, !base.hasPrefix("."), base.count <= 200 else {
            throw DaemonError(.badRequest, "field 'name': '\(name)' is not a usable file name")
        }
        let folder = uploads(model, domain)
        let fm = FileManager.default
        if clear { try? fm.removeItem(at: folder) }
        try fm.createDirectory(at: folder, withIntermediateDirectories: true)
        // Checked before it joins the folder: a file that does not decode never becomes training data.
        let temporary = folder.appendingPathComponent(".upload-\(UInt32.random(in: 0...UInt32.max))-\(base)")
        defer { try? fm.removeItem(at: temporary) }
        do {
            try DurableFile.write(bytes, to: temporary.path)
            let source = try ImageSource(path: temporary.path)
            try source.decode()
        } catch let error as ImagingError {
            throw DaemonError(.unreadableImage, "\(base): \(error.reason); it was not kept")
        }
        // The checked file itself joins the folder (written and synced once).
        guard rename(temporary.path, folder.appendingPathComponent(base).path) == 0 else {
            throw DaemonError(.internal, "cannot keep \(base) in \(folder.path): \(String(cString: strerror(errno)))")
        }
        try DurableFile.syncFolder(folder.path)
        let names = (try? fm.contentsOfDirectory(atPath: folder.path)) ?? []
        return names.filter { !$0.hasPrefix(".") }.count
    }
}

/// The job's record in its model's folder.
struct SavedJob: Codable {
    var id: String
    var request: FineTuneRequest
}

/// `<model>/training/job.json`, written atomically.
struct JobFile {
    let url: URL

    init(store: ModelStore, model: String) {
        url = store.trainingFolder(model).appendingPathComponent("job.json")
    }

    func write(_ job: SavedJob) throws {
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try DurableFile.write(try encoder.encode(job), to: url.path)
    }

    func read() throws -> SavedJob {
        try JSONDecoder().decode(SavedJob.self, from: try Data(contentsOf: url))
    }

    func remove() { try? FileManager.default.removeItem(at: url) }
}

/// The trainer's reports, turned into the job's status: every iteration updates it, every
/// `print_freq` images is a `training_progress` event.
private final class JobObserver: TrainingObserver, @unchecked Sendable {
    let control: TrainingJobControl
    /// Set before the run starts, from the options it runs with.
    var printFreq = 100

    init(control: TrainingJobControl) {
        self.control = control
    }

    func message(_ text: String) {
        control.progress { $0.message = text }
    }

    func progress(_ p: TrainingProgress) {
        let logged = p.totalIters % printFreq == 0
        control.progress(
            { s in
                s.epoch = p.epoch
                s.lastEpoch = p.lastEpoch
                s.iters = p.epochIter
                s.epochSize = p.epochSize
                s.totalIters = p.totalIters
                s.iterations = p.iterations
                s.losses = Dictionary(uniqueKeysWithValues: zip(Losses.names, p.losses.values))
                s.itersPerSecond = p.iterationsPerSecond
                s.etaSeconds = p.secondsLeft
                s.skipped = p.skipped
            }, event: logged ? .trainingProgress : nil)
    }
}
