#if canImport(Glibc)
    import Glibc
#endif

/// OpenSSL's one-shot SHA256(), looked up at run time. libvips links
/// libcrypto, so the library is already in every cyclegand process; its
/// SHA-NI code hashes the 45 MB default model in about 0.05 s where the
/// portable code below needs about 0.2 s. No build or package dependency:
/// when the library cannot be found, the portable code runs.
enum SystemSHA256 {
    private typealias OneShot =
        @convention(c) (UnsafeRawPointer?, Int, UnsafeMutablePointer<UInt8>?) ->
        UnsafeMutablePointer<UInt8>?

    nonisolated(unsafe) private static let oneShot: OneShot? = {
        for library in ["libcrypto.so.3", "libcrypto.so"] {
            if let handle = dlopen(library, RTLD_NOW | RTLD_LOCAL), let symbol = dlsym(handle, "SHA256") {
                return unsafeBitCast(symbol, to: OneShot.self)
            }
        }
        return nil
    }()

    static var isAvailable: Bool { oneShot != nil }

    private typealias Start = @convention(c) (UnsafeMutableRawPointer?) -> Int32
    private typealias Add = @convention(c) (UnsafeMutableRawPointer?, UnsafeRawPointer?, Int) -> Int32
    private typealias End = @convention(c) (UnsafeMutablePointer<UInt8>?, UnsafeMutableRawPointer?) -> Int32

    /// SHA256_Init, SHA256_Update and SHA256_Final, for data that arrives in pieces.
    nonisolated(unsafe) private static let incremental: (Start, Add, End)? = {
        for library in ["libcrypto.so.3", "libcrypto.so"] {
            if let handle = dlopen(library, RTLD_NOW | RTLD_LOCAL), let start = dlsym(handle, "SHA256_Init"),
                let add = dlsym(handle, "SHA256_Update"), let end = dlsym(handle, "SHA256_Final")
            {
                return (
                    unsafeBitCast(start, to: Start.self), unsafeBitCast(add, to: Add.self),
                    unsafeBitCast(end, to: End.self)
                )
            }
        }
        return nil
    }()

    /// The digest of the bytes `produce` passes to its argument, piece by piece.
    static func digest(_ produce: ((UnsafeRawBufferPointer) -> Void) throws -> Void) rethrows -> [UInt8]? {
        guard let (start, add, end) = incremental else { return nil }
        // SHA256_CTX: 112 bytes in OpenSSL 1.1 and 3; room to spare.
        let context = UnsafeMutableRawPointer.allocate(byteCount: 256, alignment: 16)
        defer { context.deallocate() }
        _ = start(context)
        try produce { piece in _ = add(context, piece.baseAddress, piece.count) }
        var out = [UInt8](repeating: 0, count: 32)
        out.withUnsafeMutableBufferPointer { o in _ = end(o.baseAddress, context) }
        return out
    }

    static func digest(_ bytes: UnsafeRawBufferPointer) -> [UInt8]? {
        guard let oneShot else { return nil }
        var out = [UInt8](repeating: 0, count: 32)
        let empty: UInt8 = 0
        withUnsafePointer(to: empty) { fallback in
            out.withUnsafeMutableBufferPointer { o in
                _ = oneShot(bytes.baseAddress ?? UnsafeRawPointer(fallback), bytes.count, o.baseAddress)
            }
        }
        return out
    }
}

/// CRC-32 (IEEE 802.3, as zip uses it).
enum CRC32 {
    private static let table: [UInt32] = (0..<256).map { i -> UInt32 in
        var c = UInt32(i)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    static func checksum(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        var c = ~crc
        table.withUnsafeBufferPointer { t in
            for b in bytes { c = t[Int((c ^ UInt32(b)) & 0xff)] ^ (c >> 8) }
        }
        return ~c
    }
}

/// SHA-256 (FIPS 180-4), streaming. The toolchain on Linux has no CryptoKit and
/// the project takes no crypto dependency for one hash. Written over raw
/// pointers with no allocation or reference counting in the block loop: every
/// model load hashes the whole weights file.
struct SHA256 {
    private var state: [UInt32] = [
        0x6a09_e667, 0xbb67_ae85, 0x3c6e_f372, 0xa54f_f53a, 0x510e_527f, 0x9b05_688c, 0x1f83_d9ab, 0x5be0_cd19,
    ]
    private var pending: [UInt8] = []
    private var length: UInt64 = 0

    private static let k: [UInt32] = [
        0x428a_2f98, 0x7137_4491, 0xb5c0_fbcf, 0xe9b5_dba5, 0x3956_c25b, 0x59f1_11f1, 0x923f_82a4, 0xab1c_5ed5,
        0xd807_aa98, 0x1283_5b01, 0x2431_85be, 0x550c_7dc3, 0x72be_5d74, 0x80de_b1fe, 0x9bdc_06a7, 0xc19b_f174,
        0xe49b_69c1, 0xefbe_4786, 0x0fc1_9dc6, 0x240c_a1cc, 0x2de9_2c6f, 0x4a74_84aa, 0x5cb0_a9dc, 0x76f9_88da,
        0x983e_5152, 0xa831_c66d, 0xb003_27c8, 0xbf59_7fc7, 0xc6e0_0bf3, 0xd5a7_9147, 0x06ca_6351, 0x1429_2967,
        0x27b7_0a85, 0x2e1b_2138, 0x4d2c_6dfc, 0x5338_0d13, 0x650a_7354, 0x766a_0abb, 0x81c2_c92e, 0x9272_2c85,
        0xa2bf_e8a1, 0xa81a_664b, 0xc24b_8b70, 0xc76c_51a3, 0xd192_e819, 0xd699_0624, 0xf40e_3585, 0x106a_a070,
        0x19a4_c116, 0x1e37_6c08, 0x2748_774c, 0x34b0_bcb5, 0x391c_0cb3, 0x4ed8_aa4a, 0x5b9c_ca4f, 0x682e_6ff3,
        0x748f_82ee, 0x78a5_636f, 0x84c8_7814, 0x8cc7_0208, 0x90be_fffa, 0xa450_6ceb, 0xbef9_a3f7, 0xc671_78f2,
    ]

