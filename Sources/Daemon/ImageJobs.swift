import FileOutput
import Foundation

/// What a worker does with a job: a watch-folder file goes from work/ to the outbox (or to
/// failed/ with its sidecar), an interactive request becomes its reply, a long job runs in the
/// share of the machine the `Allotment` gives it. Each image is reported in the log, in the
/// counters and as an event.
struct ImageJobs: Sendable {
    let spool: Spool
    let translator: Translator
    let settings: Settings
    let models: ModelDirections
    let status: ServiceStatus
    let hub: EventHub
    let allotment: Allotment

    func run(_ job: Scheduler.Job) {
        switch job.payload {
        case .watch(let item): run(item, job: job)
        case .interactive(let request): run(request, job: job)
        case .long(let long): run(long, job: job)
        }
        status.update()
    }

    // MARK: Long jobs

    private func run(_ long: LongJob, job: Scheduler.Job) {
        let grant = allotment.admitLongJob(bytes: long.bytes, limit: MemoryBudget.bytes(settings.config.memoryLimit))
        defer { allotment.release(grant) }
        do {
            try long.run(slot: LongJobSlot(grant: grant), cancel: job.cancel)
            settings.log.notice("long job \(job.id) (\(job.label)) finished")
        } catch {
            settings.log.warning("long job \(job.id) (\(job.label)) ended: \(error)")
        }
    }

    // MARK: Watch folders

    private func run(_ item: WorkItem, job: Scheduler.Job) {
        let config = settings.config
        guard models.offers(item.direction) else {
            let known = models.names
            fail(
                item,
                DaemonError(
                    .noModel,
                    "no model offers the direction \"\(item.direction)\" (known: \(known.isEmpty ? "none" : known.joined(separator: ", "))); import a model for it or move the file to another inbox"
                ))
            return
        }
        let (format, outputName) = OutputNaming.resolve(inputName: item.name, configured: config.outputFormat)
        let options = TranslationOptions(
            format: format, quality: config.quality, memoryLimit: config.memoryLimit, maxPixels: config.maxPixels)
        // The translator writes into the job's work folder; the result becomes visible in the
        // outbox with one link (Spool.commitOutput).
        let temporary = spool.temporaryOutput(for: item, outputName: outputName)
        do {
            if job.cancel.isCancelled { throw DaemonError(.cancelled, "cancelled before it started") }
            let result = try translator.translate(
                input: URL(fileURLWithPath: item.input), output: URL(fileURLWithPath: temporary),
                direction: item.direction, options: options, cancel: job.cancel)
            // A cancel that came while the image was being translated still keeps it out of the outbox.
            if job.cancel.isCancelled { throw DaemonError(.cancelled, "cancelled on request while it was translated") }
            let written = try spool.commitOutput(
                item, temporary: temporary, outputName: outputName, policy: config.onConflict)
            try spool.finish(item, keepOriginal: config.keepOriginals)
            status.imageDone()
            settings.log.info(
                "\(item.direction) \(item.relativePath) \(result.width)x\(result.height) \(Int(result.milliseconds.rounded())) ms -> outbox/\(item.direction)/\(written)"
            )
            hub.publish(
                DaemonEvent(
                    kind: .imageDone, jobId: item.id, jobKind: .watch, direction: item.direction,
                    input: item.relativePath, output: spool.outbox(item.direction) + "/" + written,
                    width: result.width, height: result.height, milliseconds: result.milliseconds,
                    modelVersion: result.modelVersion))
        } catch {
            FS.remove(temporary)
            fail(item, Self.daemonError(error))
        }
    }

    /// Moves a watch-folder file to failed/ with its sidecar (also for a job cancelled in the queue).
    func fail(_ item: WorkItem, _ error: DaemonError) {
        status.imageFailed()
        let log = settings.log
        do {
            let path = try spool.fail(item, error: error)
            log.warning(
                "\(item.direction) \(item.relativePath) failed (\(error.code.rawValue)): \(error.message) -> \(path)")
        } catch {
            log.error("\(item.direction) \(item.relativePath) failed and could not be moved to failed/: \(error)")
        }
        hub.publish(
            DaemonEvent(
                kind: .imageFailed, jobId: item.id, jobKind: .watch, direction: item.direction,
                input: item.relativePath, error: error))
    }

