import Foundation
import Imaging
import Tensor

@testable import Training

/// An unpaired task whose answer is known: domain A holds smooth random colour
/// fields with a dominant red channel, domain B independent fields of the same
/// kind with red and blue swapped. Nothing pairs them; the true A → B map swaps
/// red and blue.
struct SyntheticTask {
    var size = 32
    var random: SplitMix64

    init(seed: UInt64, size: Int = 32) {
        random = SplitMix64(seed: seed)
        self.size = size
    }

    /// A field of domain A, [1, 3, size, size] in [-1, 1]: a 4×4 grid of random values per channel,
    /// upsampled bilinearly, red around +0.6, green around 0, blue around −0.6.
    mutating func sampleA() -> Tensor {
        let t = Tensor(shape: [1, 3, size, size])
        let grid = 4
        let centre: [Double] = [0.6, 0, -0.6]
        for c in 0..<3 {
            let g = (0..<(grid * grid)).map { _ in centre[c] + 0.35 * (2 * random.uniform() - 1) }
            for y in 0..<size {
                for x in 0..<size {
                    let fy = Double(y) / Double(size - 1) * Double(grid - 1)
                    let fx = Double(x) / Double(size - 1) * Double(grid - 1)
                    let y0 = min(Int(fy), grid - 2)
                    let x0 = min(Int(fx), grid - 2)
                    let dy = fy - Double(y0)
                    let dx = fx - Double(x0)
                    let v =
                        g[y0 * grid + x0] * (1 - dy) * (1 - dx) + g[y0 * grid + x0 + 1] * (1 - dy) * dx
                        + g[(y0 + 1) * grid + x0] * dy * (1 - dx) + g[(y0 + 1) * grid + x0 + 1] * dy * dx
                    t.data[(c * size + y) * size + x] = Float(max(-1, min(1, v)))
                }
            }
        }
        return t
    }

    /// A field of domain B: an independent A field with red and blue swapped.
    mutating func sampleB() -> Tensor { Self.swapRedBlue(sampleA()) }

    static func swapRedBlue(_ x: Tensor) -> Tensor {
        let y = x.copy()
        let plane = x.count / 3
        y.data.update(from: x.data + 2 * plane, count: plane)
        (y.data + 2 * plane).update(from: x.data, count: plane)
        return y
    }

    /// Writes `count` PNGs of each domain into root/trainA and root/trainB.
    mutating func write(to root: String, count: Int) throws {
        for folder in ["trainA", "trainB"] {
            try FileManager.default.createDirectory(atPath: "\(root)/\(folder)", withIntermediateDirectories: true)
            for i in 0..<count {
                let field = folder == "trainA" ? sampleA() : sampleB()
                try ImageFile.save(field, to: "\(root)/\(folder)/\(String(format: "%04d", i)).png")
            }
        }
    }

    /// Mean |G(x) − swap(x)| over held-out A fields, over the identity baseline mean |x − swap(x)|.
    /// Inputs go through 8-bit quantisation as a PNG would, so that train and test see the same kind of data.
    static func errorRatio(_ translate: (Tensor) -> Tensor, samples: Int, seed: UInt64) -> Double {
        var task = SyntheticTask(seed: seed)
        var error = 0.0
        var baseline = 0.0
        for _ in 0..<samples {
            let x = task.sampleA()
            for i in 0..<x.count { x.data[i] = ((x.data[i] + 1) * 127.5).rounded() / 127.5 - 1 }
            let truth = swapRedBlue(x)
            let y = translate(x)
            for i in 0..<x.count {
                error += Double(abs(y.data[i] - truth.data[i]))
                baseline += Double(abs(x.data[i] - truth.data[i]))
            }
        }
        return error / baseline
    }
}
