import Crypto
import Foundation

/// The `next_cursor` of a secret list: where the next page starts, sealed with AES-256-GCM under a server key and
/// bound to the vault, the caller and the list's prefix. The position may be a path the caller cannot read (the scan stops where its
/// budget ends), so the cursor reveals nothing: the plaintext is padded to the longest path, so not even its length
/// shows, and a cursor that was altered, or is used on another vault, by another caller or with another prefix, is
/// refused.
public struct ListCursor: Sendable {
    let key: SymmetricKey

    public init(key: SymmetricKey) { self.key = key }

    /// A length byte pair and the path, padded with zeros to the longest path.
    static let plaintextLength = 2 + SecretPath.maxLength
    static let invalid = KeyholdError.badRequest("cursor is not a cursor of this list; start again without it")

    static func binding(vaultID: UUID, principal: Principal, prefix: String) -> Data {
        Data("keyhold list cursor v1|\(vaultID.wire)|\(principal.kind.rawValue):\(principal.id.wire)|\(prefix)".utf8)
    }

    public func seal(_ position: String, vaultID: UUID, for principal: Principal, prefix: String = "") throws -> String {
        let bytes = Array(position.utf8)
        precondition(bytes.count <= SecretPath.maxLength, "a list position is a stored path")
        var plaintext = [UInt8(bytes.count >> 8), UInt8(bytes.count & 0xFF)] + bytes
        plaintext += [UInt8](repeating: 0, count: Self.plaintextLength - plaintext.count)
        let box = try AES.GCM.seal(
            plaintext, using: key, authenticating: Self.binding(vaultID: vaultID, principal: principal, prefix: prefix))
        guard let combined = box.combined else { throw KeyholdError.internalError("AES-GCM gave no combined box") }
        return combined.base64URLEncodedString()
    }

    /// The position a cursor of this vault and caller names; 400 for anything else.
    public func open(_ cursor: String, vaultID: UUID, for principal: Principal, prefix: String = "") throws -> String {
        guard cursor.utf8.count <= 1024, let combined = Data(base64URL: cursor),
            let box = try? AES.GCM.SealedBox(combined: combined),
            let plaintext = try? AES.GCM.open(
                box, using: key, authenticating: Self.binding(vaultID: vaultID, principal: principal, prefix: prefix)),
            plaintext.count == Self.plaintextLength
        else { throw Self.invalid }
        let bytes = [UInt8](plaintext)
        let length = Int(bytes[0]) << 8 | Int(bytes[1])
        guard length <= SecretPath.maxLength, let position = String(validating: bytes[2..<(2 + length)], as: UTF8.self)
        else { throw Self.invalid }
        return position
    }
}
