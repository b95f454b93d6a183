import Foundation
import Imaging
import Testing

@Suite struct StreamingTests {
    /// Reads a source in bands of `band` rows into one [3][H][W] array.
    private func readInBands(_ source: ImageSource, band: Int) throws -> [Float] {
        let plane = source.width * source.height
        var all = [Float](repeating: .nan, count: 3 * plane)
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: 3 * band * source.width)
        defer { scratch.deallocate() }
        var y = 0
        while y < source.height {
            let count = min(band, source.height - y)
            try source.readRows(y: y, count: count, into: scratch)
            for c in 0..<3 {
                for i in 0..<(count * source.width) {
                    all[c * plane + y * source.width + i] = scratch[c * count * source.width + i]
                }
            }
            y += count
        }
        return all
    }

    @Test(arguments: ["rgba.png", "orientation-6.jpg", "orientation-3.jpg", "grey.png"])
    func bandsEqualTheWholeImageInEveryPass(name: String) throws {
        let whole = try ImageFile.load(Fixtures.path(name))
        let source = try ImageSource(path: Fixtures.path(name))
        #expect(source.width == whole.width && source.height == whole.height)
        for band in [7, 1, 32] {
            #expect(try readInBands(source, band: band) == whole.tensor.array, "band \(band)")
        }
    }

    @Test func sinkWrittenInBandsEqualsTheWholeImageSave() throws {
        let scratch = try Scratch()
        let source = try ImageSource(path: Fixtures.path("rgba.png"))
        let template = try source.template()
        let sink = try ImageSink(
            destination: scratch.file("streamed.png"), width: source.width, height: source.height, template: template)
        #expect(sink.format == "png" && sink.bitDepth == 8)
        let band = 5
        let rows = UnsafeMutablePointer<Float>.allocate(capacity: 3 * band * source.width)
        defer { rows.deallocate() }
        var y = 0
        while y < source.height {
            let count = min(band, source.height - y)
            try source.readRows(y: y, count: count, into: rows)
            for i in 0..<(3 * count * source.width) { rows[i] = -rows[i] }  // a "model": invert
            try sink.writeRows(y: y, count: count, from: rows)
            y += count
        }
        #expect(!FileManager.default.fileExists(atPath: scratch.file("streamed.png")), "nothing before finish()")
        try sink.finish()

        let whole = try ImageFile.load(Fixtures.path("rgba.png"))
        for i in 0..<whole.tensor.count { whole.tensor.data[i] = -whole.tensor.data[i] }
        try ImageFile.save(whole.tensor, to: scratch.file("whole.png"), template: whole.template)
        let streamed = try VipsCLI.raw(scratch.file("streamed.png"))
        #expect(streamed.bands == 4)
        #expect(maxDifference(streamed.bytes, try VipsCLI.raw(scratch.file("whole.png")).bytes) == 0)
        // Inverting x ↦ -(x/127.5 - 1) gives 255 - x exactly.
        let input = try VipsCLI.raw(Fixtures.path("rgba.png"))
        #expect(streamed.bytes[0] == 255 - input.bytes[0] && streamed.bytes[3] == input.bytes[3])
    }

    @Test func sinkRefusesRowsOutOfOrderAndLeavesNothingWhenUnfinished() throws {
        let scratch = try Scratch()
        let rows = [Float](repeating: 0, count: 3 * 4 * 8)
        do {
            let sink = try ImageSink(destination: scratch.file("out.png"), width: 8, height: 8)
            try rows.withUnsafeBufferPointer { try sink.writeRows(y: 0, count: 4, from: $0.baseAddress!) }
            let skipped = expectImagingError {
                try rows.withUnsafeBufferPointer { try sink.writeRows(y: 5, count: 1, from: $0.baseAddress!) }
            }
            #expect(skipped?.kind == .invalidArgument)
            let early = expectImagingError { try sink.finish() }
            #expect(early?.kind == .invalidArgument && early?.reason.contains("4 of 8") == true)
        }
        #expect(scratch.contents.isEmpty, "an abandoned sink leaves no file")
    }

    @Test func sinkChecksTheTemplatesSize() throws {
        let scratch = try Scratch()
        let template = try ImageSource(path: Fixtures.path("rgb.png")).template()
        let error = expectImagingError {
            _ = try ImageSink(destination: scratch.file("o.png"), width: 47, height: 32, template: template)
        }
        #expect(error?.kind == .invalidArgument)
    }

    @Test func sinkRefusesAnUnwritableDestinationBeforeAnyWork() throws {
        let scratch = try Scratch()
        let error = expectImagingError {
            _ = try ImageSink(destination: scratch.file("missing/out.png"), width: 4, height: 4)
        }
        #expect(error?.kind == .writeFailed && error?.reason.contains("cannot write into") == true)
    }

    @Test func readRowsChecksItsRange() throws {
        let source = try ImageSource(path: Fixtures.path("rgb.png"))
        let buffer = UnsafeMutablePointer<Float>.allocate(capacity: 3 * 48 * 2)
        defer { buffer.deallocate() }
        #expect(expectImagingError { try source.readRows(y: 31, count: 2, into: buffer) }?.kind == .invalidArgument)
    }

    @Test func temporaryFilesNeverAppearInTheirDirectory() throws {
        let scratch = try Scratch()
        let spool = scratch.file("spool")
        try FileManager.default.createDirectory(atPath: spool, withIntermediateDirectories: true)
        let source = try ImageSource(path: Fixtures.path("rgba.png"), options: LoadOptions(temporaryDirectory: spool))
        try source.decode()
        let sink = try ImageSink(
            destination: scratch.file("out.png"), width: 48, height: 32, template: try source.template(),
            options: SaveOptions(temporaryDirectory: spool))
        #expect(
            try FileManager.default.contentsOfDirectory(atPath: spool).isEmpty,
            "spool files are unlinked as soon as they are made")
        _ = sink
        let missing = expectImagingError {
            _ = try ImageSink(
                destination: scratch.file("x.png"), width: 4, height: 4,
                options: SaveOptions(temporaryDirectory: scratch.file("no-such-dir")))
        }
        #expect(missing?.kind == .writeFailed)
    }
}

