import Foundation
import Testing

import KeyholdCore

/// `jsonString()` writes JSON itself; audit hashes depend on its bytes, so they must stay exactly what
/// `JSONEncoder` (sorted keys, unescaped slashes) wrote before.
@Suite struct JSONValueTests {
    static func encoderString(_ value: JSONValue) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    static var allControlCharacters: String {
        var text = ""
        for code in 0..<32 { text.unicodeScalars.append(Unicode.Scalar(UInt8(code))) }
        return text
    }

    static let samples: [JSONValue] = [
        .null, true, false, 0, -5, 42, .number(999_999_999_999_999), .number(1e15), .number(1.5), .number(-2.25e-7),
        .number(1e20), "", "plain", "quote \" backslash \\ slash / tab \t", .string(allControlCharacters),
        "é ü 日本 \u{7F} \u{2028} 🔑", .array([]), .array([1, "two", .null, .array([true])]),
        .object([:]),
        .object([
            "vault_id": "5f0c…", "version": 3, "outcome": "denied", "B": 1, "Z": 2, "_x": 3, "a10": 4, "a9": 5,
            "aB": 6, "a_b": 7, "é": 8, "nested": .object(["z": .array([]), "a": .object(["k": "v\n"])]),
        ]),
    ]

    @Test(arguments: samples)
    func matchesJSONEncoder(_ value: JSONValue) throws {
        #expect(value.jsonString() == (try Self.encoderString(value)))
    }

    @Test func randomObjectsMatchJSONEncoder() throws {
        var generator = SystemRandomNumberGenerator()
        let alphabet = Array("aZ_09é\"\\/\n\u{1}日 ".unicodeScalars)
        func text() -> String {
            var string = ""
            for _ in 0..<Int.random(in: 0...6, using: &generator) {
                string.unicodeScalars.append(alphabet.randomElement(using: &generator)!)
            }
            return string
        }
        func value(_ depth: Int) -> JSONValue {
            switch Int.random(in: 0...(depth > 2 ? 3 : 5), using: &generator) {
            case 0: .string(text())
            case 1: .number(Double(Int.random(in: -1_000_000...1_000_000, using: &generator)))
            case 2: .bool(Bool.random(using: &generator))
            case 3: .null
            case 4: .array((0..<Int.random(in: 0...3, using: &generator)).map { _ in value(depth + 1) })
            default:
                .object(Dictionary((0..<Int.random(in: 0...4, using: &generator)).map { _ in (text(), value(depth + 1)) }) { a, _ in a })
            }
        }
        for _ in 0..<500 {
            let sample = value(0)
            #expect(sample.jsonString() == (try Self.encoderString(sample)))
        }
    }
}

@Suite struct TimeOrderedUUIDTests {
    @Test func versionVariantAndTimeOrder() throws {
        let time = Timestamp(milliseconds: 1_795_000_000_123)
        let id = UUID(timeOrderedAt: time)
        let text = id.wire
        #expect(text.hasPrefix(String(format: "%08x-%04x-7", 1_795_000_000_123 >> 16, 1_795_000_000_123 & 0xFFFF)))
        #expect(["8", "9", "a", "b"].contains(text[text.index(text.startIndex, offsetBy: 19)]))
        let later = UUID(timeOrderedAt: Timestamp(milliseconds: time.milliseconds + 1))
        #expect(id.wire < later.wire)
        #expect(id != UUID(timeOrderedAt: time))
    }
}

@Suite struct UUIDWireTests {
    @Test func wireIsLowercaseCanonicalForm() {
        for _ in 0..<200 {
            let id = UUID()
            #expect(id.wire == id.uuidString.lowercased())
            #expect(UUID(fast: id.wire) == id)
        }
    }
}
