import Foundation
import Testing

@testable import Daemon

#if canImport(Glibc)
    import Glibc
#endif

/// The daemon in-process with a fake translator: watching, claiming, priorities, cancel,
/// models appearing, events. The real binary with real images is in IntegrationTests.
@Suite(.serialized) struct DaemonServiceTests {
    let dir = TempDir("service")
    let translator = FakeTranslator()

    func makeDaemon(directions: [String] = ["a2b"], configure: (inout DaemonConfig) -> Void = { _ in })
        throws -> Daemon
    {
        for d in directions { try FS.makeDirectories(dir.path + "/models/" + d) }
        var config = DaemonConfig(
            root: dir.path + "/spool", modelsDir: dir.path + "/models", socket: dir.path + "/s.sock")
        config.stopTimeout = 5
        configure(&config)
        return Daemon(
            config: config, catalog: FolderCatalog(dir: dir.path + "/models"), translator: translator,
            logger: quietLogger(), notifier: SystemdNotifier(environment: [:]), handleSignals: false)
    }

    /// Runs `body` with the daemon started; shuts it down afterwards.
    func running(_ daemon: Daemon, _ body: () async throws -> Void) async throws {
        let task = Task { try await daemon.run() }
        #expect(
            await eventually {
                FS.isDirectory(dir.path + "/spool/outbox") && !FS.list(dir.path + "/spool/inbox").isEmpty
            })
        try await Task.sleep(nanoseconds: 100_000_000)
        do {
            try await body()
        } catch {
            await daemon.shutdown()
            throw error
        }
        await daemon.shutdown()
        try await task.value
    }

    /// Writes a file the way a careful program does: under a hidden name, then renamed in.
    func drop(_ rel: String, _ text: String, direction: String = "a2b") {
        let final = "spool/inbox/\(direction)/\(rel)"
        let hidden =
            ((final as NSString).deletingLastPathComponent) + "/.incoming-" + (rel as NSString).lastPathComponent
        dir.write(hidden, text)
        rename(dir.path + "/" + hidden, dir.path + "/" + final)
    }

    @Test func translatesDroppedFilesAndMirrorsSubfolders() async throws {
        dir.write("spool/inbox/a2b/early.png", "was there before the start")
        let daemon = try makeDaemon()
        try await running(daemon) {
            drop("one.png", "one")
            dir.write("spool/inbox/a2b/trip/day1/two.png", "two")  // new folders, written in place
            dir.write("spool/inbox/a2b/three.png.part", "partial")
            #expect(await eventually { dir.files("spool/outbox/a2b").count == 3 })
            #expect(dir.read("spool/outbox/a2b/trip/day1/two.png") == "TWO")
            #expect(dir.read("spool/outbox/a2b/early.png") == "WAS THERE BEFORE THE START")
            // The .part file waits until it is renamed.
            #expect(dir.files("spool/inbox/a2b") == ["three.png.part"])
            rename(dir.path + "/spool/inbox/a2b/three.png.part", dir.path + "/spool/inbox/a2b/three.png")
            #expect(await eventually { dir.read("spool/outbox/a2b/three.png") == "PARTIAL" })
            #expect(await eventually { dir.files("spool/work", hidden: true).isEmpty })
            #expect(await eventually { await daemon.status().processed == 4 })
            let status = await daemon.status()
            #expect(status.failed == 0 && status.queues == ["a2b": 0] && status.current.isEmpty)
        }
    }

    @Test func aFolderMovedInIsTranslatedAndOriginalsCanBeKept() async throws {
        let daemon = try makeDaemon { $0.keepOriginals = true }
        try await running(daemon) {
            dir.write("elsewhere/album/a.png", "a")
            dir.write("elsewhere/album/deeper/b.png", "b")
            let old = Date().addingTimeInterval(-60)
            for f in ["album/a.png", "album/deeper/b.png"] {
                try FileManager.default.setAttributes(
                    [.modificationDate: old], ofItemAtPath: dir.path + "/elsewhere/" + f)
            }
            #expect(rename(dir.path + "/elsewhere/album", dir.path + "/spool/inbox/a2b/album") == 0)
            #expect(await eventually { dir.files("spool/outbox/a2b") == ["album/a.png", "album/deeper/b.png"] })
            #expect(await eventually { dir.files("spool/done/a2b") == ["album/a.png", "album/deeper/b.png"] })
            #expect(dir.read("spool/done/a2b/album/deeper/b.png") == "b")
            #expect(dir.files("spool/inbox").isEmpty)
        }
    }

    @Test func failuresAndUnknownDirectionsGoToFailedAndTheNextFileIsProcessed() async throws {
        let daemon = try makeDaemon()
        try await running(daemon) {
            drop("bad.png", "BAD content")
            dir.write("spool/inbox/nomodel/x.png", "orphan")
            drop("good.png", "fine")
            #expect(await eventually { dir.read("spool/outbox/a2b/good.png") == "FINE" })
            #expect(await eventually { dir.files("spool/failed/nomodel").count == 2 })
            #expect(dir.files("spool/failed/a2b") == ["bad.png", "bad.png.error.json"])
            let sidecar = try Spool.decoder.decode(
                FailureSidecar.self,
                from: Data(try #require(dir.read("spool/failed/nomodel/x.png.error.json")).utf8))
            #expect(sidecar.code == "no_model" && sidecar.direction == "nomodel")
            #expect(sidecar.message.contains("a2b"))
        }
    }

    @Test func interactiveRequestsGoAheadOfWatchFolderJobsAndQueuedJobsCanBeCancelled() async throws {
        // One worker, so that the queue's order is the order of translation.
        let daemon = try makeDaemon { $0.workers = 1 }
        translator.closeGate()
        try await running(daemon) {
            drop("w1.png", "w1")
            #expect(await eventually { translator.held == 1 })
            for n in 2...4 { drop("w\(n).png", "w\(n)") }
            #expect(await eventually { (await daemon.status()).queues["a2b"] == 3 })
            let queued = await daemon.jobs()
            #expect(queued.map(\.state) == [.running, .queued, .queued, .queued])
            #expect(queued.first?.input == "w1.png")
            // Cancel w3 while queued.
            let w3 = try #require(queued.first { $0.input == "w3.png" })
            #expect(await daemon.cancel(id: w3.id).outcome == .cancelled)
            #expect(await daemon.cancel(id: "nope").outcome == .notFound)
            // Cancel w1 while it runs: it finishes translating but is not published.
            let w1 = try #require(queued.first)
            #expect(await daemon.cancel(id: w1.id).outcome == .cancelRequested)
            // The image in.png as the socket sends it (its bytes, its name); what it would write
            // to the peer's out.png is the reply's bytes.
            dir.write("in.png", "interactive")
            let input = try #require(FileManager.default.contents(atPath: dir.path + "/in.png"))
            async let reply = daemon.translate(
                TranslateRequest(direction: "a2b", inputBytes: input, inputName: "in.png"))
            #expect(await eventually { (await daemon.status()).interactiveQueue == 1 })
            translator.openGate()
            let r = try await reply
            #expect(r.direction == "a2b" && r.format == .png && r.outputBytes == Data("INTERACTIVE".utf8))
            #expect(await eventually { dir.files("spool/outbox/a2b").count == 2 })
            #expect(translator.callLog == ["w1", "interactive", "w2", "w4"])
            #expect(dir.files("spool/outbox/a2b") == ["w2.png", "w4.png"])
            #expect(
                dir.files("spool/failed/a2b") == ["w1.png", "w1.png.error.json", "w3.png", "w3.png.error.json"])
        }
    }

    @Test func interactiveInlineBytesAndErrors() async throws {
        let daemon = try makeDaemon()
        try await running(daemon) {
            let reply = try await daemon.translate(
                TranslateRequest(direction: "a2b", inputBytes: Data("inline".utf8), inputName: "x.png"))
            #expect(reply.outputBytes == Data("INLINE".utf8) && reply.format == .png)
            // The result comes back only as bytes: no file is written for it.
            #expect(dir.files("spool/outbox/a2b").isEmpty && FS.list(dir.path + "/spool/work").isEmpty)
            await #expect(throws: DaemonError(.notFound, "no model offers the direction \"zz\"")) {
                _ = try await daemon.translate(TranslateRequest(direction: "zz", inputBytes: Data("x".utf8)))
            }
            // A request the daemon cannot honour is a bad_request, refused before anything is
            // translated. (An output path that exists is refused by the socket, which writes the
            // peer's files: ProtocolTests.translateWithPathsAndInline.)
            await #expect {
                _ = try await daemon.translate(
                    TranslateRequest(direction: "a2b", inputBytes: Data("taken".utf8), inputName: "q.png", quality: 0))
            } throws: { ($0 as? DaemonError)?.code == .badRequest }
            #expect(!translator.callLog.contains("taken"))
            await #expect {
                _ = try await daemon.translate(
                    TranslateRequest(direction: "a2b", inputBytes: Data("BAD".utf8), inputName: "b.png"))
            } throws: { ($0 as? DaemonError)?.code == .unreadableImage }
            #expect(FS.list(dir.path + "/spool/work").isEmpty)
        }
    }

    @Test func aModelAddedLaterGetsItsInboxWithoutRestartAndEventsAreStreamed() async throws {
        let daemon = try makeDaemon()
        let stream = daemon.events()
        try await running(daemon) {
            dir.write("spool/inbox/c2d/waiting.png", "waited")
            #expect(await eventually { FS.isRegularFile(dir.path + "/spool/failed/c2d/waiting.png") })
            try FS.makeDirectories(dir.path + "/models/c2d")
            #expect(await eventually { (await daemon.directions()).map(\.name) == ["a2b", "c2d"] })
            #expect(FS.isDirectory(dir.path + "/spool/outbox/c2d"))
            drop("now.png", "now", direction: "c2d")
            #expect(await eventually { dir.read("spool/outbox/c2d/now.png") == "NOW" })
        }
        var kinds: [DaemonEvent.Kind] = []
        for await event in stream { kinds.append(event.kind) }
        // The first event is the start-up load of the models.
        #expect(kinds == [.directionsChanged, .imageFailed, .directionsChanged, .imageDone])
    }

    @Test func reloadAppliesTheNewConfiguration() async throws {
        let daemon = try makeDaemon { $0.outputFormat = .same }
        try await running(daemon) {
            drop("a.png", "a")
            #expect(await eventually { dir.read("spool/outbox/a2b/a.png") == "A" })
            // The translator is fake: only the naming shows the format change here.
            let reload = try await daemon.reload()
            #expect(reload.directions == ["a2b"] && reload.added.isEmpty)
        }
    }

    @Test func aSecondDaemonOnTheSameSpoolRefusesToStart() async throws {
        let first = try makeDaemon()
        try await running(first) {
            let second = try makeDaemon()
            await #expect { try await second.run() } throws: { ($0 as? DaemonError)?.code == .busy }
        }
    }
}

