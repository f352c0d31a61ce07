/// A validated secret path: ASCII letters, digits, `-`, `_` and `/`; it starts and ends with a letter or digit;
/// no empty, `.` or `..` segment; at most `maxLength` bytes. Paths are case-sensitive.
///
/// This is 1Claw's write regex (`^[a-zA-Z0-9][a-zA-Z0-9_\-/]*[a-zA-Z0-9]$|^[a-zA-Z0-9]$`) tightened: it also
/// refuses `//`, so a path has exactly one spelling and a glob policy sees the same segments as storage.
public struct SecretPath: Sendable, Hashable, CustomStringConvertible {
    public static let maxLength = 512
    public static let maxSegments = 32

    public let rawValue: String

    public init(validating raw: String) throws {
        let bytes = Array(raw.utf8)
        guard !bytes.isEmpty else { throw KeyholdError.badRequest("Secret path is empty") }
        guard bytes.count <= Self.maxLength else {
            throw KeyholdError.badRequest("Secret path is longer than \(Self.maxLength) bytes")
        }
        var segments = 1
        var segmentLength = 0
        for byte in bytes {
            switch byte {
            case UInt8(ascii: "/"):
                guard segmentLength > 0 else { throw KeyholdError.badRequest(Self.rules) }
                segments += 1
                segmentLength = 0
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"):
                segmentLength += 1
            default:
                throw KeyholdError.badRequest(Self.rules)
            }
        }
        guard segmentLength > 0, Self.isAlphanumeric(bytes.first!), Self.isAlphanumeric(bytes.last!) else {
            throw KeyholdError.badRequest(Self.rules)
        }
        guard segments <= Self.maxSegments else {
            throw KeyholdError.badRequest("Secret path has more than \(Self.maxSegments) segments")
        }
        self.rawValue = raw
    }

    /// A path built by the server for matching only (an env var's `env-vars/KEY`), never stored as a secret's.
    init(unvalidated raw: String) { rawValue = raw }

    /// Parses the path as it appears in a request URL: `%2F` (either case) stands for `/`; any other
    /// percent-escape cannot form a valid path character and is refused.
    public init(urlEncoded raw: Substring) throws {
        var decoded = ""
        decoded.reserveCapacity(raw.utf8.count)
        var index = raw.startIndex
        while index < raw.endIndex {
            let character = raw[index]
            if character == "%" {
                let escape = raw[index...].prefix(3)
                guard escape.count == 3, escape.dropFirst().uppercased() == "2F" else {
                    throw KeyholdError.badRequest(Self.rules)
                }
                decoded.append("/")
                index = raw.index(index, offsetBy: 3)
            } else {
                decoded.append(character)
                index = raw.index(after: index)
            }
        }
        try self.init(validating: decoded)
    }

    public var segments: [Substring] { rawValue.split(separator: "/", omittingEmptySubsequences: false) }
    public var description: String { rawValue }

    static let rules =
        "Invalid secret path: use letters, digits, '-', '_' and '/' separators, no empty, '.' or '..' segments, and start and end with a letter or digit"

    private static func isAlphanumeric(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"):
            true
        default: false
        }
    }
}

/// Secret types: the union of the spec's and the docs' lists (contract D1).
public enum SecretType: String, Sendable, CaseIterable, Codable {
    case generic, password, apiKey = "api_key", privateKey = "private_key", certificate, file, note
    case sshKey = "ssh_key", env, envBundle = "env_bundle"
}
