import ArgumentParser

@main
struct Cyclegand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cyclegand",
        abstract: "Translate images between visual domains with CycleGAN generators.",
        subcommands: [
            TranslateCommand.self, ServeCommand.self, CtlCommand.self, ImportCommand.self, ExportCommand.self,
            ModelsCommand.self, BenchCommand.self,
        ]
    )
}
