import Foundation
import Logging
import Synchronization

/// `--log-format json`: one JSON object per line on standard error — `time` (RFC 3339, milliseconds, UTC),
/// `level`, `label`, `message` and the metadata as string fields (a request's line has `request_id`, `method`,
/// `route`, `path`, `status` and `duration_us`). Lines are written whole, one at a time. Nothing secret is ever
/// logged: the server puts no value, key, password or token in a message or in metadata.
public struct JSONLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    let label: String

    private static let output = Mutex<Void>(())

    public init(label: String, level: Logger.Level) {
        self.label = label
        logLevel = level
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var object: [String: String] = [:]
        for (key, value) in metadata.merging(event.metadata ?? [:], uniquingKeysWith: { $1 }) {
            object[Self.fieldName(key)] = "\(value)"
        }
        object["time"] = Date().formatted(
            .iso8601.year().month().day().time(includingFractionalSeconds: true).timeZone(separator: .omitted))
        object["level"] = event.level.rawValue
        object["label"] = label
        object["message"] = "\(event.message)"
        guard var line = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
        else { return }
        line.append(0x0A)
        Self.output.withLock { _ in FileHandle.standardError.write(line) }
    }

    /// The server's metadata keys without their namespaces: `keyhold.http.status` is `status`, Hummingbird's
    /// `hb.request.id` is `request_id`.
    static func fieldName(_ key: String) -> String {
        switch key {
        case "hb.request.id": "request_id"
        case _ where key.hasPrefix("keyhold.http."): String(key.dropFirst("keyhold.http.".count))
        case _ where key.hasPrefix("keyhold."): String(key.dropFirst("keyhold.".count)).replacingOccurrences(of: ".", with: "_")
        default: key
        }
    }
}
