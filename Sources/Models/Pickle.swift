// The pickle subset torch.save uses, in one file: the values, the opcode loop and the
// reductions torch's GLOBALs name are one machine, and its 480 lines read best together.

import Foundation

/// A value on the stack of the pickle machine: the plain Python values a
/// state dict uses, plus the few objects that torch's `GLOBAL`s build.
indirect enum PickleValue {
    case none
    case bool(Bool)
    case int(Int)
    /// An integer too large for `Int` (little-endian two's complement bytes),
    /// such as the legacy format's magic number.
    case bigInt([UInt8])
    case float(Double)
    case string(String)
    case bytes([UInt8])
    case tuple([PickleValue])
    case list(PickleList)
    case dict(PickleDict)
    /// A class or function named by GLOBAL / STACK_GLOBAL.
    case global(module: String, name: String)
    /// A torch storage handed out by the persistent-id loader.
    case storage(TorchStorage)
    case tensor(TorchTensorRef)

    var typeName: String {
        switch self {
        case .none: return "None"
        case .bool: return "bool"
        case .int, .bigInt: return "int"
        case .float: return "float"
        case .string: return "str"
        case .bytes: return "bytes"
        case .tuple: return "tuple"
        case .list: return "list"
        case .dict: return "dict"
        case .global(let m, let n): return "\(m).\(n)"
        case .storage: return "storage"
        case .tensor: return "tensor"
        }
    }
}

/// Lists and dicts are mutable and shared through the memo, so they are boxes.
final class PickleList {
    var items: [PickleValue] = []
}

/// A dict that keeps insertion order (an OrderedDict as well as a plain dict,
/// which Python also keeps in order). Keys are compared by their text.
final class PickleDict {
    private(set) var keys: [PickleValue] = []
    private(set) var values: [PickleValue] = []
    private var index: [String: Int] = [:]

    func set(_ key: PickleValue, _ value: PickleValue) {
        let k = Self.keyText(key)
        if let i = index[k] {
            values[i] = value
        } else {
            index[k] = keys.count
            keys.append(key)
            values.append(value)
        }
    }

    subscript(key: String) -> PickleValue? {
        index[Self.keyText(.string(key))].map { values[$0] }
    }

    var count: Int { keys.count }

    static func keyText(_ key: PickleValue) -> String {
        switch key {
        case .string(let s): return "s:" + s
        case .int(let i): return "i:\(i)"
        default: return "?:\(key)"
        }
    }
}

/// A storage: its element type and where its bytes are.
final class TorchStorage {
    let dtype: SafeTensorsDType
    let key: String
    /// The storage's bytes inside the mapped checkpoint.
    let bytes: UnsafeRawBufferPointer

    /// The bytes lie in the mapped file (tensors may be views of them), not in
    /// a temporary buffer (tensors must be copies).
    let inPlace: Bool

    init(dtype: SafeTensorsDType, key: String, bytes: UnsafeRawBufferPointer, inPlace: Bool) {
        self.dtype = dtype
        self.key = key
        self.bytes = bytes
        self.inPlace = inPlace
    }

    var count: Int { bytes.count / dtype.byteSize }
}

/// A tensor as `_rebuild_tensor_v2` describes it: a strided view of a storage.
final class TorchTensorRef {
    let storage: TorchStorage
    let offset: Int
    let shape: [Int]
    let strides: [Int]

    init(storage: TorchStorage, offset: Int, shape: [Int], strides: [Int]) {
        self.storage = storage
        self.offset = offset
        self.shape = shape
        self.strides = strides
    }
}

public struct PickleError: Error, CustomStringConvertible, Sendable {
    public let problem: String
    public var description: String { problem }
}

