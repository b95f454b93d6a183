import Foundation
import Imaging
import Testing

@Suite struct OrientationAndMetadataTests {
    /// The upright quadrant colours the fixtures were made from.
    static let quadrants: [(x: Range<Int>, y: Range<Int>, rgb: [Double])] = [
        (4..<20, 3..<13, [230, 30, 30]), (28..<44, 3..<13, [30, 230, 30]),
        (4..<20, 19..<29, [30, 30, 230]), (28..<44, 19..<29, [240, 240, 240]),
    ]

    static func expectUpright(_ image: LoadedImage, _ label: String) {
        #expect(image.width == 48 && image.height == 32, "\(label): upright size, got \(image.width)×\(image.height)")
        guard image.width == 48 && image.height == 32 else { return }
        for q in quadrants {
            let mean = image.mean(x: q.x, y: q.y)
            #expect(zip(mean, q.rgb).allSatisfy { abs($0 - $1) < 12 }, "\(label): quadrant \(q.rgb) reads \(mean)")
        }
    }

    @Test(arguments: 1...8)
    func exifOrientationGivesAnUprightImageAndAnUprightTag(orientation: Int) throws {
        let scratch = try Scratch()
        let input = Fixtures.path("orientation-\(orientation).jpg")
        #expect(try VipsCLI.field(input, "orientation") == "\(orientation)")
        let image = try ImageFile.load(input)
        Self.expectUpright(image, "orientation \(orientation)")
        let output = scratch.file("out.jpg")
        try ImageFile.save(image.tensor, to: output, template: image.template)
        #expect(try VipsCLI.field(output, "width") == "48")
        #expect(try VipsCLI.field(output, "orientation") ?? "1" == "1")
        // Reading our output again (which applies any orientation tag) is still upright.
        Self.expectUpright(try ImageFile.load(output), "orientation \(orientation), output")
    }

    @Test func exifAndXMPAreKeptWithTheOrientationReset() throws {
        let scratch = try Scratch()
        let image = try ImageFile.load(Fixtures.path("metadata.jpg"))
        Self.expectUpright(image, "metadata.jpg")
        for suffix in ["jpg", "png", "webp", "tif"] {
            let output = scratch.file("out.\(suffix)")
            try ImageFile.save(image.tensor, to: output, template: image.template)
            let header = try VipsCLI.run("vipsheader", ["-a", output]).output
            // libvips 8.14 writes no XMP into PNG.
            if suffix != "png" {
                let bytes = try Data(contentsOf: URL(fileURLWithPath: output))
                #expect(bytes.range(of: Data("cyclegand-test-xmp".utf8)) != nil, "\(suffix) keeps the XMP packet")
                #expect(bytes.range(of: Data(#"tiff:Orientation="1""#.utf8)) != nil, "\(suffix): XMP orientation reset")
                #expect(bytes.range(of: Data(#"tiff:Orientation="6""#.utf8)) == nil, "\(suffix): XMP orientation reset")
            }
            if suffix != "tif" {
                #expect(header.contains("cyclegand-test-camera"), "\(suffix) keeps EXIF")
                #expect(try VipsCLI.field(output, "orientation") == "1", "\(suffix): orientation reset")
            }
        }
    }
}
