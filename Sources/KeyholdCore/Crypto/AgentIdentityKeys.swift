import Crypto
import Foundation

/// An agent's identity keys (contract §1.6; 1Claw's `docs/security/agent-keys.md`): an Ed25519 keypair for SSH and
/// signatures and a P-256 keypair for ECDH, made by the server when the agent is created or its keys are rotated.
/// The public halves are on the agent's record; the private halves are stored as secrets of the org's
/// `__agent-keys` vault and never kept anywhere else.
///
/// Encodings: `sshPublicKey` is OpenSSH's one-line form (`ssh-ed25519 AAAA…`), `ecdhPublicKey` base64 of the
/// uncompressed SEC1 point (65 bytes, `0x04 ‖ X ‖ Y`, as 1Claw's `AgentResponse` describes it); the SSH private key is
/// an unencrypted OpenSSH private key (`-----BEGIN OPENSSH PRIVATE KEY-----`, what `ssh -i` and `ssh-keygen` read),
/// the ECDH private key PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
public struct AgentIdentityKeys: Sendable {
    public let sshPublicKey: String
    public let ecdhPublicKey: String
    public let sshPrivateKey: String
    public let ecdhPrivateKey: String

    /// Where the private keys live in the org's `__agent-keys` vault.
    public static func sshPath(_ agentID: UUID) -> String { "agents/\(agentID.wire)/ssh/private_key" }
    public static func ecdhPath(_ agentID: UUID) -> String { "agents/\(agentID.wire)/ecdh/private_key" }
    /// The glob of the agent's own policy on that vault.
    public static func ownPattern(_ agentID: UUID) -> String { "agents/\(agentID.wire)/**" }

    /// Fresh keypairs; `comment` names the key in its OpenSSH private key (the agent's id).
    public static func generate(comment: String) -> AgentIdentityKeys {
        let signing = Curve25519.Signing.PrivateKey()
        let agreement = P256.KeyAgreement.PrivateKey()
        let checkint = UInt32.random(in: .min ... .max)
        return AgentIdentityKeys(
            sshPublicKey: openSSHPublicKey(signing.publicKey.rawRepresentation),
            ecdhPublicKey: agreement.publicKey.x963Representation.base64EncodedString(),
            sshPrivateKey: openSSHPrivateKey(
                seed: signing.rawRepresentation, publicKey: signing.publicKey.rawRepresentation, comment: comment,
                checkint: checkint),
            ecdhPrivateKey: agreement.pemRepresentation)
    }

    /// `ssh-ed25519 <base64 of the key blob>`: the blob is `string "ssh-ed25519" ‖ string key` (RFC 8709).
    public static func openSSHPublicKey(_ raw: Data) -> String {
        "ssh-ed25519 " + publicKeyBlob(raw).base64EncodedString()
    }

    static func publicKeyBlob(_ raw: Data) -> Data {
        var blob = Data()
        appendString(Data("ssh-ed25519".utf8), to: &blob)
        appendString(raw, to: &blob)
        return blob
    }

    /// OpenSSH's `openssh-key-v1` format, unencrypted (PROTOCOL.key): the magic, cipher and KDF `none`, one public
    /// key, then the private section (two equal check integers, the key type, public key, seed ‖ public key and
    /// comment, padded with 1, 2, 3 … to a multiple of 8), base64 in lines of 70 between the armour lines.
    public static func openSSHPrivateKey(seed: Data, publicKey: Data, comment: String, checkint: UInt32) -> String {
        var privateSection = Data()
        appendUInt32(checkint, to: &privateSection)
        appendUInt32(checkint, to: &privateSection)
        appendString(Data("ssh-ed25519".utf8), to: &privateSection)
        appendString(publicKey, to: &privateSection)
        appendString(seed + publicKey, to: &privateSection)
        appendString(Data(comment.utf8), to: &privateSection)
        var pad: UInt8 = 1
        while privateSection.count % 8 != 0 {
            privateSection.append(pad)
            pad += 1
        }
        var body = Data("openssh-key-v1".utf8) + Data([0])
        appendString(Data("none".utf8), to: &body)
        appendString(Data("none".utf8), to: &body)
        appendString(Data(), to: &body)
        appendUInt32(1, to: &body)
        appendString(publicKeyBlob(publicKey), to: &body)
        appendString(privateSection, to: &body)
        let encoded = body.base64EncodedString()
        var lines: [String] = []
        var index = encoded.startIndex
        while index < encoded.endIndex {
            let end = encoded.index(index, offsetBy: 70, limitedBy: encoded.endIndex) ?? encoded.endIndex
            lines.append(String(encoded[index..<end]))
            index = end
        }
        return (["-----BEGIN OPENSSH PRIVATE KEY-----"] + lines + ["-----END OPENSSH PRIVATE KEY-----"])
            .joined(separator: "\n") + "\n"
    }

    private static func appendUInt32(_ value: UInt32, to data: inout Data) {
        withUnsafeBytes(of: value.bigEndian) { data.append(contentsOf: $0) }
    }

    private static func appendString(_ bytes: Data, to data: inout Data) {
        appendUInt32(UInt32(bytes.count), to: &data)
        data.append(bytes)
    }
}

/// Public keys an agent had before a rotation: kept on its record so that peers can still check what it signed or
/// sealed with them.
public struct AgentIdentityKey: Sendable, Hashable {
    public let sshPublicKey: String
    public let ecdhPublicKey: String
    public let createdAt: Timestamp
    public let retiredAt: Timestamp

    public init(sshPublicKey: String, ecdhPublicKey: String, createdAt: Timestamp, retiredAt: Timestamp) {
        self.sshPublicKey = sshPublicKey
        self.ecdhPublicKey = ecdhPublicKey
        self.createdAt = createdAt
        self.retiredAt = retiredAt
    }

    /// Stored form: a JSON object (times in milliseconds).
    public var json: JSONValue {
        .object([
            "ssh_public_key": .string(sshPublicKey), "ecdh_public_key": .string(ecdhPublicKey),
            "created_at": .number(Double(createdAt.milliseconds)), "retired_at": .number(Double(retiredAt.milliseconds)),
        ])
    }

    /// The stored form read back; nil unless it has exactly these fields with these types.
    public init?(json: JSONValue) {
        guard case .object(let object) = json, object.count == 4,
            case .string(let ssh)? = object["ssh_public_key"], case .string(let ecdh)? = object["ecdh_public_key"],
            case .number(let created)? = object["created_at"], case .number(let retired)? = object["retired_at"],
            let createdMS = Int64(exactly: created), let retiredMS = Int64(exactly: retired)
        else { return nil }
        self.init(
            sshPublicKey: ssh, ecdhPublicKey: ecdh, createdAt: Timestamp(milliseconds: createdMS),
            retiredAt: Timestamp(milliseconds: retiredMS))
    }
}
