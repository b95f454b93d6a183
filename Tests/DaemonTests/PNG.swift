import Foundation

/// Just enough PNG to make test inputs and check outputs without an image library in this
/// target: an encoder that writes 8-bit RGB with uncompressed (stored) deflate blocks, and a
/// structural check (signature, IHDR size, every chunk's CRC, IDAT present, IEND last).
enum PNG {
    static let signature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

    /// An RGB image whose pixels follow a pattern seeded by `seed`.
    static func make(width: Int, height: Int, seed: Int) -> Data {
        var raw = [UInt8]()
        raw.reserveCapacity((width * 3 + 1) * height)
        for y in 0..<height {
            raw.append(0)  // filter: none
            for x in 0..<width {
                raw.append(UInt8(truncatingIfNeeded: x * 7 + seed * 13))
                raw.append(UInt8(truncatingIfNeeded: y * 5 + seed * 29))
                raw.append(UInt8(truncatingIfNeeded: (x ^ y) + seed))
            }
        }
        return encode(width: width, height: height, raw: raw)
    }

    /// A valid header claiming `width`×`height` with a token IDAT: a decompression bomb's shape.
    static func bombHeader(width: Int, height: Int) -> Data {
        encode(width: width, height: height, raw: [0, 0, 0, 0])
    }

    static func encode(width: Int, height: Int, raw: [UInt8]) -> Data {
        var out = Data(signature)
        var ihdr = [UInt8]()
        ihdr += be32(width) + be32(height) + [8, 2, 0, 0, 0]
        out += chunk("IHDR", ihdr)
        out += chunk("IDAT", zlibStored(raw))
        out += chunk("IEND", [])
        return out
    }

    /// (width, height) when `data` is a structurally complete PNG, nil otherwise.
    static func check(_ data: Data) -> (width: Int, height: Int)? {
        let bytes = [UInt8](data)
        guard bytes.count > 8, Array(bytes[0..<8]) == signature else { return nil }
        var offset = 8
        var size: (Int, Int)?
        var sawData = false
        while offset + 12 <= bytes.count {
            let length = Int(readBE32(bytes, offset))
            guard offset + 12 + length <= bytes.count else { return nil }
            let type = Array(bytes[(offset + 4)..<(offset + 8)])
            let body = Array(bytes[(offset + 8)..<(offset + 8 + length)])
            let crc = readBE32(bytes, offset + 8 + length)
            guard crc32(type + body) == crc else { return nil }
            switch String(decoding: type, as: UTF8.self) {
            case "IHDR": size = (Int(readBE32(body, 0)), Int(readBE32(body, 4)))
            case "IDAT": sawData = true
            case "IEND": return sawData && offset + 12 == bytes.count ? size : nil
            default: break
            }
            offset += 12 + length
        }
        return nil
    }

    private static func chunk(_ type: String, _ body: [UInt8]) -> Data {
        let t = Array(type.utf8)
        return Data(be32(body.count) + t + body + be32(Int(crc32(t + body))))
    }

    private static func zlibStored(_ raw: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [0x78, 0x01]
        var offset = 0
        repeat {
            let n = min(65535, raw.count - offset)
            let final: UInt8 = offset + n == raw.count ? 1 : 0
            out += [final, UInt8(n & 0xFF), UInt8(n >> 8), UInt8(~n & 0xFF), UInt8((~n >> 8) & 0xFF)]
            out += raw[offset..<(offset + n)]
            offset += n
        } while offset < raw.count
        var a: UInt32 = 1
        var b: UInt32 = 0
        for byte in raw {
            a = (a + UInt32(byte)) % 65521
            b = (b + a) % 65521
        }
        return out + be32(Int((b << 16) | a))
    }

    private static func be32(_ v: Int) -> [UInt8] {
        [UInt8((v >> 24) & 0xFF), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)]
    }

    private static func readBE32(_ b: [UInt8], _ o: Int) -> UInt32 {
        UInt32(b[o]) << 24 | UInt32(b[o + 1]) << 16 | UInt32(b[o + 2]) << 8 | UInt32(b[o + 3])
    }

    private static let table: [UInt32] = (0..<256).map { n in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    static func crc32(_ bytes: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for byte in bytes { c = table[Int((c ^ UInt32(byte)) & 0xFF)] ^ (c >> 8) }
        return c ^ 0xFFFF_FFFF
    }
}
