import Foundation
import Tensor
import Testing

@testable import Models

@Suite struct SafeTensorsTests {
    @Test func readsWhatPythonWrote() throws {
        let file = try SafeTensorsFile.open(Fixtures.url("python_written.safetensors"))
        #expect(file.names == ["b", "model.1.bias", "model.1.weight", "scalar"])
        #expect(file.metadata == ["format": "pt"])
        #expect(file.entries["model.1.weight"]?.shape == [2, 3, 1, 1])
        #expect(file["model.1.weight"]?.array == arange(6))
        #expect(file["b"]?.array == arange(6, scale: 0.5))
        #expect(file["scalar"]?.shape == [])
        #expect(file["scalar"]?.array == [3.5])
        #expect(file["missing"] == nil)
    }

    @Test func convertsOtherFloatTypes() throws {
        let file = try SafeTensorsFile.open(Fixtures.url("python_mixed_dtypes.safetensors"))
        #expect(file.entries["half"]?.dtype == .f16)
        #expect(file["half"]?.array == arange(5))
        #expect(file["bf16"]?.array == arange(4))
        #expect(file.entries["double"]?.dtype == .f64)
        let double = try #require(file["double"]).array
        for (got, want) in zip(double, (0..<3).map { Float(Double($0) * 0.1 - 1) }) {
            #expect(got == want)
        }
        #expect(file["float"]?.array == arange(4))
    }

    @Test func halfPrecisionEdgeCases() {
        #expect(ElementConversion.halfToFloat(0x3c00) == 1)
        #expect(ElementConversion.halfToFloat(0xc000) == -2)
        #expect(ElementConversion.halfToFloat(0x0001) == 0x1p-24)
        #expect(ElementConversion.halfToFloat(0x7bff) == 65504)
        #expect(ElementConversion.halfToFloat(0x7c00) == .infinity)
        #expect(ElementConversion.halfToFloat(0x7e00).isNaN)
        #expect(ElementConversion.halfToFloat(0x8000).sign == .minus)
    }

    /// Python-reads-ours without Python: for the same float32 tensors and
    /// metadata our writer produces exactly the bytes safetensors wrote.
    @Test func writesTheBytesPythonWrites() throws {
        let dir = try ScratchDirectory()
        let out = dir.file("ours.safetensors")
        try SafeTensors.write(
            [
                ("model.1.weight", Tensor(shape: [2, 3, 1, 1], values: arange(6))),
                ("scalar", Tensor(shape: [], values: [3.5])),
                ("b", Tensor(shape: [3, 2], values: arange(6, scale: 0.5))),
                ("model.1.bias", Tensor(shape: [2], values: arange(2))),
            ], metadata: ["format": "pt"], to: out)
        let ours = try Data(contentsOf: out)
        let theirs = try Data(contentsOf: Fixtures.url("python_written.safetensors"))
        #expect(ours == theirs)
    }

