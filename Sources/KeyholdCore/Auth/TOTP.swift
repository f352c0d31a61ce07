import Crypto
import Foundation

/// Time-based one-time passwords (RFC 6238 over RFC 4226's HOTP) as authenticator apps make them: HMAC-SHA1,
/// 6 digits, a 30-second step. A code is checked against the step of `now` and one step either side.
public enum TOTP {
    public static let digits = 6
    public static let period: Int64 = 30
    /// Steps accepted on either side of the current one (clock drift, a code typed at a step's end).
    public static let skew: Int64 = 1
    /// Bytes of a new secret (160 bits, RFC 4226's recommendation for SHA-1).
    public static let secretBytes = 20

    /// The time step of an instant.
    public static func step(at now: Timestamp) -> Int64 {
        Int64((Double(now.milliseconds) / 1000).rounded(.down)) / period
    }

    /// The code of one step (RFC 4226 §5.3: dynamic truncation of HMAC-SHA1 over the big-endian counter), with
    /// `digits` digits, zero-padded.
    public static func code(secret: Data, step: Int64, digits: Int = digits) -> String {
        let counter = withUnsafeBytes(of: UInt64(bitPattern: step).bigEndian) { Data($0) }
        let mac = Array(HMAC<Insecure.SHA1>.authenticationCode(for: counter, using: SymmetricKey(data: secret)))
        let offset = Int(mac[mac.count - 1] & 0x0F)
        let binary =
            UInt32(mac[offset] & 0x7F) << 24 | UInt32(mac[offset + 1]) << 16 | UInt32(mac[offset + 2]) << 8
            | UInt32(mac[offset + 3])
        var modulus: UInt32 = 1
        for _ in 0..<digits { modulus *= 10 }
        let text = String(binary % modulus)
        return String(repeating: "0", count: digits - text.count) + text
    }

    /// Whether `code` has the shape of a TOTP code (exactly `digits` ASCII digits).
    public static func isCodeShaped(_ code: String) -> Bool {
        code.utf8.count == digits && code.utf8.allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }
    }

    /// The latest step within `skew` of `now` whose code is `code`, compared in constant time; nil when none is.
    public static func matchingStep(secret: Data, code: String, at now: Timestamp) -> Int64? {
        guard isCodeShaped(code) else { return nil }
        let current = step(at: now)
        var matched: Int64?
        for candidate in (current - skew)...(current + skew) {
            if CredentialHasher.constantTimeEqual(Data(Self.code(secret: secret, step: candidate).utf8), Data(code.utf8)) {
                matched = candidate
            }
        }
        return matched
    }

    public static func generateSecret() -> Data {
        var generator = SystemRandomNumberGenerator()
        return Data((0..<secretBytes).map { _ in generator.next() })
    }

    /// The `otpauth://` URI authenticator apps read (Google Authenticator's key URI format), with the parameters
    /// spelled out so apps that ignore defaults agree.
    public static func provisioningURI(secret: Data, account: String, issuer: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~@")
        func escape(_ text: String) -> String { text.addingPercentEncoding(withAllowedCharacters: allowed) ?? "" }
        return "otpauth://totp/\(escape(issuer)):\(escape(account))?secret=\(Base32.encode(secret))&issuer=\(escape(issuer))"
            + "&algorithm=SHA1&digits=\(digits)&period=\(period)"
    }
}

/// RFC 4648 base32 without padding, as TOTP secrets are written.
public enum Base32 {
    static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567".utf8)

    public static func encode(_ data: Data) -> String {
        var output: [UInt8] = []
        var buffer: UInt32 = 0
        var bits = 0
        for byte in data {
            buffer = buffer << 8 | UInt32(byte)
            bits += 8
            while bits >= 5 {
                output.append(alphabet[Int(buffer >> UInt32(bits - 5) & 0x1F)])
                bits -= 5
            }
        }
        if bits > 0 { output.append(alphabet[Int(buffer << UInt32(5 - bits) & 0x1F)]) }
        return String(decoding: output, as: UTF8.self)
    }

    /// Decodes upper- or lower-case base32 without padding; nil for any other character.
    public static func decode(_ text: String) -> Data? {
        var output = Data()
        var buffer: UInt32 = 0
        var bits = 0
        for character in text.uppercased().utf8 {
            guard let value = alphabet.firstIndex(of: character) else { return nil }
            buffer = buffer << 5 | UInt32(value)
            bits += 5
            if bits >= 8 {
                output.append(UInt8(buffer >> UInt32(bits - 8) & 0xFF))
                bits -= 8
            }
        }
        return output
    }
}

/// Single-use recovery codes: 10 characters of a lower-case base32 alphabet (50 bits), shown as `xxxxx-xxxxx`.
public enum RecoveryCode {
    public static let count = 8

    public static func generate() -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz234567")
        var generator = SystemRandomNumberGenerator()
        let characters = (0..<10).map { _ in alphabet[Int(generator.next(upperBound: UInt32(alphabet.count)))] }
        return String(characters[0..<5]) + "-" + String(characters[5..<10])
    }

    /// The code as it is digested: lower case, without dashes and spaces; nil when it cannot be one.
    public static func normalized(_ code: String) -> String? {
        let text = code.lowercased().filter { $0 != "-" && $0 != " " }
        guard text.count == 10, text.allSatisfy({ ("a"..."z").contains($0) || ("2"..."7").contains($0) }) else {
            return nil
        }
        return text
    }
}
