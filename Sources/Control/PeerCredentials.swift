import Foundation
import NIOCore

#if canImport(Glibc)
    import Glibc
#endif

/// Who is on the other end of a connection, from the kernel (SO_PEERCRED at connect time), plus
/// the supplementary groups of that process (from /proc, which SO_PEERCRED does not carry).
public struct PeerCredentials: Sendable, Equatable, CustomStringConvertible {
    public var pid: pid_t
    public var uid: uid_t
    public var gid: gid_t
    /// Primary and supplementary groups.
    public var groups: Set<gid_t>

    public init(pid: pid_t, uid: uid_t, gid: gid_t, groups: Set<gid_t>) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
        self.groups = groups.union([gid])
    }

    public var description: String { "pid \(pid), uid \(uid), gid \(gid)" }

    /// Reads SO_PEERCRED off a connected Unix socket channel.
    static func of(_ channel: Channel) -> EventLoopFuture<PeerCredentials> {
        guard let provider = channel as? SocketOptionProvider else {
            return channel.eventLoop.makeFailedFuture(
                ControlError(.internal, "the connection has no socket to read peer credentials from"))
        }
        return peerCred(provider).map { cred in
            PeerCredentials(pid: cred.pid, uid: cred.uid, gid: cred.gid, groups: supplementaryGroups(pid: cred.pid))
        }
    }

    // NIO asks that unsafeGetSocketOption with a libc type be called from a non-public,
    // non-inlinable function (a compiler issue with the Sendability of imported types).
    private static func peerCred(_ provider: SocketOptionProvider) -> EventLoopFuture<KernelPeerCredentials> {
        provider.unsafeGetSocketOption(level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(SO_PEERCRED))
    }

    /// The `Groups:` line of /proc/PID/status; empty if the process is gone already.
    static func supplementaryGroups(pid: pid_t) -> Set<gid_t> {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Groups:") })
        else { return [] }
        return Set(
            line.dropFirst("Groups:".count).split(whereSeparator: { $0 == " " || $0 == "\t" }).compactMap { gid_t($0) })
    }
}

/// The layout of Linux's `struct ucred`, which Glibc only declares under _GNU_SOURCE (invisible
/// to Swift).
struct KernelPeerCredentials: Sendable {
    var pid: pid_t = 0
    var uid: uid_t = 0
    var gid: gid_t = 0
}

/// Who may talk to the daemon: its own user, root, and members of the configured group.
public struct PeerPolicy: Sendable {
    public var daemonUID: uid_t
    public var group: gid_t?

    public init(daemonUID: uid_t = geteuid(), group: gid_t? = nil) {
        self.daemonUID = daemonUID
        self.group = group
    }

    /// Nil when served, else the reason for a `forbidden` reply.
    public func refusal(for peer: PeerCredentials) -> String? {
        if peer.uid == daemonUID || peer.uid == 0 { return nil }
        if let group, peer.groups.contains(group) { return nil }
        let allowed = group.map { "uid \(daemonUID), root, or members of group \($0)" } ?? "uid \(daemonUID) and root"
        return "uid \(peer.uid) may not use this daemon: it serves \(allowed) (configure `socket_group` to share it)"
    }
}