    mutating func update(_ bytes: UnsafeRawBufferPointer) {
        length &+= UInt64(bytes.count)
        var i = 0
        if !pending.isEmpty {
            let take = min(64 - pending.count, bytes.count)
            pending.append(contentsOf: bytes[0..<take])
            i = take
            if pending.count == 64 {
                let block = pending
                block.withUnsafeBytes { compress($0.baseAddress!, blocks: 1) }
                pending.removeAll(keepingCapacity: true)
            }
        }
        guard let base = bytes.baseAddress else { return }
        let blocks = (bytes.count - i) / 64
        if blocks > 0 {
            compress(base + i, blocks: blocks)
            i += 64 * blocks
        }
        if i < bytes.count { pending.append(contentsOf: bytes[i...]) }
    }

    mutating func update(_ bytes: [UInt8]) { bytes.withUnsafeBytes { update($0) } }

    mutating func finish() -> [UInt8] {
        let bits = length &* 8
        var tail: [UInt8] = [0x80]
        tail += [UInt8](repeating: 0, count: (55 &- Int(length % 64) + 64) % 64)
        tail += (0..<8).map { UInt8(truncatingIfNeeded: bits >> (56 - 8 * UInt64($0))) }
        update(tail)
        return state.flatMap { w in (0..<4).map { UInt8(truncatingIfNeeded: w >> (24 - 8 * UInt32($0))) } }
    }

    /// The digest of `bytes` as lowercase hex: OpenSSL's when the process can
    /// reach it, else this type's.
    static func hex(_ bytes: UnsafeRawBufferPointer) -> String {
        let digest = SystemSHA256.digest(bytes) ?? portableDigest(bytes)
        return digest.map { String(format: "%02x", $0) }.joined()
    }

    /// The digest of the bytes `produce` passes to its argument, piece by piece, as lowercase hex.
    static func hex(_ produce: ((UnsafeRawBufferPointer) -> Void) throws -> Void) rethrows -> String {
        let digest: [UInt8]
        if let system = try SystemSHA256.digest(produce) {
            digest = system
        } else {
            var h = SHA256()
            try produce { h.update($0) }
            digest = h.finish()
        }
        return digest.map { String(format: "%02x", $0) }.joined()
    }

    static func portableDigest(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        var h = SHA256()
        h.update(bytes)
        return h.finish()
    }

    private mutating func compress(_ data: UnsafeRawPointer, blocks: Int) {
        state.withUnsafeMutableBufferPointer { st in
            Self.k.withUnsafeBufferPointer { k in
                withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 64) { w in
                    Self.compress(
                        state: st.baseAddress!, k: k.baseAddress!, w: w.baseAddress!, data: data, blocks: blocks)
                }
            }
        }
    }

    @inline(__always) private static func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { (x &>> n) | (x &<< (32 &- n)) }

    private static func compress(
        state: UnsafeMutablePointer<UInt32>, k: UnsafePointer<UInt32>, w: UnsafeMutablePointer<UInt32>,
        data: UnsafeRawPointer, blocks: Int
    ) {
        var h0 = state[0]
        var h1 = state[1]
        var h2 = state[2]
        var h3 = state[3]
        var h4 = state[4]
        var h5 = state[5]
        var h6 = state[6]
        var h7 = state[7]
        for block in 0..<blocks {
            let p = data + 64 * block
            for i in 0..<16 { w[i] = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)) }
            for i in 16..<64 {
                let w15 = w[i - 15]
                let w2 = w[i - 2]
                let s0 = rotr(w15, 7) ^ rotr(w15, 18) ^ (w15 &>> 3)
                let s1 = rotr(w2, 17) ^ rotr(w2, 19) ^ (w2 &>> 10)
                w[i] = w[i - 16] &+ s0 &+ w[i - 7] &+ s1
            }
            var a = h0
            var b = h1
            var c = h2
            var d = h3
            var e = h4
            var f = h5
            var g = h6
            var h = h7
            for i in 0..<64 {
                let sigma1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)
                let ch = (e & f) ^ (~e & g)
                let t1 = h &+ sigma1 &+ ch &+ k[i] &+ w[i]
                let sigma0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)
                let maj = (a & b) ^ (a & c) ^ (b & c)
                h = g
                g = f
                f = e
                e = d &+ t1
                d = c
                c = b
                b = a
                a = t1 &+ sigma0 &+ maj
            }
            h0 &+= a
            h1 &+= b
            h2 &+= c
            h3 &+= d
            h4 &+= e
            h5 &+= f
            h6 &+= g
            h7 &+= h
        }
        state[0] = h0
        state[1] = h1
        state[2] = h2
        state[3] = h3
        state[4] = h4
        state[5] = h5
        state[6] = h6
        state[7] = h7
    }
}