/// The subset of Python's pickle machine that `torch.save` of a state dict
/// (or a training checkpoint dict holding one) produces. Anything outside it
/// — in particular any GLOBAL other than the few below — is refused with an
/// error naming the opcode or the global: unpickling arbitrary globals runs
/// arbitrary code, which is also why `torch.load(weights_only=True)` exists.
struct PickleMachine {
    /// Resolves a persistent id (BINPERSID / PERSID) to a value, for torch a storage.
    var persistentLoad: (PickleValue) throws -> PickleValue

    private static let allowedGlobals: Set<String> = [
        "collections.OrderedDict",
        "torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2",
        "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state",
    ]

    /// Storage classes as pickled by torch (`torch.FloatStorage`, ...).
    static let storageTypes: [String: SafeTensorsDType] = [
        "FloatStorage": .f32, "DoubleStorage": .f64, "HalfStorage": .f16, "BFloat16Storage": .bf16,
        "LongStorage": .i64, "IntStorage": .i32, "ShortStorage": .i16, "CharStorage": .i8,
        "ByteStorage": .u8, "BoolStorage": .bool,
    ]

    /// Runs the pickle starting at `start` in `bytes`; returns the result and
    /// the position after STOP (the legacy format holds several pickles in a row).
    func run(_ bytes: UnsafeRawBufferPointer, from start: Int = 0) throws -> (PickleValue, end: Int) {
        var reader = ByteReader(bytes: bytes, position: start)
        var stack: [PickleValue] = []
        var marks: [Int] = []
        var memo: [Int: PickleValue] = [:]

        func pop() throws -> PickleValue {
            guard let v = stack.popLast() else {
                throw PickleError(problem: "pickle stack underflow at byte \(reader.position)")
            }
            return v
        }
        func popMark() throws -> [PickleValue] {
            guard let m = marks.popLast(), m <= stack.count else {
                throw PickleError(problem: "pickle MARK missing at byte \(reader.position)")
            }
            let items = Array(stack[m...])
            stack.removeSubrange(m...)
            return items
        }
        func top() throws -> PickleValue {
            guard let v = stack.last else {
                throw PickleError(problem: "pickle stack underflow at byte \(reader.position)")
            }
            return v
        }
        func dict(_ v: PickleValue, for op: String) throws -> PickleDict {
            guard case .dict(let d) = v else {
                throw PickleError(problem: "pickle \(op) on a \(v.typeName), not a dict")
            }
            return d
        }
        func list(_ v: PickleValue, for op: String) throws -> PickleList {
            guard case .list(let l) = v else {
                throw PickleError(problem: "pickle \(op) on a \(v.typeName), not a list")
            }
            return l
        }
        func global(_ module: String, _ name: String) throws -> PickleValue {
            let full = "\(module).\(name)"
            if Self.allowedGlobals.contains(full) || (module == "torch" && Self.storageTypes[name] != nil) {
                return .global(module: module, name: name)
            }
            throw PickleError(
                problem: "the pickle refers to \(full), which is not part of a plain state dict; "
                    + "cyclegand loads only tensors in (ordered) dicts (save model.state_dict())")
        }

        while true {
            let opPosition = reader.position
            let op = try reader.byte()
            switch op {
            case 0x80: _ = try reader.byte()  // PROTO
            case 0x95: _ = try reader.fixed(8)  // FRAME: a length hint only
            case 0x2E:  // STOP
                return (try pop(), reader.position)
            case 0x28: marks.append(stack.count)  // MARK
            case 0x30: _ = try pop()  // POP
            case 0x31: _ = try popMark()  // POP_MARK
            case 0x32: stack.append(try top())  // DUP

            case 0x4E: stack.append(.none)  // NONE
            case 0x88: stack.append(.bool(true))  // NEWTRUE
            case 0x89: stack.append(.bool(false))  // NEWFALSE
            case 0x4B: stack.append(.int(Int(try reader.byte())))  // BININT1
            case 0x4D: stack.append(.int(Int(try reader.fixed(2))))  // BININT2
            case 0x4A: stack.append(.int(Int(Int32(truncatingIfNeeded: try reader.fixed(4)))))  // BININT
            case 0x8A:  // LONG1
                stack.append(Self.long(try reader.bytes(Int(try reader.byte()))))
            case 0x8B:  // LONG4
                stack.append(Self.long(try reader.bytes(Int(try reader.fixed(4)))))
            case 0x49:  // INT (text; "01"/"00" are True/False in protocol 0)
                let text = try reader.line()
                if text == "01" || text == "00" {
                    stack.append(.bool(text == "01"))
                } else if let i = Int(text) {
                    stack.append(.int(i))
                } else {
                    throw PickleError(problem: "pickle INT with text \"\(text)\"")
                }
            case 0x4C:  // LONG (text, with an optional L suffix)
                let text = try reader.line()
                guard let i = Int(text.hasSuffix("L") ? String(text.dropLast()) : text) else {
                    throw PickleError(problem: "pickle LONG with text \"\(text)\" out of range")
                }
                stack.append(.int(i))
            case 0x47:  // BINFLOAT (big-endian)
                stack.append(.float(Double(bitPattern: try reader.fixed(8).byteSwapped)))
            case 0x46:  // FLOAT (text)
                let text = try reader.line()
                guard let d = Double(text) else {
                    throw PickleError(problem: "pickle FLOAT with text \"\(text)\"")
                }
                stack.append(.float(d))

            case 0x58: stack.append(.string(try reader.utf8(Int(try reader.fixed(4)))))  // BINUNICODE
            case 0x8C: stack.append(.string(try reader.utf8(Int(try reader.byte()))))  // SHORT_BINUNICODE
            case 0x8D: stack.append(.string(try reader.utf8(Int(try reader.fixed(8)))))  // BINUNICODE8
            case 0x54:  // BINSTRING (Python 2 str)
                stack.append(.string(try reader.latin1(Int(try reader.fixed(4)))))
            case 0x55:  // SHORT_BINSTRING
                stack.append(.string(try reader.latin1(Int(try reader.byte()))))
            case 0x42: stack.append(.bytes(try reader.bytes(Int(try reader.fixed(4)))))  // BINBYTES
            case 0x43: stack.append(.bytes(try reader.bytes(Int(try reader.byte()))))  // SHORT_BINBYTES
            case 0x8E: stack.append(.bytes(try reader.bytes(Int(try reader.fixed(8)))))  // BINBYTES8
            case 0x56:  // UNICODE (text, raw-unicode-escape; only plain ASCII here)
                stack.append(.string(try reader.line()))

            case 0x29: stack.append(.tuple([]))  // EMPTY_TUPLE
            case 0x74: stack.append(.tuple(try popMark()))  // TUPLE
            case 0x85: stack.append(.tuple([try pop()]))  // TUPLE1
            case 0x86:  // TUPLE2
                let b = try pop()
                stack.append(.tuple([try pop(), b]))
            case 0x87:  // TUPLE3
                let c = try pop()
                let b = try pop()
                stack.append(.tuple([try pop(), b, c]))
            case 0x5D: stack.append(.list(PickleList()))  // EMPTY_LIST
            case 0x6C:  // LIST
                let l = PickleList()
                l.items = try popMark()
                stack.append(.list(l))
            case 0x61:  // APPEND
                let v = try pop()
                try list(try top(), for: "APPEND").items.append(v)
            case 0x65:  // APPENDS
                let items = try popMark()
                try list(try top(), for: "APPENDS").items.append(contentsOf: items)
            case 0x7D: stack.append(.dict(PickleDict()))  // EMPTY_DICT
            case 0x64:  // DICT
                let items = try popMark()
                let d = PickleDict()
                for i in stride(from: 0, to: items.count - 1, by: 2) { d.set(items[i], items[i + 1]) }
                stack.append(.dict(d))
            case 0x73:  // SETITEM
                let v = try pop()
                let k = try pop()
                try dict(try top(), for: "SETITEM").set(k, v)
            case 0x75:  // SETITEMS
                let items = try popMark()
                guard items.count % 2 == 0 else {
                    throw PickleError(problem: "pickle SETITEMS with an odd item count")
                }
                let d = try dict(try top(), for: "SETITEMS")
                for i in stride(from: 0, to: items.count, by: 2) { d.set(items[i], items[i + 1]) }

            case 0x71: memo[Int(try reader.byte())] = try top()  // BINPUT
            case 0x72: memo[Int(try reader.fixed(4))] = try top()  // LONG_BINPUT
            case 0x94: memo[memo.count] = try top()  // MEMOIZE
            case 0x70:  // PUT (text)
                guard let i = Int(try reader.line()) else {
                    throw PickleError(problem: "pickle PUT with a bad index")
                }
                memo[i] = try top()
            case 0x68, 0x6A, 0x67:  // BINGET, LONG_BINGET, GET
                let i =
                    op == 0x68
                    ? Int(try reader.byte())
                    : op == 0x6A ? Int(try reader.fixed(4)) : Int(try reader.line()) ?? -1
                guard let v = memo[i] else {
                    throw PickleError(problem: "pickle GET of memo \(i), which was never stored")
                }
                stack.append(v)

            case 0x63:  // GLOBAL "module\nname\n"
                let module = try reader.line()
                let name = try reader.line()
                stack.append(try global(module, name))
            case 0x93:  // STACK_GLOBAL
                let name = try pop()
                let module = try pop()
                guard case .string(let n) = name, case .string(let m) = module else {
                    throw PickleError(problem: "pickle STACK_GLOBAL with non-string names")
                }
                stack.append(try global(m, n))
            case 0x52:  // REDUCE
                let args = try pop()
                let callable = try pop()
                stack.append(try Self.call(callable, args))
            case 0x81:  // NEWOBJ
                let args = try pop()
                let cls = try pop()
                stack.append(try Self.call(cls, args))
            case 0x62:  // BUILD: state for the object below it
                let state = try pop()
                switch try top() {
                case .dict:
                    // An OrderedDict's state is its `_metadata` (module versions): not needed.
                    break
                case .tensor:
                    // A Parameter's or tensor's Python attributes: not needed either.
                    break
                default:
                    throw PickleError(
                        problem: "pickle BUILD of a \(try top().typeName) with state \(state.typeName)")
                }
            case 0x51:  // BINPERSID
                stack.append(try persistentLoad(try pop()))
            case 0x50:  // PERSID (text id)
                stack.append(try persistentLoad(.string(try reader.line())))
            default:
                throw PickleError(
                    problem:
                        "pickle opcode 0x\(String(op, radix: 16)) (\(Self.opcodeName(op))) at byte \(opPosition) "
                        + "is not used by state dicts and not supported")
            }
        }
    }

