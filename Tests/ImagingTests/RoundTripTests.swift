import Foundation
import Imaging
import Tensor
import Testing

@Suite struct RoundTripTests {
    @Test func eightBitValuesMapToMinusOneToOneAndBackExactly() throws {
        let scratch = try Scratch()
        let input = Fixtures.path("rgb.png")
        let reference = try VipsCLI.raw(input)
        let image = try ImageFile.load(input)
        #expect(image.tensor.shape == [1, 3, 32, 48])
        #expect(image.template.bitDepth == 8 && !image.template.hasAlpha && image.template.inputFormat == "png")
        let plane = 32 * 48
        for i in 0..<plane {
            for c in 0..<3 {
                #expect(image.tensor.data[c * plane + i] == Float(reference.bytes[i * 3 + c]) / 127.5 - 1)
            }
        }
        let output = scratch.file("out.png")
        try ImageFile.save(image.tensor, to: output, template: image.template)
        let written = try VipsCLI.raw(output)
        #expect(written.bands == 3 && written.width == 48 && written.height == 32)
        #expect(maxDifference(written.bytes, reference.bytes) == 0)
        #expect(scratch.contents == ["out.png"])
    }

    @Test func outOfRangeAndNaNOutputsAreClamped() throws {
        let scratch = try Scratch()
        let tensor = Tensor(shape: [1, 3, 1, 4], values: [-5, 5, .nan, 0.001, 0, 0, 0, 0, 0, 0, 0, 0])
        try ImageFile.save(tensor, to: scratch.file("c.png"))
        let written = try VipsCLI.raw(scratch.file("c.png"))
        // Channel 0 of the four pixels: -5 → 0, 5 → 255, NaN → 0, 0.001 → round(127.6275) = 128.
        #expect([0, 3, 6, 9].map { written.bytes[$0] } == [0, 255, 0, 128])
        #expect(written.bytes[1] == 128)  // 0 → 127.5 → ties to even → 128
    }

    @Test func sixteenBitPNGAndTIFFRoundTripExactly() throws {
        let scratch = try Scratch()
        // Values 37...65317, most of them not multiples of 257.
        try VipsCLI.vips("linear", Fixtures.path("rgb.png"), scratch.file("wide.v"), "256", "37")
        try VipsCLI.vips("cast", scratch.file("wide.v"), scratch.file("u16.v"), "ushort")
        for suffix in ["png", "tif"] {
            let input = scratch.file("in16.\(suffix)")
            try VipsCLI.vips("copy", scratch.file("u16.v"), input, "--interpretation", "rgb16")
            let reference = try VipsCLI.raw(input)
            let image = try ImageFile.load(input)
            #expect(image.template.bitDepth == 16)
            let plane = 32 * 48
            let samples = reference.bytes.withUnsafeBytes { Array($0.bindMemory(to: UInt16.self)) }
            #expect(image.tensor.data[0] == Float(samples[0]) / 32767.5 - 1)
            #expect(image.tensor.data[plane + 5] == Float(samples[5 * 3 + 1]) / 32767.5 - 1)
            let output = scratch.file("out16.\(suffix)")
            try ImageFile.save(image.tensor, to: output, template: image.template)
            #expect(try VipsCLI.field(output, "format")?.contains("USHORT") == true)
            #expect(
                maxDifference(try VipsCLI.raw(output).bytes, reference.bytes) == 0,
                "\(suffix) 16-bit pixels survive exactly")

            // A format without 16-bit samples gets 8-bit: the high byte, rounded.
            let jpeg = scratch.file("out16-\(suffix).png")
            try ImageFile.save(image.tensor, to: jpeg, template: image.template, options: SaveOptions(format: "webp"))
            #expect(try VipsCLI.field(jpeg, "format")?.contains("UCHAR") == true)
            #expect(try VipsCLI.loader(jpeg)?.hasPrefix("webpload") == true)
        }
    }

    @Test func quantisesSixteenBitOutputWithTheSixteenBitScale() throws {
        let scratch = try Scratch()
        try VipsCLI.vips("black", scratch.file("z.v"), "2", "1", "--bands", "3")
        try VipsCLI.vips("cast", scratch.file("z.v"), scratch.file("z16.v"), "ushort")
        try VipsCLI.vips("copy", scratch.file("z16.v"), scratch.file("z16.png"), "--interpretation", "rgb16")
        let image = try ImageFile.load(scratch.file("z16.png"))
        image.tensor.fill(0)
        try ImageFile.save(image.tensor, to: scratch.file("mid.png"), template: image.template)
        let samples = try VipsCLI.raw(scratch.file("mid.png")).bytes.withUnsafeBytes {
            Array($0.bindMemory(to: UInt16.self))
        }
        #expect(samples == Array(repeating: 32768, count: 6))  // 32767.5 ties to even
    }
}

@Suite struct EdgeSizeTests {
    @Test(arguments: [(1, 1), (4097, 3), (3, 4097), (2, 1)])
    func oddSizesRoundTripExactly(width: Int, height: Int) throws {
        let scratch = try Scratch()
        let input = scratch.file("in.png")
        try VipsCLI.vips("gaussnoise", scratch.file("n.v"), "\(width)", "\(height)", "--mean", "128", "--sigma", "80")
        try VipsCLI.vips(
            "bandjoin", "\(scratch.file("n.v")) \(scratch.file("n.v")) \(scratch.file("n.v"))", scratch.file("n3.v"))
        try VipsCLI.vips("cast", scratch.file("n3.v"), scratch.file("n8.v"), "uchar")
        try VipsCLI.vips("copy", scratch.file("n8.v"), input, "--interpretation", "srgb")
        let image = try ImageFile.load(input)
        #expect(image.tensor.shape == [1, 3, height, width])
        try ImageFile.save(image.tensor, to: scratch.file("out.png"), template: image.template)
        #expect(maxDifference(try VipsCLI.raw(scratch.file("out.png")).bytes, try VipsCLI.raw(input).bytes) == 0)
    }

    @Test func sixteenBitGreyGivesSixteenBitRGB() throws {
        let scratch = try Scratch()
        try VipsCLI.vips("linear", Fixtures.path("grey.png"), scratch.file("g.v"), "256", "11")
        try VipsCLI.vips("cast", scratch.file("g.v"), scratch.file("g16.v"), "ushort")
        try VipsCLI.vips("copy", scratch.file("g16.v"), scratch.file("g16.png"), "--interpretation", "grey16")
        let image = try ImageFile.load(scratch.file("g16.png"))
        #expect(image.template.bitDepth == 16)
        try ImageFile.save(image.tensor, to: scratch.file("out.png"), template: image.template)
        #expect(try VipsCLI.field(scratch.file("out.png"), "bands") == "3")
        #expect(try VipsCLI.field(scratch.file("out.png"), "format")?.contains("USHORT") == true)
        let grey = try VipsCLI.raw(scratch.file("g16.png")).bytes.withUnsafeBytes {
            Array($0.bindMemory(to: UInt16.self))
        }
        let rgb = try VipsCLI.raw(scratch.file("out.png")).bytes.withUnsafeBytes {
            Array($0.bindMemory(to: UInt16.self))
        }
        #expect(grey.indices.allSatisfy { rgb[$0 * 3] == grey[$0] && rgb[$0 * 3 + 2] == grey[$0] })
    }
}
