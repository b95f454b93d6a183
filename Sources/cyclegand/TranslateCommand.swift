import ArgumentParser
import CycleGAN
import Daemon
import Foundation
import Imaging
import Models

struct TranslateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "translate",
        abstract: "Translate one image file with a generator.",
        discussion: """
            The generator comes from the model store (--direction, see `cyclegand models`) or \
            straight from a weights file (--weights: a PyTorch .pth of the reference \
            pytorch-CycleGAN-and-pix2pix layout or the vintagify one, or a .safetensors file).

            Any image libvips reads is accepted; the output is written in the format its \
            extension names (or --format), atomically: nothing appears at OUTPUT on failure. \
            Images too large for --memory-limit are translated in bands of rows, with the \
            same result as a whole-image pass.

            Examples:
              cyclegand translate cat.jpg cat-vintage.jpg --direction modern2vintage
              cyclegand translate big.tif out.tif --weights latest_net_G_A.pth --memory-limit 512MiB
            """)

    @Argument(help: "The image to translate.") var input: String
    @Argument(help: "Where to write the result.") var output: String

    @Option(help: ArgumentHelp("A direction from the model store, e.g. modern2vintage.", valueName: "name"))
    var direction: String?

    @Option(
        help: ArgumentHelp("A generator weights file (.pth or .safetensors) instead of a direction.", valueName: "file")
    )
    var weights: String?

    @OptionGroup var location: ModelsDirOption

    @Option(help: "Threads for the kernels (default: all cores).") var threads: Int?

    @Option(
        name: .customLong("memory-limit"),
        help: ArgumentHelp("Most memory one image may use, e.g. 1GiB, 512MiB (default 1GiB).", valueName: "size"))
    var memoryLimit: String?

    @Option(
        help: ArgumentHelp("Output format (jpg, png, webp, tif, ...) when not the extension's.", valueName: "format"))
    var format: String?

    @Option(help: ArgumentHelp("Encoder quality 1–100 for lossy formats.", valueName: "n")) var quality: Int?

    @Option(
        name: .customLong("pixel-limit"),
        help: ArgumentHelp("Refuse inputs with more pixels than this (default 100000000).", valueName: "n"))
    var pixelLimit: Int = LoadOptions.defaultPixelLimit

    @Option(
        help: ArgumentHelp(
            "Force whole-image or streamed (banded) execution instead of choosing by the memory limit.",
            valueName: "whole|streamed"))
    var mode: String?

    @Flag(help: "Print what was done (size, mode, seconds) as JSON.") var json = false

    func validate() throws {
        if (direction == nil) == (weights == nil) {
            throw ValidationError("give either --direction NAME or --weights FILE")
        }
        if let mode, ImageTranslation.Options.Mode(rawValue: mode) == nil {
            throw ValidationError("--mode must be whole or streamed, not \(mode)")
        }
        if let memoryLimit, DaemonConfig.parseByteSize(memoryLimit) == nil {
            throw ValidationError("--memory-limit: cannot read '\(memoryLimit)' as a size (try 1GiB or 512MiB)")
        }
    }

    func run() throws {
        let generator: ResnetGenerator
        if let weights {
            generator = try loadGenerator(weights: URL(fileURLWithPath: weights))
        } else {
            generator = try location.store.generator(direction: direction!)
        }
        var options = ImageTranslation.Options(
            threads: threads, load: LoadOptions(pixelLimit: pixelLimit),
            save: SaveOptions(format: format, quality: quality),
            mode: mode.flatMap(ImageTranslation.Options.Mode.init(rawValue:)))
        if let memoryLimit, let bytes = DaemonConfig.parseByteSize(memoryLimit) { options.memoryLimit = Int(bytes) }
        let report = try ImageTranslation.translateFile(
            input: input, output: output, generator: generator, options: options)
        if json {
            let data = try JSONEncoder().encode(report)
            print(String(decoding: data, as: UTF8.self))
        } else {
            print(
                "\(output): \(report.width)×\(report.height), \(report.mode) pass, "
                    + String(format: "%.2f s", report.seconds))
        }
    }
}
