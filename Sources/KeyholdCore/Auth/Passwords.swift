import Crypto
import Foundation
import HummingbirdBcrypt
import NIOPosix

/// 1Claw's password rules: at least 12 characters with an upper-case letter, a lower-case letter, a digit and a
/// special character, no character three times in a row and no three-character ascending run (`abc`, `123`).
public enum PasswordPolicy {
    public static let minimumLength = 12
    public static let maximumLength = 1024

    public static func validate(_ password: String) throws {
        let characters = Array(password)
        guard characters.count >= minimumLength else {
            throw KeyholdError.badRequest("Password must be at least \(minimumLength) characters")
        }
        guard characters.count <= maximumLength else {
            throw KeyholdError.badRequest("Password must be at most \(maximumLength) characters")
        }
        guard characters.contains(where: \.isUppercase) else {
            throw KeyholdError.badRequest("Password must contain an upper-case letter")
        }
        guard characters.contains(where: \.isLowercase) else {
            throw KeyholdError.badRequest("Password must contain a lower-case letter")
        }
        guard characters.contains(where: { $0.isASCII && $0.isNumber }) else {
            throw KeyholdError.badRequest("Password must contain a digit")
        }
        guard characters.contains(where: { !$0.isLetter && !$0.isNumber && !$0.isWhitespace }) else {
            throw KeyholdError.badRequest("Password must contain a special character")
        }
        let scalars = password.lowercased().unicodeScalars.map(\.value)
        if scalars.count >= 3 {
            for index in 2..<scalars.count {
                let (a, b, c) = (scalars[index - 2], scalars[index - 1], scalars[index])
                if a == b && b == c {
                    throw KeyholdError.badRequest("Password must not repeat a character three times in a row")
                }
                if b == a &+ 1 && c == b &+ 1, Self.isAlphanumeric(a), Self.isAlphanumeric(c) {
                    throw KeyholdError.badRequest("Password must not contain three sequential characters such as 'abc' or '123'")
                }
            }
        }
    }

    private static func isAlphanumeric(_ scalar: UInt32) -> Bool {
        (0x30...0x39).contains(scalar) || (0x61...0x7A).contains(scalar)
    }
}

/// bcrypt on NIO's blocking thread pool, never on an event loop or the cooperative pool. The password is
/// pre-hashed with SHA-256 (base64) so that bcrypt's 72-byte limit never truncates a long passphrase.
public struct PasswordHasher: Sendable {
    public let cost: UInt8
    private let threadPool: NIOThreadPool
    /// A hash of nothing anyone knows, verified when an email is unknown so that both failures take as long.
    private let decoyHash: String

    public init(cost: UInt8, threadPool: NIOThreadPool = .singleton) {
        self.cost = cost
        self.threadPool = threadPool
        self.decoyHash = Bcrypt.hash(Self.prehash(UUID().uuidString), cost: cost)
    }

    public func hash(_ password: String) async throws -> String {
        let cost = self.cost
        return try await threadPool.runIfActive { Bcrypt.hash(Self.prehash(password), cost: cost) }
    }

    /// Verifies against `hash`, or against the decoy when `hash` is nil (and then answers false).
    public func verify(_ password: String, hash: String?) async throws -> Bool {
        let target = hash ?? decoyHash
        let matches = try await threadPool.runIfActive { Bcrypt.verify(Self.prehash(password), hash: target) }
        return matches && hash != nil
    }

    static func prehash(_ password: String) -> String {
        Data(SHA256.hash(data: Data(password.utf8))).base64EncodedString()
    }
}
