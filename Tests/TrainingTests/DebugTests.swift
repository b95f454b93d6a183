import CycleGAN
import Foundation
import Models
import Tensor
import Testing

@testable import Training

@Suite struct DebugTests {
    @Test func afterOne() throws {
        let (model, s) = try TrainingParityTests().model(set: "parity_set", gan: .lsgan)
        _ = s
        let inputs = try tensors(fixture("training/parity_inputs.safetensors"))
        let want = try tensors(URL(fileURLWithPath: "/tmp/after1.safetensors"))
        _ = model.optimize(realA: [inputs["real_A.0"]!], realB: [inputs["real_B.0"]!], compute: Compute(threads: 1))
        var rows: [(String, Float, Float)] = []
        for (role, net) in model.networks {
            for p in net.parameters {
                let ref = want["\(role).\(p.name)"]!
                var mag: Float = 0
                for i in 0..<ref.count { mag = max(mag, abs(ref.data[i])) }
                rows.append(("\(role).\(p.name)", p.value.maxAbsDifference(ref), mag))
            }
        }
        let w = model.gA.parameters.first { $0.name == "model.7.weight" }!
        let ref = want["G_A.model.7.weight"]!
        for i in 0..<w.count where abs(w.value.data[i] - ref.data[i]) > 1e-5 {
            print("ELEM", i, w.value.data[i], ref.data[i], "grad", w.grad.data[i])
        }
        for r in rows.filter({ !$0.0.hasSuffix("bias") || $0.0.contains("model.0.") || $0.0.contains("model.11.bias") || $0.0.contains("model.22.bias") || $0.0.contains("model.25.bias") }).sorted(by: { $0.1 > $1.1 }).prefix(25) { print("DIFF", r.0, r.1, r.2) }
    }
}
