/// Objects that name a key twice. `JSONDecoder` keeps the first of two equal keys and drops the other without a
/// word, while a proxy or firewall in front of Keyhold may act on the last one: the two would read different requests
/// from the same bytes. Request bodies with such an object are refused before they are decoded.
public enum JSONDuplicateKeys {
    /// The path of the first key that appears a second time in one object (`items.0.name`: keys and array indices
    /// joined by `.`, as request errors name fields), or nil when no object repeats a key.
    ///
    /// Keys are compared as the decoder compares them, as Swift strings after unescaping: `"a"` and `"\u0061"` are one
    /// key, and so are canonically equivalent spellings such as `"K"` and `"\u212A"` (KELVIN SIGN), which the decoder's
    /// dictionaries merge too. The answer is meant for JSON in UTF-8; for anything else it is nil or some path, and
    /// the decoder reports what is wrong. One pass and no recursion: the open arrays and objects are a stack of its
    /// own, so no depth of nesting can overflow the thread's stack.
    public static func firstDuplicate(in json: UnsafeRawBufferPointer) -> String? {
        var levels: [Level] = []
        // One set for every object of the text: an object's keys are told apart from others' by where it starts.
        var seen = Set<SeenKey>()
        var scratch: [UInt8] = []
        var offset = 0
        while offset < json.count {
            switch json[offset] {
            case .openBrace:
                levels.append(Level(object: offset, position: -1))
            case .openBracket:
                levels.append(Level(object: -1, position: 0))
            case .closeBrace, .closeBracket:
                guard levels.popLast() != nil else { return nil }
            case .comma:
                guard let last = levels.indices.last else { return nil }
                levels[last].position = levels[last].isArray ? levels[last].position + 1 : -1
            case .quote:
                guard let end = stringEnd(json, from: offset) else { return nil }
                if let last = levels.indices.last, levels[last].expectsKey {
                    guard let name = key(json, from: offset, to: end, scratch: &scratch) else { return nil }
                    guard seen.insert(SeenKey(object: levels[last].object, name: name)).inserted else {
                        return (path(json, levels.dropLast(), scratch: &scratch) + [name]).joined(separator: ".")
                    }
                    levels[last].position = offset
                }
                offset = end
            default:
                break
            }
            offset += 1
        }
        return nil
    }

    /// One open array or object.
    private struct Level {
        /// Where an object's `{` is; -1 for an array.
        let object: Int
        /// An array's current index. For an object, where its current key starts, or -1 after `{` and `,` (the next
        /// string is a key).
        var position: Int

        var isArray: Bool { object < 0 }
        var expectsKey: Bool { object >= 0 && position < 0 }
    }

    private struct SeenKey: Hashable {
        let object: Int
        let name: String
    }

    /// The names of the open levels above the duplicate: the current key of each object, the index in each array.
    private static func path(_ json: UnsafeRawBufferPointer, _ levels: ArraySlice<Level>, scratch: inout [UInt8])
        -> [String]
    {
        levels.compactMap { level in
            if level.isArray { return String(level.position) }
            guard level.position >= 0, let end = stringEnd(json, from: level.position) else { return nil }
            return key(json, from: level.position, to: end, scratch: &scratch)
        }
    }

    /// Where the string that opens at `start` closes, nil when the text ends first.
    private static func stringEnd(_ json: UnsafeRawBufferPointer, from start: Int) -> Int? {
        var offset = start + 1
        while offset < json.count {
            switch json[offset] {
            case .quote: return offset
            case .backslash: offset += 2
            default: offset += 1
            }
        }
        return nil
    }

    /// The unescaped text of the string between the quotes at `start` and `end`; nil for an invalid escape, a lone
    /// surrogate or bytes that are not UTF-8 (the decoder refuses all three). Decoded into `scratch`, reused from key
    /// to key, so that a key costs no allocation but its `String`'s (none up to 15 bytes).
    private static func key(_ json: UnsafeRawBufferPointer, from start: Int, to end: Int, scratch: inout [UInt8])
        -> String?
    {
        scratch.removeAll(keepingCapacity: true)
        var offset = start + 1
        while offset < end {
            let byte = json[offset]
            offset += 1
            guard byte == .backslash else {
                scratch.append(byte)
                continue
            }
            // `stringEnd` stepped over the escaped byte, so it is before `end`.
            let escape = json[offset]
            offset += 1
            switch escape {
            case .quote, .backslash, .slash: scratch.append(escape)
            case UInt8(ascii: "b"): scratch.append(0x08)
            case UInt8(ascii: "f"): scratch.append(0x0C)
            case UInt8(ascii: "n"): scratch.append(0x0A)
            case UInt8(ascii: "r"): scratch.append(0x0D)
            case UInt8(ascii: "t"): scratch.append(0x09)
            case UInt8(ascii: "u"):
                guard var code = hex4(json, at: offset, end: end) else { return nil }
                offset += 4
                if (0xD800..<0xDC00).contains(code) {
                    guard offset + 6 <= end, json[offset] == .backslash, json[offset + 1] == UInt8(ascii: "u"),
                        let low = hex4(json, at: offset + 2, end: end), (0xDC00..<0xE000).contains(low)
                    else { return nil }
                    offset += 6
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                }
                guard let scalar = Unicode.Scalar(code) else { return nil }
                UTF8.encode(scalar) { scratch.append($0) }
            default:
                return nil
            }
        }
        return String(validating: scratch, as: UTF8.self)
    }

    /// The value of four hex digits at `offset`, nil when there are fewer before `end`.
    private static func hex4(_ json: UnsafeRawBufferPointer, at offset: Int, end: Int) -> UInt32? {
        guard offset + 4 <= end else { return nil }
        var value: UInt32 = 0
        for byte in json[offset..<offset + 4] {
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: return nil
            }
            value = (value << 4) | UInt32(digit)
        }
        return value
    }
}

extension UInt8 {
    fileprivate static let openBrace = UInt8(ascii: "{")
    fileprivate static let closeBrace = UInt8(ascii: "}")
    fileprivate static let openBracket = UInt8(ascii: "[")
    fileprivate static let closeBracket = UInt8(ascii: "]")
    fileprivate static let comma = UInt8(ascii: ",")
    fileprivate static let quote = UInt8(ascii: "\"")
    fileprivate static let backslash = UInt8(ascii: "\\")
    fileprivate static let slash = UInt8(ascii: "/")
}
