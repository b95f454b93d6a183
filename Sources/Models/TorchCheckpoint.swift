import Foundation
import Tensor

public struct TorchCheckpointError: Error, CustomStringConvertible, Sendable {
    public let file: String
    public let problem: String
    public var description: String { "\(file): cannot read as a PyTorch checkpoint: \(problem)" }
}

/// A PyTorch checkpoint (`torch.save` of a state dict), read without Python.
///
/// Both serialization formats are understood: the zip archive torch writes
/// since 1.6 (`<name>/data.pkl`, `<name>/byteorder`, `<name>/data/<key>`) and
/// the legacy one (magic number, protocol version, sys info, the pickled
/// object, the pickled storage keys, then each storage as an 8-byte element
/// count and its raw bytes). The file is memory-mapped; contiguous float32
/// tensors are views into it, everything else is converted to a Float32 copy.
public struct TorchCheckpoint: @unchecked Sendable {
    public let url: URL
    /// Tensor names as the state dict lists them.
    public let names: [String]
    public let tensors: [String: Tensor]
    /// When the state dict was found inside a larger checkpoint dict, its key there.
    public let wrapperKey: String?

    /// The tensors of the state dict in `url`, under their raw keys.
    public static func load(_ url: URL) throws -> [String: Tensor] {
        try open(url).tensors
    }

    public static func open(_ url: URL) throws -> TorchCheckpoint {
        let file = try MappedFile(url: url)
        // Compressed archives are inflated into buffers that must outlive the
        // pickle's storages, until the tensors have been copied out of them.
        let inflater = Inflater(url: url)
        return try withExtendedLifetime((file, inflater)) { try read(file, inflater) }
    }

    private static func read(_ file: MappedFile, _ inflater: Inflater) throws -> TorchCheckpoint {
        let url = file.url
        func fail(_ problem: String) -> TorchCheckpointError {
            TorchCheckpointError(file: url.path, problem: problem)
        }
        let bytes = file.bytes
        let root: PickleValue
        do {
            if bytes.count >= 4, bytes.loadUnaligned(as: UInt32.self) == UInt32(0x0403_4b50).littleEndian {
                root = try readZip(bytes, inflater: inflater)
            } else if bytes.count >= 2, bytes[0] == 0x80 {
                root = try readLegacy(bytes)
            } else if bytes.count == 0 {
                throw fail("the file is empty")
            } else {
                throw fail(
                    "neither a zip archive nor a legacy torch.save file (it starts with bytes \(bytes.prefix(4).map { String(format: "%02x", $0) }.joined(separator: " ")))"
                )
            }
        } catch let e as TorchCheckpointError {
            throw e
        } catch {
            throw fail("\(error)")
        }
        let (dict, wrapper) = try stateDict(in: root, fail: fail)
        var names: [String] = []
        var tensors: [String: Tensor] = [:]
        for (k, v) in zip(dict.keys, dict.values) {
            guard case .string(let name) = k, case .tensor(let ref) = v else { continue }
            names.append(name)
            tensors[name] = try tensor(ref, owner: file, name: name, fail: fail)
        }
        return TorchCheckpoint(url: url, names: names, tensors: tensors, wrapperKey: wrapper)
    }

    // MARK: formats

    private static func readZip(_ bytes: UnsafeRawBufferPointer, inflater: Inflater) throws -> PickleValue {
        let zip = try ZipDirectory(bytes, inflater: inflater)
        guard
            let pkl = zip.entries.first(where: { $0.name.hasSuffix("/data.pkl") || $0.name == "data.pkl" }
            )
        else {
            throw ZipDirectory.Failure(
                problem: "a zip archive without data.pkl: not written by torch.save")
        }
        let prefix = String(pkl.name.dropLast("data.pkl".count))
        if let order = zip.entry(prefix + "byteorder") {
            let text = String(decoding: try zip.data(order), as: UTF8.self)
            guard text == "little" else {
                throw ZipDirectory.Failure(
                    problem: "the storages are \(text)-endian; cyclegand reads little-endian checkpoints")
            }
        }
        let pickle = try zip.data(pkl)
        guard CRC32.checksum(pickle) == pkl.crc32 else {
            throw ZipDirectory.Failure(problem: "\(pkl.name) fails its CRC check (corrupt file)")
        }
        let machine = PickleMachine { pid in
            let (dtype, key, count) = try storageID(pid)
            guard let entry = zip.entry(prefix + "data/" + key) else {
                throw ZipDirectory.Failure(
                    problem: "storage \(key) is missing from the archive (data/\(key))")
            }
            let data = try zip.data(entry)
            guard data.count >= count * dtype.byteSize else {
                throw ZipDirectory.Failure(
                    problem: "storage \(key) holds \(data.count) bytes, fewer than its \(count) elements need"
                )
            }
            return .storage(TorchStorage(dtype: dtype, key: key, bytes: data, inPlace: entry.method == 0))
        }
        return try machine.run(pickle).0
    }

