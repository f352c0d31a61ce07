import Foundation

/// Replaces secret values in a byte stream with `<redacted:NAME>`, as the bytes arrive. Each value is matched as it
/// is and in the forms a program commonly prints it in: base64 (padded), base64url (unpadded), lower- and upper-case
/// hex, and URL-encoded. A value split across two writes is still caught: bytes that could be the start of a value
/// are held back until the next write shows whether they are, and only those bytes, so a line that cannot be part
/// of a value goes out as soon as it is written.
public struct OutputMasker: Sendable {
    struct Pattern: Sendable {
        let bytes: [UInt8]
        let replacement: [UInt8]
    }

    /// Values shorter than this are not masked: they would match everywhere.
    public static let minimumLength = 4

    /// Patterns by first byte, longest first.
    private let patterns: [UInt8: [Pattern]]
    private var pending: [UInt8] = []

    /// `values`: variable names and their values.
    public init(values: [(name: String, value: String)]) {
        var table: [UInt8: [Pattern]] = [:]
        for (name, value) in values where value.utf8.count >= Self.minimumLength {
            let replacement = Array("<redacted:\(name)>".utf8)
            for form in Self.forms(of: Array(value.utf8)) {
                table[form[0], default: []].append(Pattern(bytes: form, replacement: replacement))
            }
        }
        patterns = table.mapValues { $0.sorted { $0.bytes.count > $1.bytes.count } }
    }

    public static func tooShort(_ values: [(name: String, value: String)]) -> [String] {
        values.filter { !$0.value.isEmpty && $0.value.utf8.count < minimumLength }.map(\.name)
    }

    /// The value and its encodings, each once.
    static func forms(of value: [UInt8]) -> [[UInt8]] {
        let data = Data(value)
        let base64 = data.base64EncodedString()
        let base64URL = base64.replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
        let hex = value.map { String(format: "%02x", $0) }.joined()
        var unreserved = CharacterSet.alphanumerics
        unreserved.insert(charactersIn: "-._~")
        let urlEncoded = String(decoding: value, as: UTF8.self).addingPercentEncoding(withAllowedCharacters: unreserved)
        var forms: [[UInt8]] = [value]
        for form in [base64, base64URL, hex, hex.uppercased(), urlEncoded].compactMap({ $0 }) {
            let bytes = Array(form.utf8)
            if !forms.contains(bytes) { forms.append(bytes) }
        }
        return forms
    }

    public var isEmpty: Bool { patterns.isEmpty }

    /// The masked bytes that can be written now; bytes that may begin a value stay pending.
    public mutating func feed(_ chunk: some Collection<UInt8>) -> [UInt8] {
        pending.append(contentsOf: chunk)
        return drain(final: false)
    }

    /// Everything still pending, at the end of the stream.
    public mutating func finish() -> [UInt8] { drain(final: true) }

    private mutating func drain(final: Bool) -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(pending.count)
        var index = 0
        scan: while index < pending.count {
            if let candidates = patterns[pending[index]] {
                let available = pending.count - index
                // Longest first: a longer value that the next write may complete wins over a shorter one here.
                for pattern in candidates {
                    if pattern.bytes.count <= available {
                        if pending[index..<(index + pattern.bytes.count)].elementsEqual(pattern.bytes) {
                            output += pattern.replacement
                            index += pattern.bytes.count
                            continue scan
                        }
                    } else if !final, pending[index...].elementsEqual(pattern.bytes.prefix(available)) {
                        break scan
                    }
                }
            }
            output.append(pending[index])
            index += 1
        }
        pending.removeFirst(index)
        return output
    }
}