@Suite struct SystemdNotifierTests {
    /// A datagram socket standing in for systemd's notify socket.
    final class FakeSystemd {
        let fd: Int32
        init(address: String, abstract: Bool) throws {
            fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
            var a = sockaddr_un()
            a.sun_family = sa_family_t(AF_UNIX)
            var bytes = Array(address.utf8)
            if abstract { bytes.insert(0, at: 0) }
            withUnsafeMutableBytes(of: &a.sun_path) { $0.copyBytes(from: bytes) }
            let len = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (abstract ? 0 : 1))
            let rc = withUnsafePointer(to: &a) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) }
            }
            try #require(rc == 0)
            var tv = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        }
        deinit { close(fd) }
        func receive() -> String? {
            var buffer = [UInt8](repeating: 0, count: 4096)
            let n = recv(fd, &buffer, buffer.count, 0)
            return n > 0 ? String(decoding: buffer[0..<n], as: UTF8.self) : nil
        }
    }

    @Test func sendsToPathAndAbstractSockets() throws {
        let dir = TempDir("notify")
        let path = dir.path + "/notify.sock"
        let pathServer = try FakeSystemd(address: path, abstract: false)
        let n1 = SystemdNotifier(environment: ["NOTIFY_SOCKET": path])
        n1.ready(status: "queued: a2b 0")
        #expect(pathServer.receive() == "READY=1\nSTATUS=queued: a2b 0")
        n1.reloading()
        let reloading = try #require(pathServer.receive())
        #expect(reloading.hasPrefix("RELOADING=1\nMONOTONIC_USEC="))

        let name = "cyclegand-test-\(getpid())"
        let abstractServer = try FakeSystemd(address: name, abstract: true)
        let n2 = SystemdNotifier(environment: ["NOTIFY_SOCKET": "@" + name])
        n2.stopping()
        #expect(abstractServer.receive() == "STOPPING=1")
    }

    @Test func watchdogIntervalIsHalfTheTimeoutAndOnlyForUs() {
        #expect(SystemdNotifier(environment: ["WATCHDOG_USEC": "10000000"]).watchdogInterval == 5)
        #expect(
            SystemdNotifier(environment: ["WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "1"]).watchdogInterval == nil)
        #expect(SystemdNotifier(environment: [:]).watchdogInterval == nil)
        #expect(!SystemdNotifier(environment: [:]).notify("READY=1"))
    }
}