    /// Applies one of the allowed callables to its argument tuple.
    private static func call(_ callable: PickleValue, _ args: PickleValue) throws -> PickleValue {
        guard case .global(let module, let name) = callable else {
            throw PickleError(problem: "pickle REDUCE of a \(callable.typeName), not a known function")
        }
        guard case .tuple(let a) = args else {
            throw PickleError(problem: "pickle REDUCE of \(module).\(name) without an argument tuple")
        }
        switch "\(module).\(name)" {
        case "collections.OrderedDict":
            let d = PickleDict()
            if case .list(let pairs)? = a.first {
                for case .tuple(let kv) in pairs.items where kv.count == 2 { d.set(kv[0], kv[1]) }
            }
            return .dict(d)
        case "torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2":
            // (storage, storage_offset, size, stride, [requires_grad, backward_hooks, metadata])
            guard a.count >= 4, case .storage(let storage) = a[0], case .int(let offset) = a[1],
                let shape = ints(a[2]), let strides = ints(a[3]), shape.count == strides.count
            else {
                throw PickleError(
                    problem:
                        "\(name) with unexpected arguments (\(a.map(\.typeName).joined(separator: ", ")))")
            }
            return .tensor(
                TorchTensorRef(storage: storage, offset: offset, shape: shape, strides: strides))
        case "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state":
            guard let first = a.first, case .tensor = first else {
                throw PickleError(problem: "\(name) without a tensor argument")
            }
            return first
        default:
            throw PickleError(
                problem: "pickle calls \(module).\(name), which is not a function state dicts use")
        }
    }

