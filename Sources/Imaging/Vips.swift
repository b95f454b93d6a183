import CVips
import Foundation

/// libvips, initialised once per process on first use.
///
/// A `static let` is initialised lazily and exactly once even when several
/// threads reach it together, so this needs no lock and no mutable global.
final class VipsRuntime: Sendable {
    static let shared = VipsRuntime()

    /// Set when `vips_init` failed; every operation then reports it.
    let initFailure: String?

    private init() {
        if cvips_init("cyclegand") != 0 {
            initFailure = "libvips failed to start: " + takeVipsError(fallback: "unknown reason")
        } else {
            cvips_configure()
            initFailure = nil
        }
    }

    /// Throws if libvips could not be initialised.
    static func ready(for path: String) throws {
        if let failure = shared.initFailure { throw ImagingError(.unreadable, path: path, reason: failure) }
    }
}

/// libvips keeps one error buffer for the whole process, and any thread's failure is appended
/// to it. Taking it under this lock, and holding the lock from a JPEG load until its error is
/// taken, keeps one image's JPEG messages from being read (and cleared) as another's: the
/// harmless-warning retry of `ImageSource` depends on reading its own.
enum VipsErrors {
    static let lock = NSRecursiveLock()

    /// Runs a load under the lock with the buffer emptied first, so that what it finds there
    /// afterwards is its own: a lenient JPEG load that succeeds leaves libjpeg's warnings behind,
    /// which the next strict load would otherwise read as its own damage.
    static func fresh<T>(_ body: () throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        // The buffer's mutex exists only once libvips has started.
        if VipsRuntime.shared.initFailure == nil { vips_error_clear() }
        return try body()
    }
}

/// The libvips error buffer as one line (it is cleared), or `fallback` when empty.
func takeVipsError(fallback: String) -> String {
    VipsErrors.lock.lock()
    defer { VipsErrors.lock.unlock() }
    guard let raw = cvips_error_take() else { return fallback }
    defer { g_free(raw) }
    let lines = String(cString: raw).split(separator: "\n").map { $0.trimmingCharacters() }
    let text = lines.filter { !$0.isEmpty }.joined(separator: "; ")
    return text.isEmpty ? fallback : text
}

extension Substring {
    fileprivate func trimmingCharacters() -> String {
        String(
            self.drop(while: { $0 == " " || $0 == "\t" }).reversed().drop(while: { $0 == " " || $0 == "\t" }).reversed()
        )
    }
}

/// An owned reference to a `VipsImage`, released when this object goes.
final class VipsImageRef: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<VipsImage>
    /// Objects the image reads from (memory it was made over) kept alive with it.
    private let keepAlive: [AnyObject]

    init(_ pointer: UnsafeMutablePointer<VipsImage>, keepAlive: [AnyObject] = []) {
        self.pointer = pointer
        self.keepAlive = keepAlive
    }

    deinit { g_object_unref(UnsafeMutableRawPointer(pointer)) }

    var width: Int { Int(vips_image_get_width(pointer)) }
    var height: Int { Int(vips_image_get_height(pointer)) }
    var bands: Int { Int(vips_image_get_bands(pointer)) }
    var format: VipsBandFormat { vips_image_get_format(pointer) }
    var interpretation: VipsInterpretation { vips_image_get_interpretation(pointer) }

    func int(_ field: String, default fallback: Int) -> Int { Int(cvips_get_int(pointer, field, Int32(fallback))) }
    func has(_ field: String) -> Bool { cvips_has_field(pointer, field) != 0 }
    func string(_ field: String) -> String? { cvips_get_string(pointer, field).map { String(cString: $0) } }
    func blob(_ field: String) -> [UInt8]? {
        var length = 0
        guard let data = cvips_get_blob(pointer, field, &length), length > 0 else { return nil }
        return Array(UnsafeRawBufferPointer(start: data, count: length))
    }

    /// Runs one libvips operation that makes a new image from this one.
    func derive(
        path: String, _ kind: ImagingError.Kind, _ what: String, alsoKeeping others: [AnyObject] = [],
        _ operation: (UnsafeMutablePointer<VipsImage>, UnsafeMutablePointer<UnsafeMutablePointer<VipsImage>?>) -> Int32
    ) throws -> VipsImageRef {
        var out: UnsafeMutablePointer<VipsImage>?
        guard operation(pointer, &out) == 0, let out else {
            throw ImagingError(
                kind, path: path, reason: "\(what) failed: \(takeVipsError(fallback: "no reason given"))")
        }
        return VipsImageRef(out, keepAlive: keepAlive + others)
    }
}
