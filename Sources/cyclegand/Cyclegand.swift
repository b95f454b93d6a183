import ArgumentParser

@main
struct Cyclegand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cyclegand",
        abstract: "Translate images between visual domains with CycleGAN generators.",
        discussion: """
            Models live in a store (--models-dir, else $CYCLEGAND_MODELS, else \
            ~/.local/share/cyclegand/models); each offers directions such as horse2zebra \
            and zebra2horse. Import PyTorch checkpoints with `import`, then either run the \
            daemon (`serve`: drop files into <root>/inbox/<direction>/, results appear in \
            <root>/outbox/<direction>/) and talk to it with `ctl`, or translate single files \
            with `translate`.

            Quick start:
              cyclegand import latest_net_G_A.pth --name horse2zebra --domains horse,zebra
              cyclegand serve --root ~/cyclegand
              cyclegand translate horse.jpg zebra.jpg --direction horse2zebra
            """,
        subcommands: [
            TranslateCommand.self, ServeCommand.self, CtlCommand.self, ImportCommand.self, ExportCommand.self,
            TrainCommand.self, ModelsCommand.self, BenchCommand.self,
        ]
    )
}
