import Foundation
import Imaging
import Testing

@Suite struct ColourAndAlphaTests {
    /// Bands `first..<first+n` of interleaved pixels.
    private func bands(_ bytes: [UInt8], count: Int, of total: Int, from first: Int = 0) -> [UInt8] {
        stride(from: 0, to: bytes.count, by: total).flatMap { bytes[($0 + first)..<($0 + first + count)] }
    }

    @Test(arguments: ["png", "webp", "tif"])
    func alphaIsSetAsideAndRestoredUnchanged(suffix: String) throws {
        let scratch = try Scratch()
        let input = scratch.file("in.\(suffix)")
        try VipsCLI.vips("copy", Fixtures.path("rgba.png"), input + (suffix == "webp" ? "[lossless]" : ""))
        let reference = try VipsCLI.raw(input)
        let image = try ImageFile.load(input)
        #expect(image.template.hasAlpha)
        #expect(image.tensor.shape == [1, 3, 32, 48], "only RGB goes to the model")
        let output = scratch.file("out.\(suffix)")
        try ImageFile.save(image.tensor, to: output, template: image.template)
        let written = try VipsCLI.raw(output)
        #expect(written.bands == 4)
        #expect(
            maxDifference(
                bands(written.bytes, count: 1, of: 4, from: 3), bands(reference.bytes, count: 1, of: 4, from: 3)) == 0)
        if suffix != "webp" { #expect(maxDifference(written.bytes, reference.bytes) == 0) }
    }

    @Test func sixteenBitAlphaKeepsItsHighByteInAnEightBitOutput() throws {
        let scratch = try Scratch()
        // x·256 + 7: the high byte is x again.
        try VipsCLI.vips("linear", Fixtures.path("rgba.png"), scratch.file("w.v"), "256", "7")
        try VipsCLI.vips("cast", scratch.file("w.v"), scratch.file("w16.v"), "ushort")
        try VipsCLI.vips("copy", scratch.file("w16.v"), scratch.file("rgba16.png"), "--interpretation", "rgb16")
        let image = try ImageFile.load(scratch.file("rgba16.png"))
        #expect(image.template.bitDepth == 16 && image.template.hasAlpha)
        try ImageFile.save(image.tensor, to: scratch.file("out.webp"), template: image.template)
        let written = try VipsCLI.raw(scratch.file("out.webp"))
        #expect(written.bands == 4)
        let alpha = bands(try VipsCLI.raw(Fixtures.path("rgba.png")).bytes, count: 1, of: 4, from: 3)
        #expect(maxDifference(bands(written.bytes, count: 1, of: 4, from: 3), alpha) == 0)
    }

    @Test func alphaIsDroppedForFormatsWithoutIt() throws {
        let scratch = try Scratch()
        let image = try ImageFile.load(Fixtures.path("rgba.png"))
        try ImageFile.save(image.tensor, to: scratch.file("out.jpg"), template: image.template)
        #expect(try VipsCLI.field(scratch.file("out.jpg"), "bands") == "3")
    }

    @Test func greyBecomesRGBAndTheOutputIsRGB() throws {
        let scratch = try Scratch()
        let reference = try VipsCLI.raw(Fixtures.path("grey.png"))
        let image = try ImageFile.load(Fixtures.path("grey.png"))
        #expect(!image.template.hasAlpha)
        for y in 0..<32 {
            for x in 0..<48 {
                let g = Int(reference.bytes[y * 48 + x])
                #expect(image.byte(0, x, y) == g && image.byte(1, x, y) == g && image.byte(2, x, y) == g)
            }
        }
        try ImageFile.save(image.tensor, to: scratch.file("out.png"), template: image.template)
        let written = try VipsCLI.raw(scratch.file("out.png"))
        #expect(written.bands == 3)
        #expect(maxDifference(bands(written.bytes, count: 1, of: 3), reference.bytes) == 0)
    }

