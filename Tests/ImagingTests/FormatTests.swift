import Foundation
import Imaging
import Testing

@Suite struct FormatTests {
    /// Formats and whether their default encoding is lossless (WebP input is
    /// lossless here, but the output is written with libvips' lossy default).
    /// (suffix, vips save options, lossless)
    static let formats: [(String, String, Bool)] = [
        ("png", "", true), ("jpg", "[Q=95]", false), ("webp", "[lossless]", false), ("tif", "", true),
    ]

    @Test(arguments: formats.map(\.0))
    func readsAndWritesInTheInputsFormat(suffix: String) throws {
        let (_, options, lossless) = Self.formats.first { $0.0 == suffix }!
        try roundTrip(suffix: suffix, saveOptions: options, lossless: lossless)
    }

    @Test func gifFirstFrameOfAnAnimation() throws {
        let scratch = try Scratch()
        let image = try ImageFile.load(Fixtures.path("animated.gif"))
        #expect(image.width == 48 && image.height == 32, "one frame, not a strip of two")
        let mean = image.mean(x: 0..<48, y: 0..<32)
        #expect(
            abs(mean[0] - 200) < 3 && abs(mean[1] - 40) < 3 && abs(mean[2] - 40) < 3, "first frame's red, got \(mean)")
        try ImageFile.save(image.tensor, to: scratch.file("out"), template: image.template)
        #expect(try VipsCLI.loader(scratch.file("out"))?.hasPrefix("gifload") == true)
        #expect(try VipsCLI.field(scratch.file("out"), "n-pages") ?? "1" == "1")
    }

    @Test(.enabled(if: VipsCLI.canWrite("avif"), "this libvips cannot write AVIF"))
    func avif() throws {
        try roundTrip(suffix: "avif", saveOptions: "[Q=90]", lossless: false)
    }

    @Test(.enabled(if: VipsCLI.canWrite("heic"), "this libvips cannot write HEIC"))
    func heic() throws {
        try roundTrip(suffix: "heic", saveOptions: "[Q=90]", lossless: false)
    }

    @Test func untrustedLoadersAreRefusedUnlessAllowed() throws {
        let scratch = try Scratch()
        let ppm = scratch.file("in.ppm")
        try VipsCLI.vips("copy", Fixtures.path("rgb.png"), ppm)
        let error = expectImagingError { _ = try ImageFile.load(ppm) }
        #expect(error?.kind == .unreadable)
        #expect(error?.reason.contains("ppmload") == true)
        let image = try ImageFile.load(ppm, options: LoadOptions(allowUntrustedLoaders: true))
        #expect(image.width == 48)
    }

    @Test func formatAndQualityOptions() throws {
        let scratch = try Scratch()
        let image = try ImageFile.load(Fixtures.path("rgb.png"))
        try ImageFile.save(image.tensor, to: scratch.file("low.jpg"), options: SaveOptions(quality: 10))
        try ImageFile.save(image.tensor, to: scratch.file("high.jpg"), options: SaveOptions(quality: 95))
        let low = try FileManager.default.attributesOfItem(atPath: scratch.file("low.jpg"))[.size] as! Int
        let high = try FileManager.default.attributesOfItem(atPath: scratch.file("high.jpg"))[.size] as! Int
        #expect(low < high)
        // An explicit format wins over the extension.
        try ImageFile.save(image.tensor, to: scratch.file("named.png"), options: SaveOptions(format: "WEBP"))
        #expect(try VipsCLI.loader(scratch.file("named.png"))?.hasPrefix("webpload") == true)
        // An extension libvips does not know falls back to the input's format.
        try ImageFile.save(image.tensor, to: scratch.file("named.backup"), template: image.template)
        #expect(try VipsCLI.loader(scratch.file("named.backup"))?.hasPrefix("pngload") == true)

        let unknown = expectImagingError {
            try ImageFile.save(image.tensor, to: scratch.file("x.png"), options: SaveOptions(format: "nope"))
        }
        #expect(unknown?.kind == .writeFailed)
        let noFormat = expectImagingError { try ImageFile.save(image.tensor, to: scratch.file("noext")) }
        #expect(noFormat?.kind == .writeFailed)
        let badQuality = expectImagingError {
            try ImageFile.save(image.tensor, to: scratch.file("q.jpg"), options: SaveOptions(quality: 0))
        }
        #expect(badQuality?.kind == .invalidArgument)
        #expect(scratch.contents == ["high.jpg", "low.jpg", "named.backup", "named.png"])
    }

    private func roundTrip(suffix: String, saveOptions: String, lossless: Bool) throws {
        let scratch = try Scratch()
        let input = scratch.file("in.\(suffix)")
        // Lossy codecs subsample colour: give them flat areas rather than noise.
        try VipsCLI.vips("copy", Fixtures.path(lossless ? "rgb.png" : "orientation-1.jpg"), input + saveOptions)
        let reference = try VipsCLI.raw(input)
        let image = try ImageFile.load(input)
        #expect(image.width == 48 && image.height == 32)
        #expect(image.template.inputFormat == suffix)
        // No extension: the output takes the input's format.
        let output = scratch.file("out")
        try ImageFile.save(
            image.tensor, to: output, template: image.template, options: SaveOptions(quality: lossless ? nil : 95))
        let loader = try VipsCLI.loader(output) ?? "none"
        let expectedLoader =
            ["jpg": "jpegload", "tif": "tiffload", "avif": "heifload", "heic": "heifload"][suffix] ?? suffix + "load"
        #expect(loader.hasPrefix(expectedLoader), "wrote \(loader) for \(suffix)")
        if expectedLoader == "heifload" {
            #expect(try VipsCLI.field(output, "heif-compression") == (suffix == "avif" ? "av1" : "hevc"))
        }
        let written = try VipsCLI.raw(output)
        #expect(written.bands == 3)
        if lossless {
            #expect(maxDifference(written.bytes, reference.bytes) == 0)
        } else {
            #expect(meanDifference(written.bytes, reference.bytes) < 6, "\(suffix) re-encoding stays close")
        }
    }
}