    static func ints(_ v: PickleValue) -> [Int]? {
        guard case .tuple(let items) = v else { return nil }
        var out: [Int] = []
        for item in items {
            guard case .int(let i) = item else { return nil }
            out.append(i)
        }
        return out
    }

    /// LONG1/LONG4: little-endian two's complement of any length.
    private static func long(_ bytes: [UInt8]) -> PickleValue {
        if bytes.isEmpty { return .int(0) }
        if bytes.count > 8 { return .bigInt(bytes) }
        var v: UInt64 = 0
        for (i, b) in bytes.enumerated() { v |= UInt64(b) << (8 * UInt64(i)) }
        if bytes.count < 8, bytes.last! & 0x80 != 0 { v |= ~0 << (8 * UInt64(bytes.count)) }
        return .int(Int(Int64(bitPattern: v)))
    }

    private static func opcodeName(_ op: UInt8) -> String {
        let names: [UInt8: String] = [
            0x82: "EXT1", 0x83: "EXT2", 0x84: "EXT4", 0x8F: "EMPTY_SET", 0x90: "ADDITEMS",
            0x91: "FROZENSET",
            0x92: "NEWOBJ_EX", 0x96: "BYTEARRAY8", 0x97: "NEXT_BUFFER", 0x98: "READONLY_BUFFER",
            0x69: "INST", 0x6F: "OBJ", 0x53: "STRING",
        ]
        if let n = names[op] { return n }
        if op >= 0x20 && op < 0x7F { return "'\(Character(UnicodeScalar(op)))'" }
        return "unknown"
    }
}

