import Foundation
import Tensor

/// Element types of the safetensors format that cyclegand reads (all become
/// Float32 tensors); it writes F32 only.
public enum SafeTensorsDType: String, Sendable, CaseIterable {
    case f64 = "F64"
    case f32 = "F32"
    case f16 = "F16"
    case bf16 = "BF16"
    case i64 = "I64"
    case i32 = "I32"
    case i16 = "I16"
    case i8 = "I8"
    case u8 = "U8"
    case bool = "BOOL"

    public var byteSize: Int {
        switch self {
        case .f64, .i64: return 8
        case .f32, .i32: return 4
        case .f16, .bf16, .i16: return 2
        case .i8, .u8, .bool: return 1
        }
    }
}

public struct SafeTensorsError: Error, CustomStringConvertible, Sendable {
    public let file: String
    public let problem: String
    public var description: String { "\(file): not a valid safetensors file: \(problem)" }
}

/// A safetensors file mapped into memory.
///
/// The format: an 8-byte little-endian header length N, N bytes of JSON
/// (`{"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
/// "__metadata__": {"k": "v"}}`, padded with spaces to a multiple of 8), then
/// the raw little-endian data, offsets counted from the end of the header.
/// F32 tensors whose data is 4-byte aligned are views into the mapping (the
/// file object stays alive while any of them does); other types are converted
/// to Float32 copies.
public final class SafeTensorsFile: @unchecked Sendable {
    public struct Entry: Sendable, Equatable {
        public let dtype: SafeTensorsDType
        public let shape: [Int]
        /// Byte range within the data section (after the header).
        public let dataOffsets: Range<Int>
    }

    public let url: URL
    /// Tensor names in the order of their data in the file.
    public let names: [String]
    public let entries: [String: Entry]
    public let tensors: [String: Tensor]
    /// The `__metadata__` map (empty when the file has none).
    public let metadata: [String: String]

    public subscript(name: String) -> Tensor? { tensors[name] }

    public static func open(_ url: URL) throws -> SafeTensorsFile {
        try SafeTensorsFile(mapping: MappedFile(url: url))
    }

