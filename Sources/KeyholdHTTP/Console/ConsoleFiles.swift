import Foundation
import KeyholdCore

/// The web console's files (`Resources/console`: HTML, CSS and hand-written JavaScript modules): the copy built
/// into the server, loaded once at start, or with `--console-dir` a folder read at each request (for working on
/// the console). Paths are plain names under the folder: no `..`, no hidden files, nothing outside it.
struct ConsoleFiles: Sendable {
    private let builtIn: [String: Data]
    private let directory: URL?

    init(directory: String?) throws {
        if let directory {
            self.directory = URL(fileURLWithPath: directory, isDirectory: true)
            builtIn = [:]
            return
        }
        self.directory = nil
        guard let root = Bundle.module.url(forResource: "console", withExtension: nil) else {
            throw KeyholdError.internalError("The web console is missing from the build")
        }
        var files: [String: Data] = [:]
        let prefix = root.standardizedFileURL.path + "/"
        let walker = FileManager.default.enumerator(at: root, includingPropertiesForKeys: [.isRegularFileKey])
        while let url = walker?.nextObject() as? URL {
            guard (try? url.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true else { continue }
            let path = String(url.standardizedFileURL.path.dropFirst(prefix.count))
            if Self.isServable(path) { files[path] = try Data(contentsOf: url) }
        }
        guard files["index.html"] != nil else { throw KeyholdError.internalError("The web console has no index.html") }
        builtIn = files
    }

    /// The file at `path` (relative to the console folder), nil when there is none or the path is not servable.
    func file(_ path: String) -> Data? {
        guard Self.isServable(path) else { return nil }
        guard let directory else { return builtIn[path] }
        let url = directory.appendingPathComponent(path)
        guard (try? url.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true else { return nil }
        return try? Data(contentsOf: url)
    }

    /// Names of letters, digits, `.`, `_` and `-` (not starting with `.`), separated by `/`, with a known type.
    static func isServable(_ path: String) -> Bool {
        guard path.utf8.count <= 256, contentType(of: path) != nil else { return false }
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
        return path.split(separator: "/", omittingEmptySubsequences: false).allSatisfy { part in
            !part.isEmpty && part.first != "." && part.allSatisfy { allowed.contains($0) }
        }
    }

    static func contentType(of path: String) -> String? {
        switch path.split(separator: ".").last.map({ $0.lowercased() }) {
        case "html": "text/html; charset=utf-8"
        case "js", "mjs": "text/javascript; charset=utf-8"
        case "css": "text/css; charset=utf-8"
        case "svg": "image/svg+xml"
        case "png": "image/png"
        case "ico": "image/x-icon"
        case "json": "application/json"
        case "txt": "text/plain; charset=utf-8"
        case "woff2": "font/woff2"
        default: nil
        }
    }
}
