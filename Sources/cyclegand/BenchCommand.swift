import ArgumentParser
import CycleGAN
import Foundation
import Imaging
import Models
import Tensor

/// The in-process side of `make bench` (tools/bench.py runs the peers).
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Time the generator's forward pass in this process (used by `make bench`).",
        discussion: """
            Prints one JSON object per size: {"size", "mode", "seconds_median", "seconds_min", \
            "seconds_total" (the --repeat runs end to end), "gflops", "threads", "blas_core", "kernels" (the instruction set of the Winograd transforms: avx512, avx2 or baseline; CYCLEGAND_KERNELS picks a slower one)}. The model is loaded once; each size runs once to \
            warm up, then --repeat times.
            """,
        shouldDisplay: false)

    @Option(help: ArgumentHelp("Generator weights (.pth or .safetensors).", valueName: "file")) var weights: String
    @Option(help: ArgumentHelp("Square sizes to time, comma-separated.", valueName: "list")) var sizes = "256,512,1024"
    @Option(help: "Timed runs per size (the median is reported).") var `repeat` = 5
    @Option(help: "Threads for the kernels (default: all cores).") var threads: Int?
    @Option(help: ArgumentHelp("whole, or streamed with --band-rows.", valueName: "mode")) var mode = "whole"
    @Option(name: .customLong("band-rows"), help: "Rows per band in streamed mode.") var bandRows = 64
    @Flag(help: "Print JSON lines (the default prints a table).") var json = false

    func run() throws {
        let compute = Compute(threads: threads)
        let loadStart = DispatchTime.now().uptimeNanoseconds
        let generator = try loadGenerator(weights: URL(fileURLWithPath: weights))
        let loadSeconds = Double(DispatchTime.now().uptimeNanoseconds - loadStart) / 1e9
        if !json {
            print(
                String(
                    format: "loaded %@ in %.3f s (BLAS core %@, %@ kernels)", weights, loadSeconds, Compute.blasCore,
                    Compute.winogradKernels))
        }
        for size in sizes.split(separator: ",").compactMap({ Int($0.trimmingCharacters(in: .whitespaces)) }) {
            let x = Tensor(shape: [1, 3, size, size])
            for i in 0..<x.count { x.data[i] = Float((i * 7919) % 255) / 127.5 - 1 }
            func once() throws -> Double {
                let t0 = DispatchTime.now().uptimeNanoseconds
                if mode == "streamed" {
                    _ = try ImageTranslation.streamedForward(
                        generator, x, bandRows: bandRows, storesInMemory: false, compute: compute)
                } else {
                    _ = generator.forward(x, compute: compute)
                }
                return Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            }
            _ = try once()
            let times = try (0..<max(1, `repeat`)).map { _ in try once() }.sorted()
            let median = times[times.count / 2]
            // 49.55 G multiply-adds at 256² for the 9-block ngf-64 generator, scaling with pixels.
            let macs = Double(Self.multiplyAdds(generator.architecture, height: size, width: size))
            let line: [String: Any] = [
                "size": size, "mode": mode, "seconds_median": median, "seconds_min": times[0],
                "seconds_total": times.reduce(0, +),
                "gflops": 2 * macs / median / 1e9, "threads": compute.threads, "blas_core": Compute.blasCore,
                "kernels": Compute.winogradKernels,
                "load_seconds": loadSeconds,
            ]
            if json {
                let data = try JSONSerialization.data(withJSONObject: line, options: [.sortedKeys])
                print(String(decoding: data, as: UTF8.self))
            } else {
                print(
                    String(
                        format: "%5d²  %@  median %.3f s  min %.3f s  %.0f GFLOP/s", size, mode, median, times[0],
                        2 * macs / median / 1e9))
            }
        }
    }

    /// Multiply-adds of one forward pass (convolutions only).
    static func multiplyAdds(_ a: GeneratorArchitecture, height: Int, width: Int) -> Int {
        let (h, w) = ResnetGenerator.workingSize(height: height, width: width)
        let full = h * w
        let half = full / 4
        let quarter = full / 16
        let f = a.ngf
        var m = full * f * a.inputChannels * 49  // 7×7 in
        m += half * (2 * f) * f * 9 + quarter * (4 * f) * (2 * f) * 9  // downsampling
        m += a.blocks * 2 * quarter * (4 * f) * (4 * f) * 9  // residual blocks
        // Transposed convs: each output pixel receives 9/4 taps on average (stride 2).
        m += half * (2 * f) * (4 * f) * 9 / 4 + full * f * (2 * f) * 9 / 4
        m += full * a.outputChannels * f * 49  // 7×7 out
        return m
    }
}
