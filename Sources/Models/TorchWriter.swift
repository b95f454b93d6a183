import Foundation
import Tensor

/// Writes a state dict as `torch.save` does since PyTorch 1.6: a zip archive
/// (entries stored, data 64-byte aligned) holding `<name>/data.pkl` (an
/// OrderedDict of `torch._utils._rebuild_tensor_v2` calls over persistent
/// storage ids), `<name>/byteorder`, `<name>/data/<key>` and `<name>/version`.
/// `torch.load(weights_only=True)` accepts it, because it uses only the
/// globals that loader allows.
public enum TorchCheckpointWriter {
    public static func write(_ tensors: [(name: String, tensor: Tensor)], to url: URL) throws {
        let archive = url.deletingPathExtension().lastPathComponent
        let pickle = statePickle(tensors.map { ($0.name, $0.tensor.shape) })
        let small: [(name: String, bytes: [UInt8])] = [
            ("data.pkl", pickle), (".format_version", Array("1".utf8)),
            (".storage_alignment", Array("64".utf8)),
            ("byteorder", Array("little".utf8)), ("version", Array("3\n".utf8)),
        ]
        // One buffer for the small records, so their pointers stay valid while writing.
        let blob = small.flatMap(\.bytes)
        try blob.withUnsafeBytes { all in
            var records: [(name: String, bytes: UnsafeRawBufferPointer)] = []
            var offset = 0
            for (name, bytes) in small.dropLast() {
                records.append(
                    (
                        "\(archive)/\(name)",
                        UnsafeRawBufferPointer(rebasing: all[offset..<offset + bytes.count])
                    ))
                offset += bytes.count
            }
            for (i, (_, t)) in tensors.enumerated() {
                records.append(
                    ("\(archive)/data/\(i)", UnsafeRawBufferPointer(start: t.data, count: t.count * 4)))
            }
            records.append(("\(archive)/version", UnsafeRawBufferPointer(rebasing: all[offset...])))
            try AtomicFile.write(to: url) { sink in try ZipWriter.write(records, to: &sink) }
        }
    }

    /// The pickle (protocol 2) of an OrderedDict name → tensor, storages by key "0", "1", ...
    static func statePickle(_ entries: [(name: String, shape: [Int])]) -> [UInt8] {
        var p = PickleWriter()
        p.op(0x80)
        p.byte(2)  // PROTO 2
        p.global("collections", "OrderedDict")
        p.op(0x29)  // EMPTY_TUPLE
        p.op(0x52)  // REDUCE
        if !entries.isEmpty {
            p.op(0x28)  // MARK
            for (i, (name, shape)) in entries.enumerated() {
                let count = shape.reduce(1, *)
                var strides = [Int](repeating: 1, count: shape.count)
                for d in stride(from: shape.count - 2, through: 0, by: -1) {
                    strides[d] = strides[d + 1] * shape[d + 1]
                }
                p.string(name)
                p.global("torch._utils", "_rebuild_tensor_v2")
                p.op(0x28)  // MARK: the arguments
                p.op(0x28)  // MARK: the persistent id
                p.string("storage")
                p.global("torch", "FloatStorage")
                p.string("\(i)")
                p.string("cpu")
                p.int(count)
                p.op(0x74)  // TUPLE
                p.op(0x51)  // BINPERSID
                p.int(0)  // storage offset
                p.tuple(shape)
                p.tuple(strides)
                p.op(0x89)  // NEWFALSE: requires_grad
                p.global("collections", "OrderedDict")
                p.op(0x29)
                p.op(0x52)  // backward hooks: OrderedDict()
                p.op(0x74)  // TUPLE
                p.op(0x52)  // REDUCE
            }
            p.op(0x75)  // SETITEMS
        }
        p.op(0x2E)  // STOP
        return p.bytes
    }
}

/// Emits pickle opcodes.
struct PickleWriter {
    var bytes: [UInt8] = []
    /// GLOBALs already written, by memo index, so each appears once as torch writes them.
    private var memo: [String: UInt8] = [:]

    mutating func op(_ code: UInt8) { bytes.append(code) }
    mutating func byte(_ b: UInt8) { bytes.append(b) }

