import Control
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The other clients of docs/PROTOCOL.md against the real daemon: `cyclegand ctl` (output and
/// exit codes) and the plain-Python module the GIMP plug-in uses.
@Suite struct ClientTests {
    @Test func ctlPrintsTablesJSONAndExitCodes() throws {
        let daemon = try DaemonProcess()
        let binary = try #require(cyclegandBinary)
        let files = TempDir("ctl")
        let input = try testPNG(width: 24, height: 16, in: files)
        func ctl(_ arguments: String...) throws -> (status: Int32, output: String, error: String) {
            try runProcess(binary, ["ctl"] + arguments + ["--socket", daemon.socketPath])
        }
        let status = try ctl("status")
        #expect(status.status == 0)
        #expect(status.output.contains("photo2test  0"), "\(status.output)")
        let models = try ctl("models")
        #expect(models.output.contains("tiny") && models.output.contains("photo2test"))

        let translated = try ctl("translate", input, files.file("out.webp"), "--direction", tinyDirection)
        #expect(translated.status == 0, "\(translated.error)")
        #expect(translated.output.contains("24×16"))
        #expect(FileManager.default.contents(atPath: files.file("out.webp"))?.prefix(4) == Data("RIFF".utf8))

        let inline = try ctl(
            "translate", input, files.file("inline.png"), "--direction", tinyDirection, "--inline", "--json")
        #expect(inline.status == 0)
        #expect(inline.output.contains(#""ok":true"#))
        #expect(pngSize(FileManager.default.contents(atPath: files.file("inline.png")) ?? Data())! == (24, 16))

        let missing = try ctl("translate", input, files.file("x.png"), "--direction", "no2such")
        #expect(missing.status == 2)
        #expect(missing.error.contains("not_found"))
        let exists = try ctl("translate", input, files.file("out.webp"), "--direction", tinyDirection)
        #expect(exists.status == 1)
        #expect(try ctl("cancel", "nope").status == 2)
        #expect(try runProcess(binary, ["ctl", "ping", "--socket", files.file("none.sock")]).status == 69)
    }

    @Test func pythonClientModule() throws {
        let daemon = try DaemonProcess()
        let files = TempDir("python")
        let input = try testPNG(width: 20, height: 12, in: files)
        let module = repositoryRoot + "/plugins/gimp/cyclegand"
        let script = """
            import sys
            sys.path.insert(0, \(pythonString(module)))
            import cyclegand_client as c
            d = c.Client(\(pythonString(daemon.socketPath)), timeout=60)
            assert d.ping() is True
            assert d.version()["protocol"] == c.PROTOCOL_VERSION
            assert d.directions() == [\(pythonString(tinyDirection))], d.directions()
            assert d.status()["queues"] == {\(pythonString(tinyDirection)): 0}
            reply, png = d.translate_bytes(open(\(pythonString(input)), "rb").read(), \(pythonString(tinyDirection)), name="x.png")
            assert png[:8] == b"\\x89PNG\\r\\n\\x1a\\n" and (reply["width"], reply["height"]) == (20, 12), reply
            seen = []
            reply, png = d.translate_bytes(
                open(\(pythonString(input)), "rb").read(), \(pythonString(tinyDirection)), name="x.png",
                progress=lambda fraction, job: seen.append((fraction, job)))
            assert seen[0][0] == 0 and seen[-1][0] == 1, seen
            assert all(job == reply["job"] for _, job in seen), (seen, reply)
            out = d.translate_file(\(pythonString(input)), \(pythonString(files.file("o.png"))), \(pythonString(tinyDirection)))
            assert out["output"] == \(pythonString(files.file("o.png")))
            try:
                d.translate_bytes(b"garbage", \(pythonString(tinyDirection)))
                raise SystemExit("no error for garbage")
            except c.DaemonError as e:
                assert e.code == "unreadable_image", e.code
            try:
                d.call("finetune")
                raise SystemExit("no error for finetune")
            except c.DaemonError as e:
                assert e.code == "bad_request" and "'model'" in str(e), e
            events = c.Client(\(pythonString(daemon.socketPath)), timeout=60).subscribe()
            d.translate_bytes(open(\(pythonString(input)), "rb").read(), \(pythonString(tinyDirection)))
            assert next(events)["event"] == "image_done"
            try:
                c.Client(\(pythonString(files.file("none.sock"))))
                raise SystemExit("connected to nothing")
            except ConnectionError as e:
                assert "no cyclegand daemon" in str(e)
            print("python client ok")
            """
        let result = try runProcess("/usr/bin/python3", ["-"], input: Data(script.utf8))
        #expect(result.status == 0, "\(result.error)")
        #expect(result.output.contains("python client ok"))
    }
}

private func pythonString(_ text: String) -> String {
    "\"" + text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
}
