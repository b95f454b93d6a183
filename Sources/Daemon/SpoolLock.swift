import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The lock that keeps a second daemon off a spool: `flock` on `root/.cyclegand.lock`, which
/// holds the owner's pid. Held from `take` until the value goes.
final class SpoolLock {
    private let descriptor: Int32

    private init(descriptor: Int32) {
        self.descriptor = descriptor
    }

    deinit { close(descriptor) }

    static func take(_ spool: Spool) throws -> SpoolLock {
        let path = spool.root + "/.cyclegand.lock"
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw DaemonError(.internal, "cannot open \(path): \(String(cString: strerror(errno)))") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            throw DaemonError(
                .busy, "another cyclegand is already using the spool \(spool.root); stop it or choose another --root")
        }
        let pid = "\(getpid())\n"
        _ = ftruncate(fd, 0)
        _ = pid.withCString { write(fd, $0, strlen($0)) }
        return SpoolLock(descriptor: fd)
    }
}