    @Test func roundTripsWithMetadataAndEscapes() throws {
        let dir = try ScratchDirectory()
        let out = dir.file("x.safetensors")
        let metadata = [
            "format": "pt", "note": "quote \" backslash \\ newline \n tab \t bell \u{07} é 🦓",
        ]
        let weight = Tensor(shape: [4, 3, 7, 7], values: (0..<588).map { Float($0).squareRoot() })
        try SafeTensors.write(
            [("w", weight), ("empty", Tensor(shape: [0, 3]))], metadata: metadata, to: out)
        let file = try SafeTensorsFile.open(out)
        #expect(file.metadata == metadata)
        #expect(file.names == ["empty", "w"])
        #expect(try #require(file["w"]).maxAbsDifference(weight) == 0)
        #expect(file["empty"]?.shape == [0, 3])
        let size = try #require(
            try FileManager.default.attributesOfItem(atPath: out.path)[.size] as? Int)
        #expect((size - 588 * 4) % 8 == 0)
        // No temporary file is left beside the result.
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.url.path) == ["x.safetensors"])
    }

    @Test func refusesDuplicateNames() throws {
        let dir = try ScratchDirectory()
        #expect(throws: SafeTensorsError.self) {
            try SafeTensors.write(
                [("a", Tensor(shape: [1])), ("a", Tensor(shape: [1]))], to: dir.file("d.safetensors"))
        }
    }

    /// A file of `header` JSON (padded) followed by `dataBytes` zero bytes.
    private func craft(
        _ header: String, dataBytes: Int, in dir: ScratchDirectory, lengthDelta: Int = 0
    ) throws -> URL {
        var h = Array(header.utf8)
        h += Array(repeating: UInt8(ascii: " "), count: (8 - h.count % 8) % 8)
        var bytes = withUnsafeBytes(of: UInt64(h.count + lengthDelta).littleEndian) { Array($0) }
        bytes += h + Array(repeating: 0, count: dataBytes)
        let url = dir.file("crafted-\(UUID().uuidString).safetensors")
        try Data(bytes).write(to: url)
        return url
    }

    private func problem(_ url: URL) -> String? {
        do {
            _ = try SafeTensorsFile.open(url)
            return nil
        } catch {
            return "\(error)"
        }
    }

    @Test func refusesCorruptFiles() throws {
        let dir = try ScratchDirectory()
        let ok = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#
        #expect(problem(try craft(ok, dataBytes: 8, in: dir)) == nil)

        let tiny = dir.file("tiny.safetensors")
        try Data([1, 2, 3]).write(to: tiny)
        #expect(problem(tiny)?.contains("fewer than the 8-byte header length") == true)
        #expect(
            problem(try craft(ok, dataBytes: 8, in: dir, lengthDelta: 1000))?.contains(
                "runs past the end") == true)
        #expect(
            problem(try craft(ok, dataBytes: 4, in: dir))?.contains("outside the 4-byte data section")
                == true)
        #expect(
            problem(try craft("{not json", dataBytes: 0, in: dir))?.contains("not valid JSON") == true)
        let overlap =
            #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#
        #expect(problem(try craft(overlap, dataBytes: 12, in: dir))?.contains("overlap") == true)
        let mismatch = #"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#
        #expect(problem(try craft(mismatch, dataBytes: 8, in: dir))?.contains("span 8 bytes") == true)
        let dtype = #"{"a":{"dtype":"C64","shape":[1],"data_offsets":[0,8]}}"#
        #expect(problem(try craft(dtype, dataBytes: 8, in: dir))?.contains("dtype C64") == true)
        let metadata = #"{"__metadata__":{"k":1}}"#
        #expect(problem(try craft(metadata, dataBytes: 0, in: dir))?.contains("not a string") == true)
        let truncated = try Data(contentsOf: Fixtures.url("python_written.safetensors")).dropLast(5)
        let cut = dir.file("cut.safetensors")
        try truncated.write(to: cut)
        #expect(problem(cut)?.contains("outside") == true)
    }

    @Test func viewsKeepTheMappingAlive() throws {
        let t: Tensor = try {
            let file = try SafeTensorsFile.open(Fixtures.url("python_written.safetensors"))
            return try #require(file["model.1.weight"])
        }()
        #expect(t.array == arange(6))
    }
}

@Suite struct ChecksumTests {
    private func sha(_ bytes: [UInt8]) -> String { bytes.withUnsafeBytes { SHA256.hex($0) } }

    @Test func sha256KnownAnswers() {
        #expect(sha([]) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(sha(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(
            sha(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        #expect(
            sha([UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000))
                == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    @Test func systemAndPortableSHA256Agree() throws {
        try #require(SystemSHA256.isAvailable, "libcrypto.so.3 (libssl3, which libvips pulls in) is missing")
        for count in [0, 1, 55, 56, 64, 1000, 100_003] {
            let bytes = (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 8) }
            bytes.withUnsafeBytes { b in
                #expect(SystemSHA256.digest(b) == SHA256.portableDigest(b), "\(count) bytes")
            }
        }
    }

    @Test func sha256InPiecesEqualsWhole() {
        let bytes = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        var h = SHA256()
        for chunk in [0..<1, 1..<63, 63..<64, 64..<200, 200..<1000] { h.update(Array(bytes[chunk])) }
        #expect(h.finish().map { String(format: "%02x", $0) }.joined() == sha(bytes))
    }

    @Test func crc32KnownAnswer() {
        #expect(Array("123456789".utf8).withUnsafeBytes { CRC32.checksum($0) } == 0xCBF4_3926)
    }
}
