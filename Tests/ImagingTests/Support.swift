import Foundation
import Imaging
import Testing

/// Fixture files, found from this source file's path (not SwiftPM resources).
enum Fixtures {
    static let directory: String = {
        var url = URL(fileURLWithPath: #filePath)
        while url.lastPathComponent != "Tests" { url.deleteLastPathComponent() }
        return url.appendingPathComponent("Fixtures/imaging").path
    }()

    static func path(_ name: String) -> String { directory + "/" + name }
}

/// A fresh directory for one test, removed when the value goes out of scope.
final class Scratch {
    let path: String

    init() throws {
        path = NSTemporaryDirectory() + "/cyclegand-imaging-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func file(_ name: String) -> String { path + "/" + name }

    /// Names in the directory, sorted (hidden files included).
    var contents: [String] { ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted() }

    func copy(_ fixture: String, as name: String) throws -> String {
        let destination = file(name)
        try FileManager.default.copyItem(atPath: Fixtures.path(fixture), toPath: destination)
        return destination
    }

    func write(_ bytes: [UInt8], as name: String) throws -> String {
        let destination = file(name)
        try Data(bytes).write(to: URL(fileURLWithPath: destination))
        return destination
    }
}

/// The `vips` command-line tools, used to make inputs and to inspect outputs
/// independently of the code under test.
enum VipsCLI {
    @discardableResult
    static func run(_ tool: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [tool] + arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// Runs `vips ARGS`, failing the test when it fails.
    static func vips(_ arguments: String...) throws {
        let result = try run("vips", arguments)
        #expect(result.status == 0, "vips \(arguments.joined(separator: " ")) failed")
    }

    /// Whether this libvips can write (and so probably read) the format.
    static func canWrite(_ suffix: String) -> Bool {
        let scratch = NSTemporaryDirectory() + "/cyclegand-probe-\(UUID().uuidString).\(suffix)"
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        return (try? run("vips", ["black", scratch, "8", "8", "--bands", "3"]).status) == 0
    }

    static func field(_ path: String, _ name: String) throws -> String? {
        let result = try run("vipsheader", ["-f", name, path])
        return result.status == 0 ? result.output.trimmingCharacters(in: .whitespacesAndNewlines) : nil
    }

    /// Decoded pixels as libvips' own CLI gives them (no autorotation or colour
    /// conversion): width, height, bands, and the band-interleaved bytes.
    static func raw(_ path: String) throws -> (width: Int, height: Int, bands: Int, bytes: [UInt8]) {
        let out = NSTemporaryDirectory() + "/cyclegand-raw-\(UUID().uuidString).raw"
        defer { try? FileManager.default.removeItem(atPath: out) }
        try vips("rawsave", path, out)
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: out)))
        return (
            Int(try field(path, "width") ?? "0") ?? 0, Int(try field(path, "height") ?? "0") ?? 0,
            Int(try field(path, "bands") ?? "0") ?? 0, bytes
        )
    }

    static func loader(_ path: String) throws -> String? { try field(path, "vips-loader") }
}

/// Pixel helpers on [1, 3, H, W] tensors in [-1, 1].
extension LoadedImage {
    var width: Int { tensor.shape[3] }
    var height: Int { tensor.shape[2] }

    /// 8-bit value of channel c at (x, y).
    func byte(_ c: Int, _ x: Int, _ y: Int) -> Int {
        Int(((tensor.data[(c * height + y) * width + x] + 1) * 127.5).rounded())
    }

    /// Mean 8-bit RGB over a rectangle.
    func mean(x: Range<Int>, y: Range<Int>) -> [Double] {
        (0..<3).map { c in
            var sum = 0.0
            for yy in y { for xx in x { sum += Double(byte(c, xx, yy)) } }
            return sum / Double(x.count * y.count)
        }
    }
}

/// Largest difference between two byte arrays (Int.max when their lengths differ).
func maxDifference(_ a: [UInt8], _ b: [UInt8]) -> Int {
    guard a.count == b.count else { return Int.max }
    return zip(a, b).map { abs(Int($0) - Int($1)) }.max() ?? 0
}

/// Mean absolute difference (infinity when the lengths differ).
func meanDifference(_ a: [UInt8], _ b: [UInt8]) -> Double {
    guard a.count == b.count else { return .infinity }
    return Double(zip(a, b).map { abs(Int($0) - Int($1)) }.reduce(0, +)) / Double(max(a.count, 1))
}

/// Runs `body` expecting an ImagingError, and returns it.
func expectImagingError(_ body: () throws -> Void, sourceLocation: SourceLocation = #_sourceLocation) -> ImagingError? {
    do {
        try body()
        Issue.record("expected an ImagingError", sourceLocation: sourceLocation)
    } catch let error as ImagingError {
        #expect(!error.description.contains("\n"), "one-line message: \(error)", sourceLocation: sourceLocation)
        return error
    } catch {
        Issue.record("expected an ImagingError, got \(error)", sourceLocation: sourceLocation)
    }
    return nil
}
