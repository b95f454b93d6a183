import Foundation
import Testing

@testable import Daemon

@Suite struct TOMLSubsetTests {
    @Test func parsesTheSubset() throws {
        let text = """
            # comment
            root = "/srv/spool"   # trailing comment
            quality = 85
            big = 1_000_000
            ratio = 0.5
            keep = true
            literal = 'C:\\raw'
            escaped = "a\\"b\\tc\\u00e9"

            """
        let v = try TOMLSubset.parse(text)
        #expect(v["root"] == .string("/srv/spool"))
        #expect(v["quality"] == .integer(85))
        #expect(v["big"] == .integer(1_000_000))
        #expect(v["ratio"] == .float(0.5))
        #expect(v["keep"] == .bool(true))
        #expect(v["literal"] == .string("C:\\raw"))
        #expect(v["escaped"] == .string("a\"b\tcé"))
    }

    @Test(arguments: [
        ("[daemon]\nroot = \"x\"", 1, "tables"),
        ("root = x", 1, "quotes"),
        ("a = 1\na = 2", 2, "set twice"),
        ("a = \"open", 1, "unterminated"),
        ("a = [1, 2]", 1, "arrays"),
        ("just text", 1, "key = value"),
        ("a = 1 2", 1, "after the value"),
    ])
    func rejectsWithLineNumbers(text: String, line: Int, fragment: String) {
        #expect {
            _ = try TOMLSubset.parse(text)
        } throws: { error in
            guard let e = error as? TOMLSubsetError else { return false }
            return e.line == line && e.message.contains(fragment)
        }
    }
}

@Suite struct ConfigTests {
    let base = DaemonConfig(root: "/r", modelsDir: "/m", socket: "/s")

    @Test func appliesEveryKey() throws {
        let values = try TOMLSubset.parse(
            """
            root = "spool"
            models_dir = "~/models"
            memory_limit = "512MiB"
            threads = 2
            workers = 3
            keep_originals = true
            output_format = "webp"
            quality = 70
            max_pixels = 1000
            socket = "/run/x.sock"
            socket_group = "staff"
            log_level = "debug"
            on_conflict = "overwrite"
            stop_timeout = 2.5
            """)
        let c = try base.applying(values, relativeTo: "/etc/cyclegand", source: "test")
        #expect(c.root == "/etc/cyclegand/spool")
        #expect(c.modelsDir == NSHomeDirectory() + "/models")
        #expect(c.memoryLimit == 512 << 20)
        #expect(c.threads == 2 && c.workers == 3 && c.keepOriginals)
        #expect(c.outputFormat == .webp && c.quality == 70 && c.maxPixels == 1000)
        #expect(c.socket == "/run/x.sock" && c.socketGroup == "staff")
        #expect(c.logLevel == .debug && c.onConflict == .overwrite && c.stopTimeout == 2.5)
    }

    @Test func unknownKeysAndBadValuesAreErrors() throws {
        #expect(throws: ConfigError.self) {
            try base.applying(["qualty": .integer(3)], relativeTo: "/", source: "t")
        }
        #expect(throws: ConfigError.self) {
            try base.applying(["quality": .integer(300)], relativeTo: "/", source: "t")
        }
        #expect(throws: ConfigError.self) {
            try base.applying(["output_format": .string("bmp")], relativeTo: "/", source: "t")
        }
        #expect(throws: ConfigError.self) {
            try base.applying(["memory_limit": .string("lots")], relativeTo: "/", source: "t")
        }
        #expect(throws: ConfigError.self) {
            try base.applying(["workers": .string("2")], relativeTo: "/", source: "t")
        }
    }

    @Test func byteSizes() {
        #expect(DaemonConfig.parseByteSize("2GiB") == 2 << 30)
        #expect(DaemonConfig.parseByteSize("1.5 g") == 3 << 29)
        #expect(DaemonConfig.parseByteSize("100") == 100)
        #expect(DaemonConfig.parseByteSize("12 parsecs") == nil)
    }

    @Test func defaultsFollowSystemdAndXDG() {
        let system = DaemonConfig.defaults(environment: [
            "STATE_DIRECTORY": "/var/lib/cyclegand", "RUNTIME_DIRECTORY": "/run/cyclegand", "HOME": "/nonexistent",
        ])
        #expect(system.root == "/var/lib/cyclegand/spool")
        #expect(system.modelsDir == "/var/lib/cyclegand/models")
        #expect(system.socket == "/run/cyclegand/cyclegand.sock")
        let user = DaemonConfig.defaults(environment: ["HOME": "/home/u", "XDG_RUNTIME_DIR": "/run/user/1000"])
        #expect(user.root == "/home/u/.local/share/cyclegand/spool")
        #expect(user.socket == "/run/user/1000/cyclegand.sock")
        #expect(
            DaemonConfig.defaultFile(environment: ["HOME": "/home/u"]) == "/home/u/.config/cyclegand/cyclegand.toml")
    }

    @Test func theShippedExampleLoads() throws {
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let example = repo.appendingPathComponent("examples/cyclegand.toml").path
        let c = try base.applying(file: example)
        #expect(c.workers == 0 && c.workerCount >= 1)
        #expect(c.quality >= 1 && c.quality <= 100)
    }
}

@Suite struct NamingTests {
    @Test func ignoredNames() {
        for name in [".x.jpg", "a.jpg.part", "a.tmp", "b.crdownload", "c.jpg~", "c.jpg.error.json"] {
            #expect(IncomingName.isIgnored(name), "\(name)")
        }
        for name in ["a.jpg", "tmp.png", "part.jpeg", "x"] {
            #expect(!IncomingName.isIgnored(name), "\(name)")
        }
    }

    @Test func outputNames() {
        #expect(OutputNaming.resolve(inputName: "cat.JPG", configured: .same) == (.jpeg, "cat.JPG"))
        #expect(OutputNaming.resolve(inputName: "cat.png", configured: .jpeg) == (.jpeg, "cat.jpg"))
        #expect(OutputNaming.resolve(inputName: "cat.jpeg", configured: .jpeg) == (.jpeg, "cat.jpeg"))
        #expect(OutputNaming.resolve(inputName: "anim.gif", configured: .same) == (.png, "anim.png"))
        #expect(OutputNaming.resolve(inputName: "noext", configured: .same) == (.png, "noext.png"))
        #expect(Spool.numbered("cat.jpg", 0) == "cat.jpg")
        #expect(Spool.numbered("cat.jpg", 2) == "cat (2).jpg")
        #expect(Spool.numbered("README", 1) == "README (1)")
    }
}
