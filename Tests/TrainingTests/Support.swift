import Foundation
import Models
import Tensor

/// Tests/Fixtures/<path>, found from this source file's path.
func fixture(_ path: String, filePath: String = #filePath) -> URL {
    URL(fileURLWithPath: filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures").appendingPathComponent(path)
}

/// The repository's top folder.
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

/// A fresh temporary directory, removed when the value is released.
final class Scratch {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("cyclegand-training-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(at: url) }

    func path(_ name: String) -> String { url.appendingPathComponent(name).path }
}

/// Every tensor of a safetensors fixture, copied out of the mapping.
func tensors(_ url: URL) throws -> [String: Tensor] {
    try SafeTensorsFile.open(url).tensors.mapValues { $0.copy() }
}

/// The `cyclegand` executable `swift build --build-tests` put beside this test bundle.
let cyclegandBinary: String? = {
    let beside = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        .appendingPathComponent("cyclegand").path
    return FileManager.default.isExecutableFile(atPath: beside) ? beside : nil
}()

/// Runs `cyclegand` with `arguments` (and `environment` over this process' own); returns its exit status and
/// what it printed.
@discardableResult
func cyclegand(_ arguments: [String], environment: [String: String] = [:]) throws -> (status: Int32, output: String) {
    let process = try startCyclegand(arguments, environment: environment)
    let output = process.standardOutput as! Pipe
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// Starts `cyclegand` with `arguments` (and `environment` over this process' own), standard output and error
/// into one pipe.
func startCyclegand(_ arguments: [String], environment: [String: String] = [:]) throws -> Process {
    guard let cyclegandBinary else { throw TestSupportError("no cyclegand binary beside the test bundle") }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: cyclegandBinary)
    process.arguments = arguments
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    return process
}

struct TestSupportError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
