import Testing

@testable import Training

@Suite struct RandomTests {
    @Test func savedStateContinuesTheSameStream() {
        var a = SplitMix64(seed: 42)
        for _ in 0..<10 { _ = a.next() }
        var b = SplitMix64(seed: a.state)
        #expect((0..<100).map { _ in a.next() } == (0..<100).map { _ in b.next() })
    }

    @Test func derivedStreamsDifferByKey() {
        let g = SplitMix64(seed: 7)
        var x = g.derived(1, 2)
        var y = g.derived(1, 3)
        let z = g.derived(1, 2)
        #expect(x.next() != y.next())
        #expect(g.derived(1, 2).state == z.state)
    }

    @Test func intStaysInRangeAndCoversIt() {
        var g = SplitMix64(seed: 1)
        let seen = Set((0..<1000).map { _ in g.int(in: 0...4) })
        #expect(seen == [0, 1, 2, 3, 4])
    }
}
