/// Random numbers whose whole state is one `UInt64`, so a checkpoint can save
/// it and a resumed run draws exactly what the uninterrupted one would have.
///
/// SplitMix64 (Steele, Lea and Flood 2014): fast, passes BigCrush, and any seed
/// is a good one. `derived(_:)` gives independent streams keyed by counters
/// (epoch, sample index), so that a sample's crop and flip do not depend on how
/// far ahead the data loader has read.
public struct SplitMix64: RandomNumberGenerator, Codable, Equatable, Sendable {
    public var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A stream of its own for `keys` (for instance epoch and sample index), from this state.
    public func derived(_ keys: UInt64...) -> SplitMix64 {
        var g = SplitMix64(seed: state)
        for k in keys { g = SplitMix64(seed: g.next() ^ k &* 0xD6E8_FEB8_6659_FD93) }
        return g
    }

    /// Uniform in [0, 1), 53 bits.
    public mutating func uniform() -> Double { Double(next() >> 11) * 0x1.0p-53 }

    /// Uniform in `range` (inclusive), as Python's `random.randint`.
    public mutating func int(in range: ClosedRange<Int>) -> Int {
        Int.random(in: range, using: &self)
    }

    /// Standard normal (Box–Muller).
    public mutating func normal() -> Double {
        let u1 = max(uniform(), 0x1.0p-60)
        let u2 = uniform()
        return (-2 * _log(u1)).squareRoot() * _cos(2 * Double.pi * u2)
    }
}

#if canImport(Glibc)
    import Glibc
    @inline(__always) private func _log(_ x: Double) -> Double { Glibc.log(x) }
    @inline(__always) private func _cos(_ x: Double) -> Double { Glibc.cos(x) }
#else
    import Foundation
    @inline(__always) private func _log(_ x: Double) -> Double { Foundation.log(x) }
    @inline(__always) private func _cos(_ x: Double) -> Double { Foundation.cos(x) }
#endif
