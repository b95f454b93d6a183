import Daemon
import Foundation

// The fine-tune commands of docs/PROTOCOL.md: finetune, training, rollback, training_data.
// Fields are checked here, before anything starts; the daemon checks the options and the model.

extension CommandDispatcher {
    func finetune(id: RequestID, line: Data, peer: PeerCredentials) async throws -> EncodedReply {
        let fields = try object(
            line, allowed: ["id", "cmd", "model", "dataroot", "dir_a", "dir_b", "uploaded", "options"])
        let model = try string(fields, "model")
        let access = PeerFileAccess(peer: peer)
        let data: FineTuneRequest.Data
        let given = ["dataroot", "dir_a", "dir_b"].filter { fields[$0] != nil }
        let uploaded = try bool(fields, "uploaded") ?? false
        switch (given, uploaded) {
        case (["dataroot"], false):
            let root = try access.readableFolder(try string(fields, "dataroot"), what: "dataroot")
            for sub in ["trainA", "trainB"] {
                _ = try access.readableFolder(root + "/" + sub, what: "dataroot's \(sub)")
            }
            data = .dataroot(root)
        case (["dir_a", "dir_b"], false):
            data = .folders(
                a: try access.readableFolder(try string(fields, "dir_a"), what: "dir_a"),
                b: try access.readableFolder(try string(fields, "dir_b"), what: "dir_b"))
        case ([], true):
            data = .uploaded
        default:
            throw ControlError(
                .badRequest,
                "finetune needs the images: 'dataroot' (a folder with trainA/ and trainB/), or 'dir_a' and 'dir_b', "
                    + "or 'uploaded': true after training_data uploads")
        }
        var options: [String: OptionValue] = [:]
        if let raw = fields["options"] {
            guard case .object(let dictionary) = raw else {
                throw ControlError(.badRequest, "field 'options' should be an object of training options")
            }
            for (key, value) in dictionary {
                switch value {
                case .bool(let b): options[key] = .bool(b)
                case .number(let n): options[key] = .number(n)
                case .string(let s): options[key] = .string(s)
                default:
                    throw ControlError(.badRequest, "option '\(key)' should be a boolean, a number or a string")
                }
            }
        }
        let status = try await control.finetune(
            FineTuneRequest(model: model, data: data, options: options, owner: peer.uid))
        return .make(id: id, body: TrainingBody(training: status))
    }

    func training(id: RequestID, line: Data, peer: PeerCredentials) async throws -> EncodedReply {
        let fields = try object(line, allowed: ["id", "cmd", "action", "publish"])
        let action = try fields["action"] == nil ? "status" : string(fields, "action")
        let status = try await control.training(
            action: action, publish: try bool(fields, "publish") ?? true, peer: peer.uid)
        return .make(id: id, body: TrainingBody(training: status))
    }

    func rollback(id: RequestID, line: Data) async throws -> EncodedReply {
        let fields = try object(line, allowed: ["id", "cmd", "model", "version"])
        let model = try string(fields, "model")
        guard let number = fields["version"]?.number, number == number.rounded(), number >= 1, number < 1e9 else {
            throw ControlError(
                .badRequest, "field 'version' should be a version number (1 or more; `models` shows them)")
        }
        let now = try await control.rollback(model: model, version: Int(number))
        return .make(id: id, body: RollbackBody(model: model, version: now))
    }

    func trainingData(id: RequestID, line: Data, payload: Data?) async throws -> EncodedReply {
        let fields = try object(line, allowed: ["id", "cmd", "model", "domain", "name", "clear", "bytes"])
        let model = try string(fields, "model")
        let domain = try string(fields, "domain")
        guard domain == "A" || domain == "B" else {
            throw ControlError(.badRequest, "field 'domain' should be \"A\" or \"B\"")
        }
        let name = try string(fields, "name")
        guard let payload, !payload.isEmpty else {
            throw ControlError(.badRequest, "training_data carries one image as an inline payload ('bytes': N)")
        }
        let count = try await control.uploadTrainingImage(
            model: model, domain: domain, name: name, bytes: payload, clear: try bool(fields, "clear") ?? false)
        return .make(id: id, body: UploadBody(model: model, domain: domain, images: count))
    }

    /// The request as a JSON object whose fields are all known (a misspelt one is an error, not ignored).
    private func object(_ line: Data, allowed: Set<String>) throws -> [String: JSONValue] {
        guard case .object(let fields)? = try? JSONDecoder().decode(JSONValue.self, from: line) else {
            throw ControlError(.badRequest, "a request must be one JSON object on one line")
        }
        if let unknown = fields.keys.sorted().first(where: { !allowed.contains($0) }) {
            throw ControlError(
                .badRequest,
                "unknown field '\(unknown)'; this command takes \(allowed.sorted().joined(separator: ", "))"
            )
        }
        return fields
    }

    private func string(_ fields: [String: JSONValue], _ key: String) throws -> String {
        guard let value = fields[key] else { throw ControlError(.badRequest, "field '\(key)' is required") }
        guard let text = value.string, !text.isEmpty else {
            throw ControlError(.badRequest, "field '\(key)' should be a non-empty string")
        }
        return text
    }

    private func bool(_ fields: [String: JSONValue], _ key: String) throws -> Bool? {
        guard let value = fields[key] else { return nil }
        guard let b = value.bool else { throw ControlError(.badRequest, "field '\(key)' should be true or false") }
        return b
    }
}

struct TrainingBody: Encodable {
    var training: TrainingJobStatus
}

struct RollbackBody: Encodable {
    var model: String
    var version: Int
}

struct UploadBody: Encodable {
    var model: String
    var domain: String
    var images: Int
}
