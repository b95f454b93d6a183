import FileOutput
import Foundation

/// Resident and peak memory of this process, from /proc/self/status (kB lines VmRSS, VmHWM).
enum ProcessMemory {
    static func read() -> (resident: UInt64, peak: UInt64) {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return (0, 0) }
        var resident: UInt64 = 0
        var peak: UInt64 = 0
        for line in text.split(separator: "\n") {
            let parts = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard parts.count >= 2, let kb = UInt64(parts[1]) else { continue }
            if parts[0] == "VmRSS:" { resident = kb * 1024 }
            if parts[0] == "VmHWM:" { peak = kb * 1024 }
        }
        return (resident, peak)
    }
}

/// Output format and file name for an input, following the configured format.
enum OutputNaming {
    /// The concrete format and the output file name for `inputName`. Under `same`, an input
    /// whose extension names none of the output formats (gif, heic, bmp, ...) becomes PNG, since
    /// the translator cannot be trusted to write every format vips reads.
    static func resolve(inputName: String, configured: OutputFormat) -> (OutputFormat, String) {
        let ext = (inputName as NSString).pathExtension
        let stem = ext.isEmpty ? inputName : String(inputName.dropLast(ext.count + 1))
        let inputFormat = OutputFormat(fileExtension: ext)
        let target = configured == .same ? (inputFormat ?? .png) : configured
        if inputFormat == target { return (target, inputName) }
        return (target, stem + "." + target.fileExtension!)
    }
}
