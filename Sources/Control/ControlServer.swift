import Daemon
import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Settings of the control socket. Defaults follow docs/PROTOCOL.md.
public struct ControlServerOptions: Sendable {
    /// Where the socket file goes (its directory must be the daemon user's and not writable by others).
    public var socketPath: String
    /// Group allowed besides the daemon's user (socket mode 0660); nil = owner only (0600).
    public var group: gid_t?
    public var maxLineBytes: Int = 1 << 20
    public var maxInlineBytes: Int = 256 << 20
    public var maxClients: Int = 128
    /// Seconds a connection may stay silent with no request running and no subscription.
    public var idleTimeoutSeconds: Int64 = 300
    /// Replies (and their payloads) a client may leave unread behind the one it is reading, in
    /// writes and in bytes: past either, its connection is closed and the log says why (like
    /// Redis's client output buffer limits). Without it a client that sends and never reads
    /// would make the daemon hold its replies for ever, and keep a client slot.
    public var maxUnreadReplies: Int = 1024
    public var maxUnreadReplyBytes: Int = 64 << 20

    public init(socketPath: String, group: gid_t? = nil) {
        self.socketPath = socketPath
        self.group = group
    }

    /// Options from the daemon's configuration (`socket`, `socket_group`).
    public init(config: DaemonConfig) throws {
        self.init(socketPath: config.socket, group: try config.socketGroup.map(Self.groupID(named:)))
    }

    /// A group's id by name (or a numeric id as text).
    public static func groupID(named name: String) throws -> gid_t {
        if let number = gid_t(name) { return number }
        guard let entry = getgrnam(name) else {
            throw ControlSetupError("socket_group '\(name)' is not a group on this system (see /etc/group)")
        }
        return entry.pointee.gr_gid
    }
}

/// The control socket: accepts connections on a Unix socket, checks who is calling, and answers
/// JSON-line requests (docs/PROTOCOL.md) with the daemon's control surface. Each connection is
/// served by its own task; a bad request gets an error reply and the connection goes on.
public final class ControlServer: Sendable {
    public let socketPath: String
    private let socketFile: ListeningSocket
    private let group: MultiThreadedEventLoopGroup
    private let serverChannel: Channel
    private let acceptTask: Task<Void, Never>

    /// Binds the socket and starts serving; returns once clients can connect.
    public static func start(control: any DaemonControl, options: ControlServerOptions, logger: Logger) async throws
        -> ControlServer
    {
        let socketFile = try ListeningSocket(path: options.socketPath, group: options.group)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let limits = (line: options.maxLineBytes, payload: options.maxInlineBytes)
        let idle = TimeAmount.seconds(options.idleTimeoutSeconds)
        let unread = (writes: options.maxUnreadReplies, bytes: options.maxUnreadReplyBytes)
        let server: NIOAsyncChannel<Connection, Never>
        do {
            server = try await ServerBootstrap(group: group)
                .serverChannelOption(.backlog, value: 256)
                // A client may send its requests and close its side (`printf ... | socat`): it
                // still gets every reply before the connection ends.
                .childChannelOption(.allowRemoteHalfClosure, value: true)
                // Replies are not held back before the unread-reply limit: the connection is
                // closed at it (UnreadReplyLimit), not stalled.
                .childChannelOption(
                    .writeBufferWaterMark, value: .init(low: 1 << 20, high: max(2 << 20, unread.bytes))
                )
                .bind(socketFile.descriptor) { channel in
                    PeerCredentials.of(channel).flatMapThrowing { peer in
                        let activity = ConnectionActivity()
                        try channel.pipeline.syncOperations.addHandler(
                            UnreadReplyLimit(
                                maxWrites: unread.writes, maxBytes: unread.bytes, peer: peer, logger: logger))
                        try channel.pipeline.syncOperations.addHandlers([
                            IdleStateHandler(readTimeout: idle),
                            IdleCloser(activity: activity),
                            ByteToMessageHandler(
                                FrameDecoder(maxLineBytes: limits.line, maxPayloadBytes: limits.payload)),
                        ])
                        let wrapped = try NIOAsyncChannel<InboundFrame, ByteBuffer>(
                            wrappingChannelSynchronously: channel)
                        return Connection(channel: wrapped, peer: peer, activity: activity)
                    }
                }
        } catch {
            socketFile.remove()
            try? await group.shutdownGracefully()
            throw ControlSetupError("cannot listen on \(options.socketPath): \(error)")
        }
        let serving = ConnectionServer(
            dispatcher: CommandDispatcher(control: control, maxInputBytes: options.maxInlineBytes),
            control: control, policy: PeerPolicy(group: options.group), maxClients: options.maxClients, logger: logger)
        let acceptTask = Task { await serving.accept(server) }
        logger.info("control socket listening", metadata: ["socket": "\(options.socketPath)"])
        return ControlServer(
            socketPath: options.socketPath, socketFile: socketFile, group: group, serverChannel: server.channel,
            acceptTask: acceptTask)
    }