@Suite struct FileNameTests {
    @Test(arguments: [
        "with space.png", "ünïcødé 画像.png", "brackets[1].png", "semi;colon,comma.png", "-leading-dash.png",
    ])
    func oddNamesLoadAndSave(name: String) throws {
        let scratch = try Scratch()
        let input = try scratch.copy("rgb.png", as: name)
        let image = try ImageFile.load(input)
        let output = scratch.file("out " + name)
        try ImageFile.save(image.tensor, to: output, template: image.template)
        #expect(maxDifference(try VipsCLI.raw(output).bytes, try VipsCLI.raw(input).bytes) == 0)
        #expect(scratch.contents == [name, "out " + name].sorted())
    }

    @Test func noExtensionIsDetectedByContentAndKeepsItsFormat() throws {
        let scratch = try Scratch()
        let input = try scratch.copy("orientation-1.jpg", as: "photo")
        let misnamed = try scratch.copy("rgb.png", as: "really-a-png.jpg")
        let image = try ImageFile.load(input)
        #expect(image.template.inputFormat == "jpg")
        try ImageFile.save(image.tensor, to: scratch.file("photo-out"), template: image.template)
        #expect(try VipsCLI.loader(scratch.file("photo-out"))?.hasPrefix("jpegload") == true)
        #expect(try ImageFile.load(misnamed).template.inputFormat == "png")
    }

    @Test func outputReplacesAnExistingFileAtomically() throws {
        let scratch = try Scratch()
        let image = try ImageFile.load(Fixtures.path("rgb.png"))
        let output = try scratch.write(Array("old".utf8), as: "out.png")
        try ImageFile.save(image.tensor, to: output, template: image.template)
        #expect(try VipsCLI.field(output, "width") == "48")
        #expect(scratch.contents == ["out.png"])
    }

    @Test func unwritableDestinationsFailCleanly() throws {
        let scratch = try Scratch()
        let image = try ImageFile.load(Fixtures.path("rgb.png"))
        let noDirectory = expectImagingError { try ImageFile.save(image.tensor, to: scratch.file("missing/out.png")) }
        #expect(noDirectory?.kind == .writeFailed)
        try FileManager.default.createDirectory(atPath: scratch.file("taken.png"), withIntermediateDirectories: false)
        let isDirectory = expectImagingError { try ImageFile.save(image.tensor, to: scratch.file("taken.png")) }
        #expect(isDirectory?.kind == .writeFailed)
        #expect(scratch.contents == ["taken.png"], "no temporary file left behind")
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.file("taken.png")).isEmpty)
    }
}
