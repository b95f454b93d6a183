import Foundation
import Testing

/// `systemd-analyze verify` on both units. verify exits 0 even for unknown keys or values it
/// cannot parse (it only warns), so the test requires it to print nothing at all. The units name
/// the installed binary, which does not exist on a build machine: the copy that is verified has
/// only its ExecStart= program replaced by /bin/true.
@Suite struct SystemdUnitTests {
    static let analyze = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }

    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    /// Runs systemd-analyze verify on `unitText` saved as cyclegand.service; returns (status, output).
    func verify(_ unitText: String, user: Bool) throws -> (Int32, String) {
        let dir = TempDir("units")
        try FileManager.default.createDirectory(atPath: dir.path + "/run", withIntermediateDirectories: true)
        let unit = dir.path + "/cyclegand.service"
        try unitText.write(toFile: unit, atomically: true, encoding: .utf8)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try #require(Self.analyze))
        process.arguments = (user ? ["--user"] : []) + ["verify", "--man=no", unit]
        var env = ProcessInfo.processInfo.environment
        env["XDG_RUNTIME_DIR"] = dir.path + "/run"  // a user manager needs one to start
        env["SYSTEMD_LOG_COLOR"] = "0"
        process.environment = env
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, output)
    }

    func unit(_ name: String, replacing program: String) throws -> String {
        let text = try String(contentsOfFile: Self.repo + "/systemd/" + name, encoding: .utf8)
        #expect(text.contains("ExecStart=" + program + " serve"))
        return text.replacingOccurrences(of: "ExecStart=" + program, with: "ExecStart=/bin/true")
    }

    @Test(.enabled(if: analyze != nil, "systemd-analyze is missing: apt-get install systemd"))
    func systemUnitVerifiesCleanly() throws {
        let text = try unit("cyclegand-system.service", replacing: "/usr/local/bin/cyclegand")
        for line in [
            "Type=notify", "ProtectSystem=strict", "ReadWritePaths=", "NoNewPrivileges=yes", "PrivateTmp=yes",
            "ProtectHome=yes", "RestrictAddressFamilies=AF_UNIX", "SystemCallFilter=@system-service",
            "MemoryDenyWriteExecute=yes", "LockPersonality=yes", "RuntimeDirectory=cyclegand",
            "StateDirectory=cyclegand", "WatchdogSec=",
        ] {
            #expect(text.contains("\n" + line), "missing \(line)")
        }
        let (status, output) = try verify(text, user: false)
        #expect(status == 0 && output.isEmpty, "\(output)")
    }

    @Test(.enabled(if: analyze != nil, "systemd-analyze is missing: apt-get install systemd"))
    func userUnitVerifiesCleanly() throws {
        let text = try unit("cyclegand.service", replacing: "%h/.local/bin/cyclegand")
        #expect(text.contains("\nType=notify") && text.contains("\nWantedBy=default.target"))
        let (status, output) = try verify(text, user: true)
        #expect(status == 0 && output.isEmpty, "\(output)")
    }

    /// The check above would pass vacuously if verify printed nothing for broken units too.
    @Test(.enabled(if: analyze != nil, "systemd-analyze is missing: apt-get install systemd"))
    func verifyReportsAMistake() throws {
        let (_, output) = try verify(
            "[Service]\nType=notify\nExecStart=/bin/true\nProtectSystem=strictish\n", user: false)
        #expect(output.contains("strictish"))
    }
}