/// Reads pickle operands from a byte buffer, failing cleanly at its end.
struct ByteReader {
    let bytes: UnsafeRawBufferPointer
    var position: Int

    private func need(_ n: Int) throws {
        guard n >= 0, position + n <= bytes.count else {
            throw PickleError(problem: "the pickle ends early at byte \(position) (truncated file?)")
        }
    }

    mutating func byte() throws -> UInt8 {
        try need(1)
        defer { position += 1 }
        return bytes[position]
    }

    /// An unsigned little-endian integer of `n` bytes (n ≤ 8).
    mutating func fixed(_ n: Int) throws -> UInt64 {
        try need(n)
        var v: UInt64 = 0
        for i in 0..<n { v |= UInt64(bytes[position + i]) << (8 * UInt64(i)) }
        position += n
        return v
    }

    mutating func bytes(_ n: Int) throws -> [UInt8] {
        try need(n)
        defer { position += n }
        return Array(bytes[position..<position + n])
    }

    mutating func utf8(_ n: Int) throws -> String {
        let b = try bytes(n)
        guard let s = String(validating: b, as: UTF8.self) else {
            throw PickleError(problem: "pickle string at byte \(position - n) is not valid UTF-8")
        }
        return s
    }

    mutating func latin1(_ n: Int) throws -> String {
        String(decoding: try bytes(n).map { UInt16($0) }, as: UTF16.self)
    }

    /// Text up to a newline (for the text opcodes), without it.
    mutating func line() throws -> String {
        var end = position
        while end < bytes.count && bytes[end] != 0x0A { end += 1 }
        try need(end - position + 1)
        defer { position = end + 1 }
        return String(decoding: bytes[position..<end], as: UTF8.self)
    }
}
