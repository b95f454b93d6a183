import Foundation

/// The image files of one domain folder, as the reference's `make_dataset`: every file below it
/// (subfolders included, symbolic links to folders not followed) whose extension is an image
/// format's, sorted by path as Python sorts strings. Hidden files and folders are left out.
enum ImageListing {
    /// The reference's extensions (it accepts them in lower or upper case), plus WebP.
    static let extensions: Set<String> = ["jpg", "jpeg", "png", "ppm", "bmp", "tif", "tiff", "webp"]

    static func images(in folder: String, limit: Int) throws -> [String] {
        let files = FileManager.default
        var isFolder: ObjCBool = false
        guard files.fileExists(atPath: folder, isDirectory: &isFolder) else {
            throw DataError(
                .missingFolder, folder: folder, "\(folder) does not exist: it should hold the domain's images")
        }
        guard isFolder.boolValue else {
            throw DataError(
                .missingFolder, folder: folder, "\(folder) is not a folder: it should hold the domain's images")
        }
        var found: [String] = []
        var others = 0
        var pending = [folder]
        while let current = pending.popLast() {
            let names: [String]
            do {
                names = try files.contentsOfDirectory(atPath: current)
            } catch {
                throw DataError(.missingFolder, folder: folder, "cannot list \(current): \(error.localizedDescription)")
            }
            for name in names where !name.hasPrefix(".") {
                let path = current + "/" + name
                switch kind(of: path) {
                case .folder: pending.append(path)
                case .file where extensions.contains((name as NSString).pathExtension.lowercased()): found.append(path)
                case .file: others += 1
                case .other: continue
                }
            }
        }
        guard !found.isEmpty else {
            let what = others == 0 ? "is empty" : "has \(others) files but no images"
            throw DataError(
                .noImages, folder: folder,
                "\(folder) \(what): it should hold the domain's images "
                    + "(\(extensions.sorted().map { "." + $0 }.joined(separator: ", ")))")
        }
        found.sort { $0.unicodeScalars.lexicographicallyPrecedes($1.unicodeScalars) }
        return Array(found.prefix(limit))
    }

    private enum Kind { case folder, file, other }

    /// A symbolic link counts as what it points to, except that links to folders are not
    /// walked (as `os.walk`), which also keeps a link loop from walking for ever.
    private static func kind(of path: String) -> Kind {
        var info = stat()
        guard lstat(path, &info) == 0 else { return .other }
        let linked = (info.st_mode & S_IFMT) == S_IFLNK
        if linked && stat(path, &info) != 0 { return .other }
        switch info.st_mode & S_IFMT {
        case S_IFDIR: return linked ? .other : .folder
        case S_IFREG: return .file
        default: return .other
        }
    }
}