    init(mapping file: MappedFile) throws {
        url = file.url
        func fail(_ problem: String) -> SafeTensorsError {
            SafeTensorsError(file: file.url.path, problem: problem)
        }
        let bytes = file.bytes
        guard bytes.count >= 8 else {
            throw fail(
                "the file has \(bytes.count) bytes, fewer than the 8-byte header length (truncated?)")
        }
        let headerLength = UInt64(littleEndian: bytes.loadUnaligned(as: UInt64.self))
        guard headerLength <= UInt64(bytes.count - 8) else {
            throw fail(
                "the header length \(headerLength) runs past the end of the \(bytes.count)-byte file (truncated?)"
            )
        }
        let dataStart = 8 + Int(headerLength)
        let dataSize = bytes.count - dataStart
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: Data(bytes[8..<dataStart]), options: [])
        } catch {
            throw fail("the header is not valid JSON (\(error.localizedDescription))")
        }
        guard let header = json as? [String: Any] else { throw fail("the header is not a JSON object") }

        var metadata: [String: String] = [:]
        var entries: [String: Entry] = [:]
        for (name, value) in header {
            if name == "__metadata__" {
                guard let m = value as? [String: Any] else { throw fail("__metadata__ is not an object") }
                for (k, v) in m {
                    guard let s = v as? String else { throw fail("__metadata__[\"\(k)\"] is not a string") }
                    metadata[k] = s
                }
                continue
            }
            guard let info = value as? [String: Any] else {
                throw fail("entry \"\(name)\" is not an object")
            }
            guard let dtypeName = info["dtype"] as? String else { throw fail("\"\(name)\" has no dtype") }
            guard let dtype = SafeTensorsDType(rawValue: dtypeName) else {
                throw fail(
                    "\"\(name)\" has dtype \(dtypeName), which cyclegand does not read (it reads \(SafeTensorsDType.allCases.map(\.rawValue).joined(separator: ", ")))"
                )
            }
            guard let shapeValues = info["shape"] as? [Any], let shape = Self.integers(shapeValues),
                shape.allSatisfy({ $0 >= 0 })
            else { throw fail("\"\(name)\" has no valid shape") }
            guard let offsetValues = info["data_offsets"] as? [Any],
                let offsets = Self.integers(offsetValues),
                offsets.count == 2
            else { throw fail("\"\(name)\" has no valid data_offsets") }
            let (begin, end) = (offsets[0], offsets[1])
            guard begin >= 0, begin <= end, end <= dataSize else {
                throw fail(
                    "\"\(name)\" has data_offsets [\(begin), \(end)] outside the \(dataSize)-byte data section (truncated?)"
                )
            }
            let (count, overflow) = shape.reduce((1, false)) { acc, d in
                let r = acc.0.multipliedReportingOverflow(by: d)
                return (r.partialValue, acc.1 || r.overflow)
            }
            guard !overflow,
                count.multipliedReportingOverflow(by: dtype.byteSize) == (count * dtype.byteSize, false),
                count * dtype.byteSize == end - begin
            else {
                throw fail(
                    "\"\(name)\" has shape \(shape) of \(dtype.rawValue) but data_offsets [\(begin), \(end)] span \(end - begin) bytes"
                )
            }
            entries[name] = Entry(dtype: dtype, shape: shape, dataOffsets: begin..<end)
        }
        let ordered = entries.sorted { a, b in
            a.value.dataOffsets.lowerBound != b.value.dataOffsets.lowerBound
                ? a.value.dataOffsets.lowerBound < b.value.dataOffsets.lowerBound : a.key < b.key
        }
        for (a, b) in zip(ordered, ordered.dropFirst())
        where a.value.dataOffsets.upperBound > b.value.dataOffsets.lowerBound {
            throw fail("the data of \"\(a.key)\" and \"\(b.key)\" overlap")
        }

        var tensors: [String: Tensor] = [:]
        for (name, entry) in entries {
            let start = bytes.baseAddress.map { $0 + dataStart + entry.dataOffsets.lowerBound }
            tensors[name] = Self.tensor(entry, at: start, owner: file)
        }
        self.names = ordered.map(\.key)
        self.entries = entries
        self.tensors = tensors
        self.metadata = metadata
    }

    private static func integers(_ values: [Any]) -> [Int]? {
        var out: [Int] = []
        for v in values {
            // Bridging refuses non-integral numbers, so 2.5 is not a dimension.
            guard let n = v as? Int else { return nil }
            out.append(n)
        }
        return out
    }

    private static func tensor(_ entry: Entry, at start: UnsafeRawPointer?, owner: MappedFile)
        -> Tensor
    {
        guard let start, !entry.dataOffsets.isEmpty else { return Tensor(shape: entry.shape) }
        if entry.dtype == .f32, Int(bitPattern: start) % MemoryLayout<Float>.alignment == 0 {
            return Tensor(
                shape: entry.shape,
                borrowing: UnsafeMutableRawPointer(mutating: start).assumingMemoryBound(to: Float.self),
                owner: owner)
        }
        let t = Tensor(shape: entry.shape)
        ElementConversion.toFloat(from: start, dtype: entry.dtype, count: t.count, into: t.data)
        return t
    }
}