    mutating func le(_ v: UInt64, _ n: Int) {
        for i in 0..<n { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) }
    }

    mutating func global(_ module: String, _ name: String) {
        let key = "\(module)\n\(name)\n"
        if let index = memo[key] {
            op(0x68)  // BINGET
            byte(index)
            return
        }
        op(0x63)  // GLOBAL
        bytes += Array(key.utf8)
        if memo.count < 256 {
            let index = UInt8(memo.count)
            memo[key] = index
            op(0x71)  // BINPUT
            byte(index)
        }
    }

    mutating func string(_ s: String) {
        let utf8 = Array(s.utf8)
        op(0x58)  // BINUNICODE
        le(UInt64(utf8.count), 4)
        bytes += utf8
    }

    mutating func int(_ v: Int) {
        switch v {
        case 0..<256:
            op(0x4B)  // BININT1
            byte(UInt8(v))
        case 256..<65536:
            op(0x4D)  // BININT2
            le(UInt64(v), 2)
        case Int(Int32.min)...Int(Int32.max):
            op(0x4A)  // BININT
            le(UInt64(bitPattern: Int64(v)), 4)
        default:
            op(0x8A)  // LONG1, 8 bytes two's complement
            byte(8)
            le(UInt64(bitPattern: Int64(v)), 8)
        }
    }

    mutating func tuple(_ values: [Int]) {
        switch values.count {
        case 0: op(0x29)
        case 1...3:
            for v in values { int(v) }
            op(0x84 + UInt8(values.count))  // TUPLE1..3
        default:
            op(0x28)
            for v in values { int(v) }
            op(0x74)
        }
    }
}

/// A minimal zip writer: stored entries, sizes and CRC in the local headers,
/// each entry's data aligned to 64 bytes with a padding extra field (as
/// PyTorch's writer does, so readers can map tensors in place), zip64 records
/// when the archive passes 4 GiB.
enum ZipWriter {
    static func write(
        _ records: [(name: String, bytes: UnsafeRawBufferPointer)], to sink: inout FileSink
    ) throws {
        var central: [UInt8] = []
        var needsZip64 = false
        for (name, data) in records {
            let nameBytes = Array(name.utf8)
            let crc = CRC32.checksum(data)
            let headerOffset = sink.offset
            let big = data.count >= 0xFFFF_FFFF || headerOffset >= 0xFFFF_FFFF
            needsZip64 = needsZip64 || big
            // Local header: 30 bytes + name + extra; pad the extra so the data starts at a multiple of 64.
            var extra: [UInt8] = []
            if big { extra += zip64Extra(size: data.count, offset: nil) }
            let unpadded = headerOffset + 30 + nameBytes.count + extra.count + 4
            let padding = (64 - unpadded % 64) % 64
            extra += le16(0x4246) + le16(padding) + [UInt8](repeating: 0x5A, count: padding)  // "FB"
            var local: [UInt8] =
                le32(0x0403_4b50) + le16(big ? 45 : 20) + le16(0x0800) + le16(0) + le16(0) + le16(0x21)
            local +=
                le32(crc) + le32(big ? 0xFFFF_FFFF : data.count) + le32(big ? 0xFFFF_FFFF : data.count)
            local += le16(nameBytes.count) + le16(extra.count) + nameBytes + extra
            try sink.append(local)
            try sink.append(data)

            let centralExtra = big ? zip64Extra(size: data.count, offset: headerOffset) : []
            central +=
                le32(0x0201_4b50) + le16(big ? 45 : 20) + le16(big ? 45 : 20) + le16(0x0800) + le16(0)
            central += le16(0) + le16(0x21) + le32(crc)
            central += le32(big ? 0xFFFF_FFFF : data.count) + le32(big ? 0xFFFF_FFFF : data.count)
            central +=
                le16(nameBytes.count) + le16(centralExtra.count) + le16(0) + le16(0) + le16(0) + le32(0)
            central += le32(big ? 0xFFFF_FFFF : headerOffset) + nameBytes + centralExtra
        }
        let directoryOffset = sink.offset
        try sink.append(central)
        let count = records.count
        if needsZip64 || directoryOffset >= 0xFFFF_FFFF || count >= 0xFFFF {
            let recordOffset = sink.offset
            var z64: [UInt8] = le32(0x0606_4b50) + le64(44) + le16(45) + le16(45) + le32(0) + le32(0)
            z64 += le64(count) + le64(count) + le64(central.count) + le64(directoryOffset)
            z64 += le32(0x0706_4b50) + le32(0) + le64(recordOffset) + le32(1)
            try sink.append(z64)
        }
        var end: [UInt8] =
            le32(0x0605_4b50) + le16(0) + le16(0) + le16(min(count, 0xFFFF)) + le16(min(count, 0xFFFF))
        end += le32(min(central.count, 0xFFFF_FFFF)) + le32(min(directoryOffset, 0xFFFF_FFFF)) + le16(0)
        try sink.append(end)
    }

    private static func zip64Extra(size: Int, offset: Int?) -> [UInt8] {
        let fields = le64(size) + le64(size) + (offset.map { le64($0) } ?? [])
        return le16(0x0001) + le16(fields.count) + fields
    }

    private static func le16(_ v: Int) -> [UInt8] { [UInt8(v & 0xff), UInt8((v >> 8) & 0xff)] }
    private static func le32(_ v: Int) -> [UInt8] {
        (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) }
    }
    private static func le32(_ v: UInt32) -> [UInt8] { le32(Int(v)) }
    private static func le64(_ v: Int) -> [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) }
    }
}