    private init(
        socketPath: String, socketFile: ListeningSocket, group: MultiThreadedEventLoopGroup, serverChannel: Channel,
        acceptTask: Task<Void, Never>
    ) {
        self.socketPath = socketPath
        self.socketFile = socketFile
        self.group = group
        self.serverChannel = serverChannel
        self.acceptTask = acceptTask
    }

    /// Stops accepting, closes every connection, removes the socket file.
    public func stop() async {
        socketFile.remove()
        try? await serverChannel.close()
        acceptTask.cancel()
        await acceptTask.value
        try? await group.shutdownGracefully()
    }
}

/// One accepted connection before it is served.
struct Connection: Sendable {
    let channel: NIOAsyncChannel<InboundFrame, ByteBuffer>
    let peer: PeerCredentials
    let activity: ConnectionActivity
}

/// Whether a connection is waiting on the daemon, which the idle timeout must not cut short.
final class ConnectionActivity: Sendable {
    private let state = Mutex((busy: false, subscribed: false))

    var isIdle: Bool { state.withLock { !$0.busy && !$0.subscribed } }
    func setBusy(_ busy: Bool) { state.withLock { $0.busy = busy } }
    func setSubscribed() { state.withLock { $0.subscribed = true } }
}

/// Closes a connection that sent nothing for the idle timeout while no request was running.
final class IdleCloser: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    private let activity: ConnectionActivity

    init(activity: ConnectionActivity) { self.activity = activity }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            if activity.isIdle { context.close(promise: nil) }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }
}

/// Closes a connection whose client does not read its replies. Requests are answered as they
/// arrive, so a client that writes without reading piles replies up in the daemon; once more
/// than `maxWrites` writes or `maxBytes` bytes wait behind the one the socket is taking now, the
/// connection is closed and the log says why. The reply being written may be of any size (an
/// inline image), so a slow reader is never cut off for a large reply alone.
final class UnreadReplyLimit: ChannelOutboundHandler {
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let maxWrites: Int
    private let maxBytes: Int
    private let peer: PeerCredentials
    private let logger: Logger
    /// Sizes of the writes the socket has not taken yet, oldest first (they complete in order).
    private var pending = CircularBuffer<Int>()
    private var pendingBytes = 0
    private var closing = false

    init(maxWrites: Int, maxBytes: Int, peer: PeerCredentials, logger: Logger) {
        self.maxWrites = maxWrites
        self.maxBytes = maxBytes
        self.peer = peer
        self.logger = logger
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let size = unwrapOutboundIn(data).readableBytes
        pending.append(size)
        pendingBytes += size
        let written = promise ?? context.eventLoop.makePromise()
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        written.futureResult.whenComplete { _ in handler.value.taken() }
        context.write(data, promise: written)
        let unreadWrites = pending.count - 1
        let unreadBytes = pendingBytes - (pending.first ?? 0)
        if !closing && (unreadWrites > maxWrites || unreadBytes > maxBytes) {
            closing = true
            logger.warning(
                "closed a control connection whose client left \(unreadWrites) replies (\(unreadBytes) bytes) unread; a client must read its replies",
                metadata: ["peer": "\(peer)"])
            context.close(promise: nil)
        }
    }

    private func taken() {
        pendingBytes -= pending.removeFirst()
    }
}

/// Serves accepted connections: limits, peer policy, the request loop, subscriptions.
struct ConnectionServer: Sendable {
    let dispatcher: CommandDispatcher
    let control: any DaemonControl
    let policy: PeerPolicy
    let maxClients: Int
    let logger: Logger
    private let clients = ClientCount()

    init(dispatcher: CommandDispatcher, control: any DaemonControl, policy: PeerPolicy, maxClients: Int, logger: Logger)
    {
        self.dispatcher = dispatcher
        self.control = control
        self.policy = policy
        self.maxClients = maxClients
        self.logger = logger
    }

    func accept(_ server: NIOAsyncChannel<Connection, Never>) async {
        do {
            try await server.executeThenClose { inbound in
                try await withThrowingDiscardingTaskGroup { group in
                    for try await connection in inbound {
                        group.addTask { await serve(connection) }
                    }
                }
            }
        } catch {
            if !Task.isCancelled { logger.error("control socket stopped accepting: \(error)") }
        }
    }

