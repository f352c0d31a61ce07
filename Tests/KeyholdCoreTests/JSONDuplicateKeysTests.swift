import Foundation
import KeyholdCore
import Testing

/// `JSONDecoder` keeps the first of two equal keys; request bodies that repeat a key are refused, so the scanner must
/// find every key the decoder would merge, and nothing else.
@Suite struct JSONDuplicateKeysTests {
    func duplicate(_ json: String) -> String? {
        Array(json.utf8).withUnsafeBytes { JSONDuplicateKeys.firstDuplicate(in: $0) }
    }

    @Test func findsADuplicateAtTheTop() {
        #expect(duplicate(#"{"name":"a","name":"b"}"#) == "name")
        #expect(duplicate(" {\n \"value\" : \"a\" ,\t\"value\" : \"b\" } ") == "value")
        #expect(duplicate(#"{"":1,"":2}"#) == "")
        #expect(duplicate(#"{"a":1,"b":2,"c":3,"b":4}"#) == "b")
    }

    @Test func namesTheFirstDuplicateByItsPath() {
        #expect(duplicate(#"{"b":1,"a":1,"b":2,"a":2}"#) == "b")
        #expect(duplicate(#"{"metadata":{"env":"x","env":"y"}}"#) == "metadata.env")
        #expect(duplicate(#"{"a":{"b":{"c":1,"c":2}}}"#) == "a.b.c")
        #expect(duplicate(#"{"a":{"b":1},"a":2}"#) == "a")
        #expect(duplicate(#"{"x":1,"y":{"z":1},"y":2}"#) == "y")
    }

    @Test func findsDuplicatesInArraysOfObjects() {
        #expect(duplicate(#"[{"a":1,"a":2}]"#) == "0.a")
        #expect(duplicate(#"{"items":[{"id":1},{"id":2,"id":3}]}"#) == "items.1.id")
        #expect(duplicate(#"[1,"two",[3],{"x":[0,{"k":1,"k":2}]}]"#) == "3.x.1.k")
        #expect(duplicate(#"{"a":[[],[{}],[{"b":1},{"c":1,"c":1}]]}"#) == "a.2.1.c")
    }

    @Test func comparesKeysAfterUnescaping() {
        #expect(duplicate(#"{"a":1,"\u0061":2}"#) == "a")
        #expect(duplicate(#"{"\u0041":1,"A":2}"#) == "A")
        #expect(duplicate(#"{"\"":1,"\u0022":2}"#) == "\"")
        #expect(duplicate(#"{"\\":1,"\u005c":2}"#) == "\\")
        #expect(duplicate(#"{"/":1,"\/":2}"#) == "/")
        #expect(duplicate(#"{"a\nb":1,"a\u000Ab":2}"#) == "a\nb")
        #expect(duplicate(#"{"\b\f\r\t":1,"\u0008\u000c\u000D\u0009":2}"#) == "\u{8}\u{C}\r\t")
        #expect(duplicate(#"{"é":1,"\u00e9":2}"#) == "é")
        #expect(duplicate(#"{"🔑":1,"\uD83D\uDD11":2}"#) == "🔑")
        #expect(duplicate(#"{"x\ud83d\udd11y":1,"x🔑y":2}"#) == "x🔑y")
        #expect(duplicate(#"{"metadata":{"v":1,"\u0076":2}}"#) == "metadata.v")
    }

    /// The decoder's dictionaries compare keys as Swift strings, that is up to canonical equivalence.
    @Test func comparesKeysAsTheDecoderDoes() throws {
        for json in [#"{"K":1,"\u212A":2}"#, #"{"\u00e9":1,"e\u0301":2}"#, #"{"a":1,"\u0061":2}"#] {
            #expect(duplicate(json) != nil, "\(json)")
            #expect(try JSONDecoder().decode([String: Int].self, from: Data(json.utf8)).count == 1, "\(json)")
        }
        for json in [#"{"a":1,"A":2}"#, #"{"a\u0000":1,"a":2}"#, #"{"e":1,"\u00e9":2}"#, #"{"a ":1,"a":2}"#] {
            #expect(duplicate(json) == nil, "\(json)")
            #expect(try JSONDecoder().decode([String: Int].self, from: Data(json.utf8)).count == 2, "\(json)")
        }
    }

