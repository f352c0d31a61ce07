import Foundation
import Synchronization

/// Any JSON value, for the free-form `metadata`, `rotation_policy` and `details` fields.
public enum JSONValue: Sendable, Hashable, Codable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let value): try container.encode(value)
        case .number(let value):
            if value.rounded() == value, abs(value) < 1e15 {
                try container.encode(Int64(value))
            } else {
                try container.encode(value)
            }
        case .string(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }

    public var isObject: Bool {
        if case .object = self { return true }
        return false
    }

    /// Nesting depth (a scalar is 0).
    public var depth: Int {
        switch self {
        case .array(let values): 1 + (values.map(\.depth).max() ?? 0)
        case .object(let values): 1 + (values.values.map(\.depth).max() ?? 0)
        default: 0
        }
    }

    /// Compact JSON text with sorted keys, for storage and for audit hashes: byte for byte what `JSONEncoder`
    /// writes with `.sortedKeys` and `.withoutEscapingSlashes`. Written directly (every audit event needs one,
    /// and the encoder showed up in profiles); values outside the direct writer's range (non-integral numbers)
    /// still go through `JSONEncoder`.
    public func jsonString() -> String {
        var out: [UInt8] = []
        out.reserveCapacity(96)
        if write(into: &out) { return String(decoding: out, as: UTF8.self) }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: (try? encoder.encode(self)) ?? Data("null".utf8), as: UTF8.self)
    }

    /// False when the value holds something only `JSONEncoder` formats (a number that is not a small integer).
    private func write(into out: inout [UInt8]) -> Bool {
        switch self {
        case .null: out.append(contentsOf: "null".utf8)
        case .bool(let value): out.append(contentsOf: (value ? "true" : "false").utf8)
        case .number(let value):
            guard value.rounded() == value, abs(value) < 1e15 else { return false }
            out.append(contentsOf: String(Int64(value)).utf8)
        case .string(let value): Self.appendJSONString(value, to: &out)
        case .array(let values):
            out.append(UInt8(ascii: "["))
            for (index, value) in values.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                guard value.write(into: &out) else { return false }
            }
            out.append(UInt8(ascii: "]"))
        case .object(let members):
            out.append(UInt8(ascii: "{"))
            let sorted = members.sorted { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }
            for (index, (key, value)) in sorted.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                Self.appendJSONString(key, to: &out)
                out.append(UInt8(ascii: ":"))
                guard value.write(into: &out) else { return false }
            }
            out.append(UInt8(ascii: "}"))
        }
        return true
    }

    /// Appends `text` as a JSON string literal, escaped as `JSONEncoder` escapes it.
    public static func appendJSONString(_ text: String, to out: inout [UInt8]) {
        let hex = Array("0123456789abcdef".utf8)
        out.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
            case UInt8(ascii: "\\"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case 0x08: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "b")])
            case 0x09: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
            case 0x0A: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            case 0x0C: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "f")])
            case 0x0D: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
            case 0..<0x20:
                out.append(contentsOf: "\\u00".utf8)
                out.append(hex[Int(byte >> 4)])
                out.append(hex[Int(byte & 0xF)])
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    public init(jsonString: String) throws {
        self = try JSONDecoder().decode(JSONValue.self, from: Data(jsonString.utf8))
    }
}

extension JSONValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral {
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .number(Double(value)) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
}

extension UUID {
    /// UUIDs on the wire and in audit events are lower-case, as 1Claw's.
    public var wire: String {
        // Formatted directly: `uuidString.lowercased()` showed up in profiles (ids go into every row and event).
        let digits: StaticString = "0123456789abcdef"
        return withUnsafeBytes(of: uuid) { bytes in
            String(unsafeUninitializedCapacity: 36) { out in
                var position = 0
                for (index, byte) in bytes.enumerated() {
                    if index == 4 || index == 6 || index == 8 || index == 10 {
                        out[position] = UInt8(ascii: "-")
                        position += 1
                    }
                    out[position] = digits.utf8Start[Int(byte >> 4)]
                    out[position + 1] = digits.utf8Start[Int(byte & 0x0F)]
                    position += 2
                }
                return position
            }
        }
    }
}

extension UUID {
    /// A version 7 UUID (RFC 9562): 48 bits of Unix milliseconds, then 74 bits that are unique within the process
    /// (12 bits drawn at start-up and a 62-bit counter that starts at a random value). Ids made one after the other
    /// sort by time, so an index over them grows at its end instead of touching a random page per insert (audit
    /// events are the table that grows on every request); and no system call per id, unlike `UUID()`.
    public init(timeOrderedAt time: Timestamp) {
        let count = TimeOrderedIDs.counter.wrappingAdd(1, ordering: .relaxed).newValue
        let milliseconds = UInt64(max(0, time.milliseconds))
        var bytes = [UInt8](repeating: 0, count: 16)
        for index in 0..<6 { bytes[index] = UInt8(truncatingIfNeeded: milliseconds >> (8 * (5 - index))) }
        bytes[6] = 0x70 | UInt8(truncatingIfNeeded: TimeOrderedIDs.processBits >> 8 & 0x0F)
        bytes[7] = UInt8(truncatingIfNeeded: TimeOrderedIDs.processBits)
        for index in 8..<16 { bytes[index] = UInt8(truncatingIfNeeded: count >> (8 * (15 - index))) }
        bytes[8] = 0x80 | (bytes[8] & 0x3F)
        self = bytes.withUnsafeBytes { raw in UUID(uuid: raw.loadUnaligned(as: uuid_t.self)) }
    }

    /// Parses the canonical 36-character form (either case) without Foundation's `sscanf`-based parser, which
    /// showed up in profiles of row decoding.
    public init?(fast text: String) {
        var bytes = [UInt8](repeating: 0, count: 16)
        var index = 0
        var high: UInt8?
        var position = 0
        for char in text.utf8 {
            defer { position += 1 }
            if position == 8 || position == 13 || position == 18 || position == 23 {
                guard char == UInt8(ascii: "-") else { return nil }
                continue
            }
            guard let nibble = Data.hexNibble(char), index < 16 else { return nil }
            if let h = high {
                bytes[index] = h << 4 | nibble
                index += 1
                high = nil
            } else {
                high = nibble
            }
        }
        guard position == 36, index == 16 else { return nil }
        self = bytes.withUnsafeBytes { raw in UUID(uuid: raw.loadUnaligned(as: uuid_t.self)) }
    }
}

/// The process-wide parts of `UUID(timeOrderedAt:)`.
enum TimeOrderedIDs {
    static let processBits = UInt16.random(in: .min ... .max)
    static let counter = Atomic<UInt64>(UInt64.random(in: .min ... .max))
}