    private func serve(_ connection: Connection) async {
        let admitted = clients.enter(limit: maxClients)
        defer { if admitted { clients.leave() } }
        do {
            try await connection.channel.executeThenClose { inbound, outbound in
                guard admitted else {
                    try await send(
                        .failure(
                            id: .null,
                            ControlError(.busy, "the daemon already serves \(maxClients) clients; retry later")),
                        outbound)
                    return
                }
                if let refusal = policy.refusal(for: connection.peer) {
                    logger.notice("refused a control client", metadata: ["peer": "\(connection.peer)"])
                    try await send(.failure(id: .null, ControlError(.forbidden, refusal)), outbound)
                    return
                }
                var frames = inbound.makeAsyncIterator()
                while let frame = try await frames.next() {
                    switch frame {
                    case .fatal(let id, let error):
                        try await send(.failure(id: id, error), outbound)
                        return
                    case .request(let line, let envelope, let payload):
                        connection.activity.setBusy(true)
                        let progress = ProgressLines(outbound: outbound)
                        let outcome = await dispatcher.handle(
                            line: line, envelope: envelope, payload: payload, peer: connection.peer,
                            progress: progress)
                        await progress.drain()
                        connection.activity.setBusy(false)
                        switch outcome {
                        case .reply(let reply):
                            try await send(reply, outbound)
                        case .shutdown(let reply):
                            try await send(reply, outbound)
                            await control.shutdown()
                        case .subscribe(let id):
                            connection.activity.setSubscribed()
                            try await send(.make(id: id, body: ["subscribed": true]), outbound)
                            try await stream(to: id, outbound) {
                                // Lines sent on a subscribed connection are ignored; its end
                                // (the client closing or hanging up) ends the subscription.
                                while try await frames.next() != nil {}
                            }
                            return
                        }
                    }
                }
            }
        } catch {
            // A client that hangs up mid-reply ends only its own connection.
            logger.debug("control connection ended: \(error)")
        }
    }

    private func send(_ reply: EncodedReply, _ outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>) async throws {
        if let payload = reply.payload {
            try await outbound.write(contentsOf: [ByteBuffer(bytes: reply.line), ByteBuffer(bytes: payload)])
        } else {
            try await outbound.write(ByteBuffer(bytes: reply.line))
        }
    }

    /// Writes the daemon's events until `untilHangUp` returns (the client closed its side) or
    /// the daemon stops.
    private func stream(
        to id: RequestID, _ outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>, untilHangUp: () async throws -> Void
    ) async throws {
        let events = control.events()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for await event in events {
                    try await outbound.write(
                        ByteBuffer(bytes: EncodedReply.encode(EventLine(id: id, event: event), payload: nil).line))
                }
            }
            defer { group.cancelAll() }
            try await untilHangUp()
        }
    }
}

/// Connected clients, for the `max_clients` limit.
final class ClientCount: Sendable {
    private let count = Mutex(0)

    /// Counts a client in; false (and not counted) when `limit` are connected already.
    func enter(limit: Int) -> Bool {
        count.withLock { value in
            guard value < limit else { return false }
            value += 1
            return true
        }
    }

    func leave() { count.withLock { $0 -= 1 } }
}

/// An event line: the subscription's id, `event` (the kind), and the event's fields.
struct EventLine: Encodable {
    var id: RequestID
    var event: DaemonEvent

    private enum Keys: String, CodingKey {
        case id, event, time, jobId, jobKind, direction, input, output, width, height, ms, modelVersion, error, training
        case directions
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: Keys.self)
        try c.encode(id, forKey: .id)
        try c.encode(event.kind, forKey: .event)
        try c.encode(event.time, forKey: .time)
        try c.encodeIfPresent(event.jobId, forKey: .jobId)
        try c.encodeIfPresent(event.jobKind, forKey: .jobKind)
        try c.encodeIfPresent(event.direction, forKey: .direction)
        try c.encodeIfPresent(event.input, forKey: .input)
        try c.encodeIfPresent(event.output, forKey: .output)
        try c.encodeIfPresent(event.width, forKey: .width)
        try c.encodeIfPresent(event.height, forKey: .height)
        try c.encodeIfPresent(event.milliseconds, forKey: .ms)
        try c.encodeIfPresent(event.modelVersion, forKey: .modelVersion)
        try c.encodeIfPresent(event.error, forKey: .error)
        try c.encodeIfPresent(event.training, forKey: .training)
        try c.encodeIfPresent(event.directions, forKey: .directions)
    }
}
