import Foundation
import KeyholdCore

// MARK: TOTP enrolments (sealed rows of `user_mfa`)

extension SQLStore {
    static let mfa = GrantSeal.table("user_mfa")

    func mfa(_ row: StoredRow) throws -> MFAEnrollment { try seal.verified(row, Self.mfa, StoredRecords.mfa) }

    public func mfaEnrollment(userID: UUID) async throws -> MFAEnrollment? {
        try await database.reading {
            try await $0.first("SELECT * FROM user_mfa WHERE user_id = ?", [.uuid(userID)]).map(self.mfa(_:))
        }
    }

    /// A user removed meanwhile makes the insert fail (the row references the user).
    public func beginMFAEnrollment(_ enrollment: MFAEnrollment, audit: AuditRecord) async throws -> Bool {
        let seal = try self.seal
        return try await database.inTransaction { db in
            if let (_, existing) = try await db.lockedRow(
                Self.mfa, where: "user_id = ?", [.uuid(enrollment.userID)], seal: seal, as: StoredRecords.mfa)
            {
                guard !existing.isEnabled else { return false }
                try await db.query("DELETE FROM user_mfa WHERE user_id = ?", [.uuid(enrollment.userID)])
            }
            try await db.insert(
                Self.mfa,
                [
                    "user_id": .uuid(enrollment.userID), "org_id": .uuid(enrollment.orgID),
                    "secret": .bytes(enrollment.sealedSecret), "enabled_at": .optional(enrollment.enabledAt),
                    "last_step": enrollment.lastStep.map(SQLValue.integer) ?? .null,
                    "recovery_digests": .bytes(Data(enrollment.recoveryDigests.joined())),
                    "created_at": .time(enrollment.createdAt),
                ], seal: seal)
            try await db.append(audit)
            return true
        }
    }

    public func enableMFA(
        userID: UUID, sealedSecret: Data, step: Int64, recoveryDigests: [Data], at: Timestamp, audit: AuditRecord
    ) async throws -> Bool {
        let seal = try self.seal
        return try await database.inTransaction { db in
            guard let (row, enrollment) = try await db.lockedRow(
                Self.mfa, where: "user_id = ?", [.uuid(userID)], seal: seal, as: StoredRecords.mfa),
                !enrollment.isEnabled, enrollment.sealedSecret == sealedSecret
            else { return false }
            try await db.update(
                Self.mfa, row: row,
                set: [
                    "enabled_at": .time(at), "last_step": .integer(step),
                    "recovery_digests": .bytes(Data(recoveryDigests.joined())),
                ], seal: seal)
            try await db.append(audit)
            return true
        }
    }

    public func acceptMFA(
        userID: UUID, proof: MFAProof, sealedSecret: Data, spendingToken: (id: String, expiresAt: Timestamp)?,
        audit: AuditRecord
    ) async throws -> Int? {
        let seal = try self.seal
        return try await database.inTransaction { db -> Int? in
            guard let (row, _, left) = try await db.acceptMFA(userID: userID, proof: proof, sealedSecret: sealedSecret, seal: seal)
            else { return nil }
            if let spendingToken {
                // The row lock above orders two uses of one challenge: the second finds it recorded.
                guard try await db.first("SELECT jti FROM revoked_tokens WHERE jti = ?", [.text(spendingToken.id)]) == nil
                else { return nil }
                try await db.query(
                    "INSERT INTO revoked_tokens (jti, expires_at) VALUES (?, ?)",
                    [.text(spendingToken.id), .time(spendingToken.expiresAt)])
            }
            try await db.record(proof, row: row, left: left, seal: seal)
            try await db.append(audit)
            return left.count
        }
    }

    public func disableMFA(userID: UUID, proof: MFAProof, sealedSecret: Data, audit: AuditRecord) async throws -> Bool {
        let seal = try self.seal
        return try await database.inTransaction { db in
            guard try await db.acceptMFA(userID: userID, proof: proof, sealedSecret: sealedSecret, seal: seal) != nil
            else { return false }
            try await db.query("DELETE FROM user_mfa WHERE user_id = ?", [.uuid(userID)])
            try await db.append(audit)
            return true
        }
    }
}

extension SQLConnection {
    /// The enabled enrolment, locked and verified, when `proof` is acceptable for it: a step later than the last
    /// one accepted, or the digest of an unspent recovery code (compared in constant time). Returns the recovery
    /// digests left once the proof is spent.
    fileprivate func acceptMFA(userID: UUID, proof: MFAProof, sealedSecret: Data, seal: GrantSeal) async throws
        -> (StoredRow, MFAEnrollment, [Data])?
    {
        guard let (row, enrollment) = try await lockedRow(
            SQLStore.mfa, where: "user_id = ?", [.uuid(userID)], seal: seal, as: StoredRecords.mfa),
            enrollment.isEnabled, enrollment.sealedSecret == sealedSecret
        else { return nil }
        switch proof {
        case .totp(let step):
            guard step > (enrollment.lastStep ?? -1) else { return nil }
            return (row, enrollment, enrollment.recoveryDigests)
        case .recovery(let digest):
            var matched: Int?
            for (index, stored) in enrollment.recoveryDigests.enumerated()
            where CredentialHasher.constantTimeEqual(stored, digest) {
                matched = index
            }
            guard let matched else { return nil }
            var left = enrollment.recoveryDigests
            left.remove(at: matched)
            return (row, enrollment, left)
        }
    }

    /// Records an accepted proof: the step as the last one used, or the recovery code as spent.
    fileprivate func record(_ proof: MFAProof, row: StoredRow, left: [Data], seal: GrantSeal)
        async throws
    {
        switch proof {
        case .totp(let step):
            try await update(SQLStore.mfa, row: row, set: ["last_step": .integer(step)], seal: seal)
        case .recovery:
            try await update(SQLStore.mfa, row: row, set: ["recovery_digests": .bytes(Data(left.joined()))], seal: seal)
        }
    }
}
