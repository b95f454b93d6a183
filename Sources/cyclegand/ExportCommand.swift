import ArgumentParser
import Foundation
import Models

struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write a model's networks as reference-named checkpoints (latest_net_G_A.pth, ...).",
        discussion: """
            The .pth files load with torch.load(path, weights_only=True) into the reference \
            pytorch-CycleGAN-and-pix2pix networks; the .safetensors ones with safetensors.torch.load_file.
            """)

    @Argument(help: "The model's name.") var name: String
    @Argument(help: "The folder to write into (created if missing).") var directory: String
    @Option(help: "pth or safetensors.") var format: String = "pth"
    @OptionGroup var location: ModelsDirOption

    func run() throws {
        guard let f = ModelExporter.Format(rawValue: format) else {
            throw ValidationError("--format must be pth or safetensors, not \(format)")
        }
        let written = try ModelExporter(store: location.store).export(
            model: name, to: URL(fileURLWithPath: directory), format: f)
        for url in written { print(url.path) }
    }
}