    static func daemonError(_ error: Error) -> DaemonError {
        if let e = error as? DaemonError { return e }
        if let e = error as? FS.Failure { return DaemonError(.writeFailed, e.description) }
        if let e = error as? DurableFile.Failure { return DaemonError(.writeFailed, e.description) }
        return DaemonError(.translationFailed, String(describing: error))
    }

    // MARK: Interactive

    private func run(_ job: InteractiveJob, job entry: Scheduler.Job) {
        let started = Date()
        do {
            let reply = try translate(job.request, id: entry.id, cancel: entry.cancel, progress: job.progress)
            status.imageDone()
            settings.log.info(
                "\(reply.direction) \(entry.label) \(reply.width)x\(reply.height) \(Int(reply.milliseconds.rounded())) ms -> inline reply (interactive)"
            )
            hub.publish(
                DaemonEvent(
                    kind: .imageDone, jobId: entry.id, jobKind: .interactive, direction: reply.direction,
                    input: entry.label, width: reply.width, height: reply.height,
                    milliseconds: reply.milliseconds))
            job.resolve(.success(reply))
        } catch {
            let e = Self.daemonError(error)
            status.imageFailed()
            settings.log.warning(
                "\(entry.direction) \(entry.label) failed (\(e.code.rawValue)) after \(Int(Date().timeIntervalSince(started) * 1000)) ms: \(e.message) (interactive)"
            )
            hub.publish(
                DaemonEvent(
                    kind: .imageFailed, jobId: entry.id, jobKind: .interactive, direction: entry.direction,
                    input: entry.label, error: e))
            job.resolve(.failure(e))
        }
    }

    /// Translates in a scratch folder under work/ (removed afterwards, or at the next start) and
    /// returns the encoded result.
    private func translate(
        _ request: TranslateRequest, id: String, cancel: CancellationFlag,
        progress: @escaping @Sendable (Double) -> Void
    ) throws -> TranslateReply {
        let config = settings.config
        guard models.offers(request.direction) else {
            throw DaemonError(.notFound, "no model offers the direction \"\(request.direction)\"")
        }
        if cancel.isCancelled { throw DaemonError(.cancelled, "cancelled before it started") }
        let scratch = try spool.interactiveScratch(id: id)
        defer { try? FileManager.default.removeItem(atPath: scratch) }

        let name = (request.inputName.map { ($0 as NSString).lastPathComponent } ?? "input.png")
        let input = scratch + "/" + (IncomingName.isIgnored(name) ? "input.png" : name)
        try DurableFile.write(request.inputBytes, to: input)
        let format = OutputNaming.resolve(inputName: input, configured: request.format ?? config.outputFormat).0
        let options = TranslationOptions(
            format: format, quality: request.quality ?? config.quality,
            memoryLimit: MemoryBudget.share(asked: request.memoryLimit, daemon: config.memoryLimit),
            sharedMemoryLimit: config.memoryLimit, maxPixels: config.maxPixels)
        let output = scratch + "/output." + format.fileExtension!
        let result = try translator.translate(
            input: URL(fileURLWithPath: input), output: URL(fileURLWithPath: output), direction: request.direction,
            options: options, cancel: cancel, progress: progress)
        if cancel.isCancelled { throw DaemonError(.cancelled, "cancelled on request while it was translated") }
        guard let bytes = FileManager.default.contents(atPath: output) else {
            throw DaemonError(.internal, "the translator reported success but wrote no \(output)")
        }
        return TranslateReply(
            id: id, direction: request.direction, outputBytes: bytes, format: format, width: result.width,
            height: result.height, milliseconds: result.milliseconds, modelVersion: result.modelVersion)
    }
}
