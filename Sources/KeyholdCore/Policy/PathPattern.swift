/// A secret-path glob: segments split on `/`; `*` matches exactly one segment, `**` zero or more segments, and
/// any other segment matches itself literally (case-sensitive). Patterns are validated like paths, so a pattern
/// cannot contain `.`/`..` segments or empty segments and can only ever match normalised paths.
public struct PathPattern: Sendable, Hashable, CustomStringConvertible {
    enum Segment: Hashable, Sendable {
        case literal(Substring)
        case one
        case any
    }

    public let rawValue: String
    let segments: [Segment]

    public static let maxLength = SecretPath.maxLength

    public init(validating raw: String) throws {
        let invalid = KeyholdError.badRequest(
            "Invalid secret_path_pattern: use path segments of letters, digits, '-' and '_', or '*' (one segment) and '**' (any number of segments), separated by '/'")
        guard !raw.isEmpty, raw.utf8.count <= Self.maxLength else { throw invalid }
        var segments: [Segment] = []
        for part in raw.split(separator: "/", omittingEmptySubsequences: false) {
            switch part {
            case "*": segments.append(.one)
            case "**":
                if segments.last != .any { segments.append(.any) }
            default:
                guard (try? SecretPath(validating: String(part))) != nil else { throw invalid }
                segments.append(.literal(part))
            }
        }
        guard segments.count <= SecretPath.maxSegments * 2 else { throw invalid }
        self.rawValue = raw
        self.segments = segments
    }

    public var description: String { rawValue }

    public func matches(_ path: SecretPath) -> Bool {
        Self.match(segments[...], path.segments[...])
    }

    /// Dynamic programming over (pattern suffix, path suffix): O(pattern × path), whatever the `**`s.
    static func match(_ pattern: ArraySlice<Segment>, _ path: ArraySlice<Substring>) -> Bool {
        let p = Array(pattern), s = Array(path)
        // next[j]: does p[i+1...] match s[j...]; current[j]: does p[i...] match s[j...].
        var next = [Bool](repeating: false, count: s.count + 1)
        next[s.count] = true
        for i in stride(from: p.count - 1, through: 0, by: -1) {
            var current = [Bool](repeating: false, count: s.count + 1)
            for j in stride(from: s.count, through: 0, by: -1) {
                switch p[i] {
                case .literal(let literal): current[j] = j < s.count && s[j] == literal && next[j + 1]
                case .one: current[j] = j < s.count && next[j + 1]
                case .any: current[j] = next[j] || (j < s.count && current[j + 1])
                }
            }
            next = current
        }
        return next[0]
    }
}
