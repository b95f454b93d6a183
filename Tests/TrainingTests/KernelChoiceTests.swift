import Foundation
import Testing

/// Which Winograd transforms the real binary runs (Sources/CKernels): the fastest set the CPU has, or the one
/// CYCLEGAND_KERNELS names, and a word on standard error when that name cannot be honoured.
@Suite struct KernelChoiceTests {
    static let weights = fixture("generators/reference_generator.pth").path

    func bench(kernels: String?) throws -> String {
        let (status, output) = try cyclegand(
            ["bench", "--weights", Self.weights, "--sizes", "16", "--repeat", "1", "--threads", "1"],
            environment: ["CYCLEGAND_KERNELS": kernels ?? ""])
        #expect(status == 0, "\(output)")
        return output
    }

    @Test func theBaselineSetCanBeAskedFor() throws {
        let output = try bench(kernels: "baseline")
        #expect(output.contains("baseline kernels"), "\(output)")
        #expect(!output.contains("ignored"), "\(output)")
    }

    @Test func anUnknownSetIsNamedAndTheFastestRuns() throws {
        let fastest = try bench(kernels: nil)
        #expect(!fastest.contains("ignored"), "\(fastest)")
        let output = try bench(kernels: "sse9")
        #expect(
            output.contains("CYCLEGAND_KERNELS=sse9 ignored (the sets are avx512, avx2 and baseline)"), "\(output)")
        // The same set as with nothing asked.
        for set in ["avx512", "avx2", "baseline"] where fastest.contains("\(set) kernels") {
            #expect(output.contains("using \(set)") && output.contains("\(set) kernels"), "\(output)")
        }
    }
}