/// Conversion of raw little-endian elements to Float32.
enum ElementConversion {
    static func toFloat(
        from src: UnsafeRawPointer, dtype: SafeTensorsDType, count: Int,
        into dst: UnsafeMutablePointer<Float>
    ) {
        switch dtype {
        case .f32:
            for i in 0..<count {
                dst[i] = Float(
                    bitPattern: UInt32(
                        littleEndian: src.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
            }
        case .f64:
            for i in 0..<count {
                dst[i] = Float(
                    Double(
                        bitPattern: UInt64(
                            littleEndian: src.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))))
            }
        case .f16:
            for i in 0..<count {
                dst[i] = halfToFloat(
                    UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
            }
        case .bf16:
            for i in 0..<count {
                dst[i] = Float(
                    bitPattern: UInt32(
                        UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) << 16)
            }
        case .i64:
            for i in 0..<count {
                dst[i] = Float(
                    Int64(littleEndian: src.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self)))
            }
        case .i32:
            for i in 0..<count {
                dst[i] = Float(
                    Int32(littleEndian: src.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)))
            }
        case .i16:
            for i in 0..<count {
                dst[i] = Float(
                    Int16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self)))
            }
        case .i8:
            for i in 0..<count { dst[i] = Float(src.load(fromByteOffset: i, as: Int8.self)) }
        case .u8, .bool:
            for i in 0..<count { dst[i] = Float(src.load(fromByteOffset: i, as: UInt8.self)) }
        }
    }

    /// IEEE 754 binary16 to binary32, exact (subnormals, infinities, NaN kept).
    static func halfToFloat(_ h: UInt16) -> Float {
        let sign = UInt32(h & 0x8000) << 16
        let exponent = Int((h >> 10) & 0x1f)
        let mantissa = UInt32(h & 0x3ff)
        if exponent == 0 {
            // Zero or subnormal: mantissa · 2^-24.
            let magnitude = Float(mantissa) * 0x1p-24
            return Float(bitPattern: sign | magnitude.bitPattern)
        }
        if exponent == 31 { return Float(bitPattern: sign | 0x7f80_0000 | (mantissa << 13)) }
        return Float(bitPattern: sign | UInt32(exponent - 15 + 127) << 23 | (mantissa << 13))
    }
}

/// Writing safetensors files.
public enum SafeTensors {
    /// Writes `tensors` as F32 with `metadata` to `url`, atomically.
    ///
    /// The bytes are those Python's `safetensors` writes for the same float32
    /// tensors: entries sorted by name (byte order), compact JSON, header padded
    /// with spaces to 8 bytes, `__metadata__` first (omitted when empty; its
    /// keys sorted, where Python's order is that of a hash map and varies).
    public static func write(
        _ tensors: [(name: String, tensor: Tensor)], metadata: [String: String] = [:], to url: URL
    )
        throws
    {
        let sorted = tensors.sorted {
            Array($0.name.utf8).lexicographicallyPrecedes(Array($1.name.utf8))
        }
        for (a, b) in zip(sorted, sorted.dropFirst()) where a.name == b.name {
            throw SafeTensorsError(file: url.path, problem: "two tensors are named \"\(a.name)\"")
        }
        let header = headerBytes(sorted, metadata: metadata)
        try AtomicFile.write(to: url) { sink in
            var length = UInt64(header.count).littleEndian
            try withUnsafeBytes(of: &length) { try sink.append($0) }
            try sink.append(header)
            for (_, t) in sorted {
                #if _endian(big)
                    #error("safetensors data is little-endian; add a byte swap here")
                #endif
                try sink.append(UnsafeRawBufferPointer(start: t.data, count: t.count * 4))
            }
        }
    }

    /// The JSON header, padded with spaces to a multiple of 8 bytes.
    static func headerBytes(_ tensors: [(name: String, tensor: Tensor)], metadata: [String: String])
        -> [UInt8]
    {
        var json = "{"
        var first = true
        if !metadata.isEmpty {
            json += "\"__metadata__\":{"
            json += metadata.sorted { Array($0.key.utf8).lexicographicallyPrecedes(Array($1.key.utf8)) }
                .map { "\(JSONText.string($0.key)):\(JSONText.string($0.value))" }.joined(separator: ",")
            json += "}"
            first = false
        }
        var offset = 0
        for (name, t) in tensors {
            if !first { json += "," }
            first = false
            let end = offset + t.count * 4
            json +=
                "\(JSONText.string(name)):{\"dtype\":\"F32\",\"shape\":[\(t.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(end)]}"
            offset = end
        }
        json += "}"
        var bytes = Array(json.utf8)
        bytes += Array(repeating: UInt8(ascii: " "), count: (8 - bytes.count % 8) % 8)
        return bytes
    }
}

/// JSON string literals escaped as serde_json (Rust) escapes them, so our
/// headers match Python's byte for byte.
enum JSONText {
    static func string(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            case _ where scalar.value < 0x20:
                out += "\\u00" + String(format: "%02x", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
