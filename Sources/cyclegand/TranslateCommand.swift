import ArgumentParser

struct TranslateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "translate", abstract: "Translate one image.")
    func run() async throws {}
}
