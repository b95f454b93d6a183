import Daemon
import FileOutput
import Foundation
import Synchronization

/// What a connection does after a request.
enum Outcome: Sendable {
    case reply(EncodedReply)
    /// Reply, then stop the daemon.
    case shutdown(EncodedReply)
    /// Reply, then carry events until the client hangs up.
    case subscribe(RequestID)
}

/// Turns one request into its reply by calling the daemon's control surface. It knows the
/// commands of docs/PROTOCOL.md and nothing about sockets.
struct CommandDispatcher: Sendable {
    let control: any DaemonControl
    /// Largest inline payload and largest input file read on a peer's behalf.
    let maxInputBytes: Int

    static let commands = [
        "ping", "version", "status", "models", "directions", "translate", "jobs", "cancel", "reload",
        "shutdown", "subscribe", "finetune", "training", "rollback", "training_data",
    ]

    /// `progress` carries the progress lines a `translate` asks for, ahead of its reply.
    func handle(
        line: Data, envelope: Envelope?, payload: Data?, peer: PeerCredentials, progress: ProgressLines
    ) async -> Outcome {
        guard let envelope else {
            return .reply(
                .failure(
                    id: .null,
                    ControlError(
                        .badRequest, "a request must be one JSON object on one line, like {\"id\":1,\"cmd\":\"ping\"}"))
            )
        }
        let id = envelope.id
        if let problem = envelope.idProblem ?? envelope.cmdProblem {
            return .reply(.failure(id: id, ControlError(.badRequest, problem)))
        }
        let command = envelope.cmd ?? ""
        if payload != nil, command != "translate", command != "training_data" {
            return .reply(
                .failure(
                    id: id,
                    ControlError(
                        .badRequest,
                        "only translate and training_data take an inline payload; its \(payload!.count) bytes were skipped"
                    )
                ))
        }
        do {
            switch command {
            case "ping":
                return .reply(.make(id: id, body: ["pong": true]))
            case "version":
                let status = await control.status()
                return .reply(
                    .make(id: id, body: VersionBody(version: status.version, protocol: controlProtocolVersion)))
            case "status":
                return .reply(.make(id: id, body: StatusBody(status: await control.status())))
            case "models":
                return .reply(.make(id: id, body: ["models": await control.models()]))
            case "directions":
                return .reply(.make(id: id, body: ["directions": await control.directions()]))
            case "translate":
                return .reply(
                    try await translate(id: id, line: line, payload: payload, peer: peer, progress: progress))
            case "jobs":
                return .reply(.make(id: id, body: ["jobs": await control.jobs()]))
            case "cancel":
                let job = try decode(CancelParams.self, line).job
                let reply = await control.cancel(id: job)
                if reply.outcome == .notFound {
                    throw ControlError(.notFound, "no job '\(job)' is queued or running; `jobs` lists them")
                }
                return .reply(.make(id: id, body: reply))
            case "reload":
                return .reply(.make(id: id, body: try await control.reload()))
            case "shutdown":
                return .shutdown(.make(id: id, body: ["stopping": true]))
            case "subscribe":
                return .subscribe(id)
            case "finetune":
                return .reply(try await finetune(id: id, line: line, peer: peer))
            case "training":
                return .reply(try await training(id: id, line: line, peer: peer))
            case "rollback":
                return .reply(try await rollback(id: id, line: line))
            case "training_data":
                return .reply(try await trainingData(id: id, line: line, payload: payload))
            default:
                throw ControlError(
                    .unknownCommand,
                    "unknown command '\(command)'; protocol \(controlProtocolVersion) has: \(Self.commands.joined(separator: ", "))"
                )
            }
        } catch let error as ControlError {
            return .reply(.failure(id: id, error))
        } catch let error as DaemonError {
            return .reply(.failure(id: id, ControlError(error)))
        } catch {
            return .reply(.failure(id: id, ControlError(.internal, "\(error)")))
        }
    }

    private func translate(
        id: RequestID, line: Data, payload: Data?, peer: PeerCredentials, progress lines: ProgressLines
    ) async throws -> EncodedReply {
        let params = try decode(TranslateParams.self, line)
        if let problem = params.quality.flatMap(Quality.problem) { throw ControlError(.badRequest, problem) }
        let access = PeerFileAccess(peer: peer)
        let input: Data
        switch (params.input, payload) {
        case (let path?, nil): input = try access.readInput(path, limit: maxInputBytes)
        case (nil, let bytes?): input = bytes
        case (nil, nil):
            throw ControlError(
                .badRequest, "translate needs 'input' (a path) or an inline image ('bytes': N followed by N bytes)")
        case (.some, .some):
            throw ControlError(.badRequest, "give either 'input' or an inline image, not both")
        }
        // The output is checked before the work, so a bad path fails in milliseconds.
        let output = try params.output.map { try access.prepareOutput($0, overwrite: params.overwrite ?? false) }
        var format = params.format ?? .same
        if format == .same, let output, let byName = OutputFormat(fileName: output.path) {
            format = byName
        }
        let request = TranslateRequest(
            direction: params.direction, inputBytes: input, inputName: params.name ?? params.input ?? "inline.png",
            format: format, quality: params.quality, memoryLimit: params.memoryLimit)
        let result: TranslateReply
        let throttle = params.progress == true ? ProgressThrottle() : nil
        if let throttle {
            let control = control
            let hungUp = HangUp()
            result = try await control.translate(request) { report in
                if lines.isBroken {
                    // The client is gone and nobody will take the result: free the worker.
                    if hungUp.first() { Task { _ = await control.cancel(id: report.job) } }
                } else if let value = throttle.admit(report.fraction) {
                    lines.send(ProgressLine(id: id, job: report.job, progress: value).encoded)
                }
            }
        } else {
            result = try await control.translate(request)
        }
        let bytes = result.outputBytes
        var body = TranslateBody(
            job: result.id, direction: result.direction, output: nil, format: result.format, width: result.width,
            height: result.height, ms: result.milliseconds, bytes: nil, modelVersion: result.modelVersion)
        if let output {
            try output.write(bytes)
            body.output = output.path
        }
        if let last = throttle?.finish() {
            lines.send(ProgressLine(id: id, job: result.id, progress: last).encoded)
        }
        if output != nil { return .make(id: id, body: body) }
        body.bytes = bytes.count
        return .make(id: id, body: body, payload: bytes)
    }

    private func decode<T: Decodable>(_ type: T.Type, _ line: Data) throws -> T {
        do {
            return try WireJSON.decoder().decode(type, from: line)
        } catch {
            throw ControlError(.badRequest, WireJSON.describe(error))
        }
    }

}

struct TranslateParams: Decodable {
    var direction: String
    var input: String?
    var output: String?
    var name: String?
    var format: OutputFormat?
    var quality: Int?
    var memoryLimit: UInt64?
    var overwrite: Bool?
    /// Send `{"id", "job", "progress"}` lines before the reply.
    var progress: Bool?
}

struct CancelParams: Decodable {
    var job: String
}

struct VersionBody: Encodable {
    var version: String
    var `protocol`: Int
}

struct StatusBody: Encodable {
    var status: DaemonStatus
}

struct TranslateBody: Encodable {
    var job: String
    var direction: String
    var output: String?
    var format: OutputFormat
    var width: Int
    var height: Int
    var ms: Double
    var bytes: Int?
    var modelVersion: Int?
}
