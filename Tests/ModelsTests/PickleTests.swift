import Foundation
import Testing

@testable import Models

/// The pickle machine on pickles Python wrote (hex from `pickle.dumps`).
@Suite struct PickleTests {
    private func bytes(_ hex: String) -> [UInt8] {
        var out: [UInt8] = []
        var i = hex.startIndex
        while i < hex.endIndex {
            let j = hex.index(i, offsetBy: 2)
            out.append(UInt8(hex[i..<j], radix: 16)!)
            i = j
        }
        return out
    }

    private func run(_ hex: String) throws -> PickleValue {
        let machine = PickleMachine { _ in throw PickleError(problem: "no persistent ids here") }
        return try bytes(hex).withUnsafeBytes { try machine.run($0).0 }
    }

    private func problem(_ hex: String) -> String? {
        do {
            _ = try run(hex)
            return nil
        } catch {
            return "\(error)"
        }
    }

    /// {'a': [1, -2, 300, 70000, 2**40, -2**63, 1.5, None, True, False, 'é', b'xy', (1,), (1,2), (1,2,3), ()],
    ///  'b': {'c': 'd'}} at protocol 4 (FRAME, MEMOIZE, SHORT_BINUNICODE, SHORT_BINBYTES, LONG1, BINFLOAT, ...).
    static let protocol4 =
        "80049566000000000000007d94288c0161945d94284b014afeffffff4d2c014a701101008a060000000000018a0800000000000000"
        + "80473ff80000000000004e88898c02c3a99443027879944b0185944b014b0286944b014b024b03879429658c0162947d948c0163"
        + "948c01649473752e"

    @Test func readsPlainValues() throws {
        guard case .dict(let top) = try run(Self.protocol4), case .list(let a)? = top["a"],
            case .dict(let b)? = top["b"]
        else {
            Issue.record("not a dict of a list and a dict")
            return
        }
        let items = a.items
        #expect(items.count == 16)
        let ints = items.prefix(6).compactMap { v -> Int? in if case .int(let i) = v { return i } else { return nil } }
        #expect(ints == [1, -2, 300, 70000, 1 << 40, Int.min])
        if case .float(let f) = items[6] { #expect(f == 1.5) } else { Issue.record("no float") }
        if case .none = items[7] {} else { Issue.record("no None") }
        if case .bool(true) = items[8], case .bool(false) = items[9] {} else { Issue.record("no bools") }
        if case .string(let s) = items[10] { #expect(s == "é") } else { Issue.record("no string") }
        if case .bytes(let x) = items[11] { #expect(x == Array("xy".utf8)) } else { Issue.record("no bytes") }
        let tupleSizes = items[12...].compactMap { v -> Int? in
            if case .tuple(let t) = v { return t.count } else { return nil }
        }
        #expect(tupleSizes == [1, 2, 3, 0])
        if case .string("d")? = b["c"] {} else { Issue.record("no nested dict") }
    }

    @Test func refusesWhatStateDictsDoNotUse() {
        // Protocol 2 pickles bytes through the global _codecs.encode.
        let protocol2 =
            "80027d71002858010000006171015d7102284b014afeffffff4d2c014a701101008a060000000000018a0800000000000000"
            + "80473ff80000000000004e88895802000000c3a97103635f636f646563730a656e636f64650a71045802000000787971055806"
            + "0000006c6174696e3171068671075271084b018571094b014b0286710a4b014b024b0387710b2965580100000062710c7d710d"
            + "580100000063710e580100000064710f73752e"
        #expect(problem(protocol2)?.contains("_codecs.encode") == true)
        // {'s': {1}}: EMPTY_SET.
        #expect(problem("8004950e000000000000007d948c0173948f94284b0190732e")?.contains("EMPTY_SET") == true)
        // {'x': collections.Counter()}
        let counter = "80027d7100580100000078710163636f6c6c656374696f6e730a436f756e7465720a71027d7103857104527105732e"
        #expect(problem(counter)?.contains("collections.Counter") == true)
        // Cut short.
        #expect(problem(String(Self.protocol4.dropLast(10)))?.contains("ends early") == true)
    }
}