    @Test func theSameKeyInOtherObjectsIsNoDuplicate() {
        #expect(duplicate(#"[{"a":1},{"a":2}]"#) == nil)
        #expect(duplicate(#"{"x":{"a":1},"y":{"a":2}}"#) == nil)
        #expect(duplicate(#"{"a":{"a":{"a":1}}}"#) == nil)
        #expect(duplicate(#"{"a":{"b":1},"b":2}"#) == nil)
        #expect(duplicate(#"{"a":[{"a":1,"b":2},{"a":3,"b":4}],"b":[{"a":5}]}"#) == nil)
    }

    @Test func valuesAreNotKeys() {
        #expect(duplicate(#"{"a":"a","b":"a"}"#) == nil)
        #expect(duplicate(#"{"a":"b","b":"a"}"#) == nil)
        #expect(duplicate(#"{"a":["a","a"],"b":[{"c":"a"}]}"#) == nil)
        #expect(duplicate(#"["a","a"]"#) == nil)
        #expect(duplicate(#""a""#) == nil)
        #expect(duplicate(#"{"a":1,"b":true,"c":null,"d":-1.5e+3,"e":[false,0]}"#) == nil)
    }

    @Test func stringsMayHoldBracesQuotesAndCommas() {
        #expect(duplicate(#"{"a":"}{,\"a\":","b":"[\"a\"]"}"#) == nil)
        #expect(duplicate(#"{"a":"x\",\"a\":\"y","b":1}"#) == nil)
        #expect(duplicate(#"{"a":"\\","b":"\\\""}"#) == nil)
        #expect(duplicate(#"{"{\"a\":1,":1,"a":2}"#) == nil)
        #expect(duplicate(#"{"a,b":1,"a":2,"b":3}"#) == nil)
        #expect(duplicate(#"{"a":"}","b":{"c":"]","c":"{"}}"#) == "b.c")
        #expect(duplicate(#"{"a\"":1,"a\"":2}"#) == "a\"")
    }

    @Test func emptyObjectsAndArrays() {
        for json in ["{}", "[]", "[{}]", "[{},{}]", #"{"a":{},"b":{}}"#, #"{"a":[],"b":[{}]}"#, "{ }", "[[],[]]"] {
            #expect(duplicate(json) == nil, "\(json)")
        }
        #expect(duplicate(#"{"a":{},"a":[]}"#) == "a")
    }

    /// The nesting is followed without recursion: far deeper than any decoder accepts costs no stack.
    @Test func deepNesting() {
        let depth = 100_000
        let arrays = String(repeating: "[", count: depth)
        #expect(duplicate(arrays + String(repeating: "]", count: depth)) == nil)
        #expect(duplicate(arrays) == nil)
        let inner = duplicate(arrays + #"{"a":1,"a":2}"# + String(repeating: "]", count: depth))
        #expect(inner == String(repeating: "0.", count: depth) + "a")
        let objects = String(repeating: #"{"k":"#, count: depth)
        #expect(duplicate(objects + "1" + String(repeating: "}", count: depth)) == nil)
        let innermost = duplicate(objects + "1" + String(repeating: #","k":2}"#, count: depth))
        #expect(innermost == Array(repeating: "k", count: depth).joined(separator: "."))
    }

    @Test func aLargeValueIsOnlyScanned() {
        let value = String(repeating: #"{\"a\":1,\"a\":2}\\"#, count: 60_000)
        #expect(duplicate(#"{"value":""# + value + #"","type":"note"}"#) == nil)
        #expect(duplicate(#"{"value":""# + value + #"","value":"x"}"#) == "value")
    }

    /// Text that is not JSON is the decoder's to refuse; the scanner only must not trip over it.
    @Test func invalidJSONIsLeftToTheDecoder() {
        for json in [
            "", "}", "]", ",", "{", #"{"a"#, #"{"a\"#, #"{"a\u12"#, #"{"\u12":1}"#, #"{"\q":1,"\q":2}"#,
            #"{"\uD800":1,"\uD800":2}"#, #"{"\uDC00":1,"\uDC00":2}"#, #"{"\uD800\u0041":1}"#, "{\"\u{1}\"",
        ] {
            #expect(duplicate(json) == nil, "\(json)")
        }
        let notUTF8: [UInt8] = [0x7B, 0x22, 0xFF, 0x22, 0x3A, 0x31, 0x2C, 0x22, 0xFF, 0x22, 0x3A, 0x32, 0x7D]
        #expect(notUTF8.withUnsafeBytes { JSONDuplicateKeys.firstDuplicate(in: $0) } == nil)
    }
}