    /// Python's `_LEGACY_MAGIC_NUMBER` as LONG1 bytes.
    private static let legacyMagic: [UInt8] = [
        0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19,
    ]

    private static func readLegacy(_ bytes: UnsafeRawBufferPointer) throws -> PickleValue {
        let plain = PickleMachine { _ in
            throw PickleError(problem: "unexpected persistent id in the legacy header")
        }
        let (magic, afterMagic) = try plain.run(bytes)
        guard case .bigInt(let m) = magic, m == legacyMagic else {
            throw PickleError(problem: "a pickle, but not a torch.save file (no legacy magic number)")
        }
        let (version, afterVersion) = try plain.run(bytes, from: afterMagic)
        guard case .int(1001) = version else {
            throw PickleError(problem: "legacy protocol version \(version), expected 1001")
        }
        let (sysInfo, afterInfo) = try plain.run(bytes, from: afterVersion)
        if case .dict(let info) = sysInfo, case .bool(false)? = info["little_endian"] {
            throw PickleError(
                problem:
                    "the checkpoint was written on a big-endian machine; cyclegand reads little-endian checkpoints"
            )
        }

        // The object refers to storages the file stores only after it: collect
        // them first, then give them their bytes once their offsets are known.
        var declared: [String: (dtype: SafeTensorsDType, count: Int)] = [:]
        let collect = PickleMachine { pid in
            guard case .tuple(let t) = pid, t.count >= 5 else {
                throw PickleError(problem: "unexpected persistent id \(pid.typeName)")
            }
            let (dtype, key, count) = try storageID(pid)
            declared[key] = (dtype, count)
            // view_metadata (old views of a storage): (view_key, offset, size).
            if t.count >= 6, case .tuple(let view) = t[5], view.count == 3 {
                throw PickleError(
                    problem: "storage \(key) is a legacy storage view, which cyclegand does not read")
            }
            return .storage(
                TorchStorage(
                    dtype: dtype, key: key, bytes: UnsafeRawBufferPointer(start: nil, count: 0), inPlace: false))
        }
        let (object, afterObject) = try collect.run(bytes, from: afterInfo)
        let (keyList, afterKeys) = try plain.run(bytes, from: afterObject)
        guard case .list(let keys) = keyList else {
            throw PickleError(problem: "no storage key list after the object")
        }
        var located: [String: UnsafeRawBufferPointer] = [:]
        var offset = afterKeys
        for case .string(let key) in keys.items {
            guard let d = declared[key] else {
                throw PickleError(problem: "storage \(key) is stored but never used")
            }
            guard offset + 8 <= bytes.count else {
                throw PickleError(problem: "the file ends before storage \(key) (truncated?)")
            }
            let count = Int(
                Int64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: Int64.self)))
            let size = count * d.dtype.byteSize
            guard count >= 0, offset + 8 + size <= bytes.count else {
                throw PickleError(problem: "storage \(key) runs past the end of the file (truncated?)")
            }
            located[key] = UnsafeRawBufferPointer(rebasing: bytes[(offset + 8)..<(offset + 8 + size)])
            offset += 8 + size
        }
        return try relocate(object, located)
    }

    /// Replaces the placeholder storages of a legacy object with located ones.
    private static func relocate(_ value: PickleValue, _ located: [String: UnsafeRawBufferPointer])
        throws -> PickleValue
    {
        switch value {
        case .tensor(let ref):
            guard let data = located[ref.storage.key] else {
                throw PickleError(problem: "storage \(ref.storage.key) is used but not stored (truncated?)")
            }
            let storage = TorchStorage(dtype: ref.storage.dtype, key: ref.storage.key, bytes: data, inPlace: true)
            return .tensor(
                TorchTensorRef(storage: storage, offset: ref.offset, shape: ref.shape, strides: ref.strides)
            )
        case .dict(let d):
            let out = PickleDict()
            for (k, v) in zip(d.keys, d.values) { out.set(k, try relocate(v, located)) }
            return .dict(out)
        case .list(let l):
            let out = PickleList()
            out.items = try l.items.map { try relocate($0, located) }
            return .list(out)
        case .tuple(let items):
            return .tuple(try items.map { try relocate($0, located) })
        default:
            return value
        }
    }

    /// ('storage', torch.FloatStorage, key, location, count[, view_metadata]).
    private static func storageID(_ pid: PickleValue) throws -> (SafeTensorsDType, String, Int) {
        guard case .tuple(let t) = pid, t.count >= 5, case .string("storage") = t[0] else {
            throw PickleError(
                problem: "unexpected persistent id (\(pid.typeName)); expected a torch storage")
        }
        guard case .global(_, let typeName) = t[1], let dtype = PickleMachine.storageTypes[typeName]
        else {
            throw PickleError(problem: "storage of type \(t[1].typeName), which cyclegand does not read")
        }
        guard case .string(let key) = t[2], case .int(let count) = t[4], count >= 0 else {
            throw PickleError(problem: "malformed storage id")
        }
        return (dtype, key, count)
    }

    // MARK: state dict and tensors

    /// The state dict: the root itself when it maps names to tensors, or the
    /// one value of a wrapping dict (`{"state_dict": ..., "epoch": 3}`) that does.
    private static func stateDict(in root: PickleValue, fail: (String) -> TorchCheckpointError) throws
        -> (PickleDict, String?)
    {
        guard case .dict(let dict) = root else {
            throw fail("the checkpoint holds a \(root.typeName), not a dict of tensors")
        }
        if isStateDict(dict) { return (dict, nil) }
        var candidates: [(String, PickleDict)] = []
        for (k, v) in zip(dict.keys, dict.values) {
            if case .string(let key) = k, case .dict(let inner) = v, isStateDict(inner) {
                candidates.append((key, inner))
            }
        }
        if candidates.count == 1 { return (candidates[0].1, candidates[0].0) }
        let keys = dict.keys.map { k -> String in
            if case .string(let s) = k { return s } else { return "\(k)" }
        }
        if candidates.isEmpty {
            throw fail(
                "no state dict inside (top-level keys: \(keys.prefix(10).joined(separator: ", ")))")
        }
        throw fail(
            "several state dicts inside (\(candidates.map(\.0).joined(separator: ", "))); save the one network's "
                + "state_dict alone")
    }

    private static func isStateDict(_ d: PickleDict) -> Bool {
        guard d.count > 0 else { return false }
        var tensors = 0
        for (k, v) in zip(d.keys, d.values) {
            guard case .string = k else { return false }
            if case .tensor = v { tensors += 1 } else if case .int = v { continue } else { return false }
        }
        return tensors > 0
    }

    private static func tensor(
        _ ref: TorchTensorRef, owner: MappedFile, name: String, fail: (String) -> TorchCheckpointError
    )
        throws -> Tensor
    {
        let shape = ref.shape
        let count = shape.reduce(1, *)
        let size = ref.storage.dtype.byteSize
        // The furthest element the view touches must lie inside the storage.
        var last = ref.offset
        for (d, s) in zip(shape, ref.strides) where d > 0 { last += (d - 1) * s }
        guard ref.offset >= 0, ref.strides.allSatisfy({ $0 >= 0 }),
            count == 0 || last < ref.storage.count
        else {
            throw fail(
                "\(name): shape \(shape), strides \(ref.strides) at offset \(ref.offset) reach past its storage of \(ref.storage.count) elements"
            )
        }
        guard count > 0, let base = ref.storage.bytes.baseAddress else { return Tensor(shape: shape) }
        let contiguous = isContiguous(shape: shape, strides: ref.strides)
        let start = base + ref.offset * size
        if contiguous {
            if ref.storage.inPlace, ref.storage.dtype == .f32,
                Int(bitPattern: start) % MemoryLayout<Float>.alignment == 0
            {
                return Tensor(
                    shape: shape,
                    borrowing: UnsafeMutableRawPointer(mutating: start).assumingMemoryBound(to: Float.self),
                    owner: owner)
            }
            let t = Tensor(shape: shape)
            ElementConversion.toFloat(from: start, dtype: ref.storage.dtype, count: count, into: t.data)
            return t
        }
        // A strided view (a transposed or sliced tensor): gather it in order.
        let t = Tensor(shape: shape)
        var index = [Int](repeating: 0, count: shape.count)
        var element = ref.offset
        for i in 0..<count {
            ElementConversion.toFloat(
                from: base + element * size, dtype: ref.storage.dtype, count: 1, into: t.data + i)
            var d = shape.count - 1
            while d >= 0 {
                index[d] += 1
                element += ref.strides[d]
                if index[d] < shape[d] { break }
                element -= ref.strides[d] * shape[d]
                index[d] = 0
                d -= 1
            }
        }
        return t
    }

    static func isContiguous(shape: [Int], strides: [Int]) -> Bool {
        var expected = 1
        for d in stride(from: shape.count - 1, through: 0, by: -1) {
            if shape[d] != 1 && strides[d] != expected { return false }
            expected *= shape[d]
        }
        return true
    }
}
