import Foundation
import KeyholdClient
import Testing

@Suite struct OutputMaskerTests {
    func masked(_ chunks: [String], values: [(name: String, value: String)]) -> String {
        var masker = OutputMasker(values: values)
        var output: [UInt8] = []
        for chunk in chunks { output += masker.feed(Array(chunk.utf8)) }
        output += masker.finish()
        return String(decoding: output, as: UTF8.self)
    }

    @Test func valuesAndTheirEncodedFormsAreReplaced() {
        let value = "s3cr3t/Value+1?"
        let forms = [
            value, Data(value.utf8).base64EncodedString(),
            Data(value.utf8).base64EncodedString().replacingOccurrences(of: "+", with: "-")
                .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: ""),
            value.utf8.map { String(format: "%02x", $0) }.joined(), value.utf8.map { String(format: "%02X", $0) }.joined(),
            "s3cr3t%2FValue%2B1%3F",
        ]
        for form in forms {
            #expect(masked(["before ", form, " after\n"], values: [("TOKEN", value)]) == "before <redacted:TOKEN> after\n", "\(form)")
        }
    }

    @Test func aValueSplitAcrossWritesIsStillMasked() {
        let value = "abcdefgh"
        for split in 1..<value.count {
            let chunks = [String(value.prefix(split)), String(value.dropFirst(split)) + "\n"]
            #expect(masked(["x"] + chunks, values: [("K", value)]) == "x<redacted:K>\n")
        }
    }

    @Test func onlyBytesThatMayStartAValueAreHeldBack() {
        var masker = OutputMasker(values: [("K", "abcdefgh")])
        #expect(String(decoding: masker.feed(Array("line one\n".utf8)), as: UTF8.self) == "line one\n")
        #expect(String(decoding: masker.feed(Array("x abc".utf8)), as: UTF8.self) == "x ")
        #expect(String(decoding: masker.feed(Array("X\n".utf8)), as: UTF8.self) == "abcX\n", "not the value after all")
        #expect(String(decoding: masker.feed(Array("ab".utf8)), as: UTF8.self) == "")
        #expect(String(decoding: masker.finish(), as: UTF8.self) == "ab", "at the end, whatever is pending goes out")
    }

    @Test func theLongestValueWinsAndShortValuesAreLeftAlone() {
        let values = [(name: "SHORT", value: "abcd"), (name: "LONG", value: "abcdefgh"), (name: "TINY", value: "ab1")]
        #expect(masked(["abcdefgh abcd ab1\n"], values: values) == "<redacted:LONG> <redacted:SHORT> ab1\n")
        #expect(masked(["abcd", "efgh\n"], values: values) == "<redacted:LONG>\n")
        #expect(OutputMasker.tooShort(values) == ["TINY"])
    }
}

@Suite struct SecretEnvironmentTests {
    @Test func namesFollowOneClawsCLI() {
        #expect(SecretEnvironment.name(forPath: "api-keys/openai") == "API_KEYS_OPENAI")
        #expect(SecretEnvironment.name(forPath: "db/password.v2") == "DB_PASSWORD_V2")
        #expect(SecretEnvironment.name(forPath: "9lives") == "_9LIVES")
    }

    @Test func bundlesAndDotenvFilesParse() {
        let text = "# comment\n\nexport A=1\nB=\"two words\\n\"\nC='it''s'\n  D = spaced  \nnot a line\n"
        let pairs = SecretEnvironment.parseLines(text)
        #expect(pairs.map(\.0) == ["A", "B", "C", "D"])
        #expect(pairs.map(\.1) == ["1", "two words\n", "it''s", "spaced"])
    }

    @Test func renderingRoundTripsThroughTheParser() throws {
        let variables = [("A", "plain"), ("B", "with \"quotes\" and \\ and\nnewline"), ("C", "it's")]
        let dotenv = try SecretEnvironment.render(variables, as: .dotenv)
        #expect(SecretEnvironment.parseLines(dotenv).map(\.1) == variables.map(\.1))
        #expect(try SecretEnvironment.render([("C", "it's")], as: .shell) == "export C='it'\\''s'\n")
        let json = try SecretEnvironment.render(variables, as: .json)
        let object = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: String]
        #expect(object == ["A": "plain", "B": "with \"quotes\" and \\ and\nnewline", "C": "it's"])
    }

    @Test func referencesAndReservedNames() {
        #expect(SecretEnvironment.reference("keyhold://V1/db/password")! == ("V1", "db/password"))
        #expect(SecretEnvironment.reference("keyhold://V1") == nil)
        #expect(SecretEnvironment.reference("https://x/y") == nil)
        #expect(SecretEnvironment.isReserved("PATH") && SecretEnvironment.isReserved("KEYHOLD_TOKEN"))
        #expect(!SecretEnvironment.isReserved("DATABASE_URL"))
    }
}
