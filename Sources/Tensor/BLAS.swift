#if canImport(Glibc)
    import Glibc
#endif

/// OpenBLAS, loaded at first use.
///
/// OpenBLAS picks its kernels when the library is initialised. Version 0.3.21
/// (Debian 12) does not know recent Xeons and falls back to its SSE3
/// "Prescott" kernels, five times slower than its AVX-512 ones. Loading it
/// ourselves lets us name the kernel family first (`OPENBLAS_CORETYPE`, only
/// when the user has not set it) from the CPU's own feature flags.
enum BLAS {
    private typealias SGEMM =
        @convention(c) (
            Int32, Int32, Int32, Int32, Int32, Int32, Float, UnsafePointer<Float>?, Int32,
            UnsafePointer<Float>?, Int32, Float, UnsafeMutablePointer<Float>?, Int32
        ) -> Void
    private typealias SetThreads = @convention(c) (Int32) -> Void
    private typealias CoreName = @convention(c) () -> UnsafePointer<CChar>?

    private struct Library: @unchecked Sendable {
        let sgemm: SGEMM
        let coreName: String
    }

    private static let library: Library = {
        if getenv("OPENBLAS_CORETYPE") == nil, let core = preferredCoreType() {
            setenv("OPENBLAS_CORETYPE", core, 0)
        }
        var handle: UnsafeMutableRawPointer?
        for name in ["libopenblas.so.0", "libopenblas.so"] {
            handle = dlopen(name, RTLD_NOW | RTLD_GLOBAL)
            if handle != nil { break }
        }
        guard let handle, let sgemm = dlsym(handle, "cblas_sgemm") else {
            fatalError(
                "cyclegand needs OpenBLAS (Debian: apt-get install libopenblas0-pthread): \(String(cString: dlerror()))"
            )
        }
        // The kernels split the work themselves and call OpenBLAS from each worker.
        if let set = dlsym(handle, "openblas_set_num_threads") {
            unsafeBitCast(set, to: SetThreads.self)(1)
        }
        var core = "unknown"
        if let f = dlsym(handle, "openblas_get_corename"), let s = unsafeBitCast(f, to: CoreName.self)() {
            core = String(cString: s)
        }
        return Library(sgemm: unsafeBitCast(sgemm, to: SGEMM.self), coreName: core)
    }()

    /// The OpenBLAS kernel family in use (for logs and benchmarks).
    static var coreName: String { library.coreName }

    /// The best OpenBLAS 0.3.21 kernel family the CPU's flags allow, or nil to let it choose.
    private static func preferredCoreType() -> String? {
        guard let f = fopen("/proc/cpuinfo", "r") else { return nil }
        defer { fclose(f) }
        var line = [CChar](repeating: 0, count: 8192)
        while fgets(&line, Int32(line.count), f) != nil {
            let text = String(cString: line)
            guard text.hasPrefix("flags") else { continue }
            let flags = Set(text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).map(String.init))
            if flags.isSuperset(of: ["avx512f", "avx512bw", "avx512vl", "avx512dq"]) { return "SkylakeX" }
            if flags.isSuperset(of: ["avx2", "fma"]) { return "Haswell" }
            return nil
        }
        return nil
    }

    /// Row-major C = A·B (+ C when `accumulate`): A is M×K (K×M with `transposeA`), B is K×N (N×K with
    /// `transposeB`), C is M×N.
    @inline(__always)
    static func sgemm(
        m: Int, n: Int, k: Int,
        a: UnsafePointer<Float>, lda: Int, transposeA: Bool = false,
        b: UnsafePointer<Float>, ldb: Int, transposeB: Bool = false,
        c: UnsafeMutablePointer<Float>, ldc: Int,
        accumulate: Bool = false
    ) {
        let rowMajor: Int32 = 101
        let noTrans: Int32 = 111
        let trans: Int32 = 112
        library.sgemm(
            rowMajor, transposeA ? trans : noTrans, transposeB ? trans : noTrans, Int32(m), Int32(n), Int32(k), 1,
            a, Int32(lda), b, Int32(ldb), accumulate ? 1 : 0, c, Int32(ldc))
    }
}

extension Compute {
    /// The OpenBLAS kernel family in use.
    public static var blasCore: String { BLAS.coreName }
}
