import Control
import Foundation
import Testing

/// A client that sends requests and never reads its replies is disconnected once too many wait
/// unread (docs/PROTOCOL.md, "Limits"); every other client goes on being served.
@Suite struct BackPressureTests {
    @Test func aClientThatWritesAHundredThousandRequestsAndReadsNothingIsDisconnected() async throws {
        let daemon = try DaemonProcess()
        let socketPath = daemon.socketPath
        let requests = Data((0..<100_000).map { #"{"id":\#($0),"cmd":"ping"}"# + "\n" }.joined().utf8)
        // The flooder writes everything (or until the daemon hangs up), then reads what it can:
        // the connection ends well before its 100,000 replies.
        async let flood: (Int, Bool) = onThread {
            let flooder = try ControlClient(socketPath: socketPath)
            try? flooder.writeAll(requests)
            var count = 0
            while (try? flooder.readReply()) != nil {
                count += 1
                if count == 100_000 { return (count, false) }
            }
            return (count, true)
        }
        // Others are served meanwhile.
        let other = try daemon.client()
        for _ in 0..<50 { #expect(try other.call("ping").ok) }
        let (replies, ended) = try await flood
        #expect(ended && replies < 100_000, "read \(replies) replies before the connection ended")
        #expect(daemon.logText.contains("unread"), "the log says why: \(daemon.logText)")
        #expect(try daemon.client().call("ping").ok)
        #expect(try other.call("ping").ok)
        #expect(daemon.process.isRunning)
    }
}