    @Test func greyWithAlphaKeepsItsAlpha() throws {
        let scratch = try Scratch()
        let reference = try VipsCLI.raw(Fixtures.path("grey-alpha.png"))
        let image = try ImageFile.load(Fixtures.path("grey-alpha.png"))
        #expect(image.template.hasAlpha)
        try ImageFile.save(image.tensor, to: scratch.file("out.png"), template: image.template)
        let written = try VipsCLI.raw(scratch.file("out.png"))
        #expect(written.bands == 4)
        #expect(
            maxDifference(
                bands(written.bytes, count: 1, of: 4, from: 3), bands(reference.bytes, count: 1, of: 2, from: 1)) == 0)
        #expect(
            maxDifference(bands(written.bytes, count: 1, of: 4, from: 1), bands(reference.bytes, count: 1, of: 2)) == 0)
    }

    @Test(arguments: [("palette.png", false), ("palette-transparent.png", true)])
    func palettePNGIsExpanded(name: String, transparent: Bool) throws {
        let scratch = try Scratch()
        // libvips' own decode expands the palette: the reference RGB(A).
        let reference = try VipsCLI.raw(Fixtures.path(name))
        let image = try ImageFile.load(Fixtures.path(name))
        #expect(image.template.hasAlpha == transparent)
        try ImageFile.save(image.tensor, to: scratch.file("out.png"), template: image.template)
        let written = try VipsCLI.raw(scratch.file("out.png"))
        #expect(written.bands == reference.bands)
        #expect(maxDifference(written.bytes, reference.bytes) == 0, "an RGB(A) PNG, not re-quantised to a palette")
        #expect(try VipsCLI.field(scratch.file("out.png"), "palette-bit-depth") == nil)
    }

    @Test func untaggedCMYKIsConvertedToSRGB() throws {
        let image = try ImageFile.load(Fixtures.path("cmyk.jpg"))
        #expect(!image.template.hasAlpha, "the fourth CMYK band is ink, not alpha")
        let paper = image.mean(x: 4..<12, y: 4..<28)
        let black = image.mean(x: 20..<28, y: 4..<28)
        let cyan = image.mean(x: 36..<44, y: 4..<28)
        #expect(paper.allSatisfy { $0 > 230 }, "paper white, got \(paper)")
        #expect(black.allSatisfy { $0 < 80 }, "black ink, got \(black)")
        #expect(cyan[0] < 60 && cyan[1] > 120 && cyan[2] > 180, "cyan ink, got \(cyan)")
    }

    @Test func taggedCMYKAndDisplayP3AreConvertedBackToSRGB() throws {
        let scratch = try Scratch()
        // Moderate colours (inside both gamuts): halve the contrast of the pattern.
        try VipsCLI.vips("linear", Fixtures.path("rgb.png"), scratch.file("soft.v"), "0.5", "64")
        try VipsCLI.vips("cast", scratch.file("soft.v"), scratch.file("soft8.v"), "uchar")
        try VipsCLI.vips("copy", scratch.file("soft8.v"), scratch.file("soft.png"), "--interpretation", "srgb")
        let reference = try VipsCLI.raw(scratch.file("soft.png"))
        for (profile, name) in [("p3", "p3.png"), ("cmyk", "cmyk-tagged.tif")] {
            let tagged = scratch.file(name)
            try VipsCLI.vips("icc_transform", scratch.file("soft.png"), tagged, profile, "--input-profile", "srgb")
            #expect(try VipsCLI.field(tagged, "icc-profile-data") != nil)
            let image = try ImageFile.load(tagged)
            let output = scratch.file("out-" + name)
            try ImageFile.save(image.tensor, to: output, template: image.template)
            let written = try VipsCLI.raw(output)
            #expect(written.bands == 3)
            // Back in sRGB: close to the colours we started from (CMYK loses a little more).
            #expect(meanDifference(written.bytes, reference.bytes) < (profile == "p3" ? 1.5 : 4), "\(profile)")
            // The output is tagged with the sRGB profile it is in, not the input's.
            let description = try VipsCLI.run("vipsheader", ["-a", output]).output
            #expect(description.contains("icc-profile-data"), "\(profile): output carries a profile")
            let sRGBAgain = scratch.file("srgb-" + name + ".png")
            try VipsCLI.vips("icc_transform", output, sRGBAgain, "srgb", "--embedded")
            #expect(
                meanDifference(try VipsCLI.raw(sRGBAgain).bytes, written.bytes) < 1,
                "\(profile): the embedded profile is sRGB")
        }
    }
}
