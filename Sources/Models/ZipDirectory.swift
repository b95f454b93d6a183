import Foundation
import ZIPFoundation

/// The central directory of a zip archive held in memory (a mapped file), with
/// each entry's data located in place. torch.save stores every record
/// uncompressed and aligned, so tensors can be views straight into the file.
struct ZipDirectory {
    struct Entry {
        let name: String
        let method: UInt16
        let compressedSize: Int
        let uncompressedSize: Int
        let crc32: UInt32
        let localHeaderOffset: Int
    }

    let bytes: UnsafeRawBufferPointer
    let entries: [Entry]
    /// Decompresses the entries of archives that were repacked with compression
    /// (torch.save never compresses; torch.load still reads such archives).
    let inflater: Inflater?
    private let byName: [String: Int]

    struct Failure: Error, CustomStringConvertible {
        let problem: String
        var description: String { problem }
    }

    init(_ bytes: UnsafeRawBufferPointer, inflater: Inflater? = nil) throws {
        self.bytes = bytes
        self.inflater = inflater
        func u16(_ o: Int) -> Int {
            Int(UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: o, as: UInt16.self)))
        }
        func u32(_ o: Int) -> Int {
            Int(UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: o, as: UInt32.self)))
        }
        func u64(_ o: Int) -> Int {
            Int(
                truncatingIfNeeded: UInt64(
                    littleEndian: bytes.loadUnaligned(fromByteOffset: o, as: UInt64.self)))
        }

        // The end-of-central-directory record sits in the last 22 + 65535 bytes.
        guard bytes.count >= 22 else {
            throw Failure(problem: "too short to be a zip archive (truncated?)")
        }
        var eocd = -1
        var o = bytes.count - 22
        while o >= max(0, bytes.count - 22 - 65535) {
            if u32(o) == 0x0605_4b50 {
                eocd = o
                break
            }
            o -= 1
        }
        guard eocd >= 0 else {
            throw Failure(problem: "no zip end-of-central-directory record (truncated?)")
        }
        var count = u16(eocd + 10)
        var directoryOffset = u32(eocd + 16)
        // Zip64: the locator sits right before the classic record.
        if eocd >= 20, u32(eocd - 20) == 0x0706_4b50 {
            let record = u64(eocd - 20 + 8)
            guard record >= 0, record + 56 <= bytes.count, u32(record) == 0x0606_4b50 else {
                throw Failure(problem: "broken zip64 end-of-central-directory record")
            }
            count = u64(record + 32)
            directoryOffset = u64(record + 48)
        }
        var entries: [Entry] = []
        var p = directoryOffset
        for _ in 0..<count {
            guard p >= 0, p + 46 <= bytes.count, u32(p) == 0x0201_4b50 else {
                throw Failure(problem: "broken zip central directory at byte \(p) (truncated or corrupt)")
            }
            let nameLength = u16(p + 28)
            let extraLength = u16(p + 30)
            let commentLength = u16(p + 32)
            guard p + 46 + nameLength + extraLength + commentLength <= bytes.count else {
                throw Failure(problem: "broken zip central directory entry at byte \(p)")
            }
            let name = String(
                decoding: UnsafeRawBufferPointer(rebasing: bytes[(p + 46)..<(p + 46 + nameLength)]),
                as: UTF8.self)
            var compressed = u32(p + 20)
            var uncompressed = u32(p + 24)
            var local = u32(p + 42)
            // Zip64 extra field: the 64-bit values of the fields that read 0xFFFFFFFF, in this order.
            var e = p + 46 + nameLength
            let extraEnd = e + extraLength
            while e + 4 <= extraEnd {
                let id = u16(e)
                let size = u16(e + 2)
                if id == 0x0001 {
                    var f = e + 4
                    if uncompressed == 0xFFFF_FFFF, f + 8 <= e + 4 + size {
                        uncompressed = u64(f)
                        f += 8
                    }
                    if compressed == 0xFFFF_FFFF, f + 8 <= e + 4 + size {
                        compressed = u64(f)
                        f += 8
                    }
                    if local == 0xFFFF_FFFF, f + 8 <= e + 4 + size { local = u64(f) }
                }
                e += 4 + size
            }
            entries.append(
                Entry(
                    name: name, method: UInt16(u16(p + 10)), compressedSize: compressed,
                    uncompressedSize: uncompressed,
                    crc32: UInt32(u32(p + 16)), localHeaderOffset: local))
            p += 46 + nameLength + extraLength + commentLength
        }
        self.entries = entries
        var byName: [String: Int] = [:]
        for (i, e) in entries.enumerated() { byName[e.name] = i }
        self.byName = byName
    }

    func entry(_ name: String) -> Entry? { byName[name].map { entries[$0] } }

    /// The stored bytes of `entry`, in place.
    func data(_ entry: Entry) throws -> UnsafeRawBufferPointer {
        let h = entry.localHeaderOffset
        guard h >= 0, h + 30 <= bytes.count,
            UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: h, as: UInt32.self)) == 0x0403_4b50
        else {
            throw Failure(problem: "zip entry \(entry.name) has no local header at byte \(h) (corrupt)")
        }
        if entry.method != 0 {
            guard let inflater else {
                throw Failure(problem: "zip entry \(entry.name) is compressed (method \(entry.method))")
            }
            return try inflater.inflate(entry.name)
        }
        let nameLength = Int(
            UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: h + 26, as: UInt16.self)))
        let extraLength = Int(
            UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: h + 28, as: UInt16.self)))
        let start = h + 30 + nameLength + extraLength
        guard start + entry.compressedSize <= bytes.count else {
            throw Failure(problem: "zip entry \(entry.name) runs past the end of the file (truncated?)")
        }
        return UnsafeRawBufferPointer(rebasing: bytes[start..<(start + entry.compressedSize)])
    }
}

/// Inflates compressed zip entries (through ZIPFoundation) into buffers it owns
/// until it is released: tensors made from them are copies, never views.
final class Inflater {
    let url: URL
    private var archive: Archive?
    private var buffers: [UnsafeMutableRawBufferPointer] = []

    init(url: URL) {
        self.url = url
    }

    deinit {
        for b in buffers { b.deallocate() }
    }

    func inflate(_ name: String) throws -> UnsafeRawBufferPointer {
        if archive == nil { archive = try Archive(url: url, accessMode: .read) }
        guard let archive, let entry = archive[name] else {
            throw ZipDirectory.Failure(problem: "cannot find \(name) again while decompressing it")
        }
        var data = Data()
        do {
            _ = try archive.extract(entry) { data.append($0) }
        } catch {
            throw ZipDirectory.Failure(problem: "cannot decompress \(name): \(error)")
        }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(data.count, 1), alignment: 64)
        buffers.append(buffer)
        data.copyBytes(to: buffer.bindMemory(to: UInt8.self), count: data.count)
        return UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(buffer)[0..<data.count])
    }
}
