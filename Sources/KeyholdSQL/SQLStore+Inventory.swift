import Foundation
import KeyholdCore

extension SQLStore {
    /// What a backup or a restored database is checked against (see `StoreVerification`): read in one pass, each
    /// query a plain read (a live store may move on between them; the checks stop at the heads read here).
    public func inventory() async throws -> StorageInventory {
        let statistics = try await statistics()
        let systemValues = try await allSystemValues()
        return try await database.reading { db in
            let schema = try await db.first("SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations")
                .map { try StoredFields($0, table: "schema_migrations").count("v") } ?? 0
            var heads: [UUID: AuditHead] = [:]
            // PostgreSQL keeps a placeholder head (seq 0, no event) for an org without events.
            for row in try await db.query("SELECT * FROM audit_heads WHERE seq > 0 AND event_id IS NOT NULL", []) {
                heads[try StoredFields(row, table: "audit_heads").uuid("org_id")] = try StoredRecords.auditHead(row)
            }
            var chains: [UUID: StorageInventory.ChainExtent] = [:]
            for row in try await db.query(
                "SELECT org_id, COUNT(*) AS events, MAX(seq) AS last FROM audit_events GROUP BY org_id", [])
            {
                let fields = StoredFields(row, table: "audit_events")
                chains[try fields.uuid("org_id")] = .init(events: try fields.count("events"), lastSequence: try fields.int("last"))
            }
            // One data key per KEK, from a secret version or a variable it wraps (both columns are indexed).
            let keys = try await db.query(
                """
                SELECT k.id, k.material,
                    (SELECT v.wrapped_dek FROM secret_versions v WHERE v.kek_id = k.id LIMIT 1) AS version_key,
                    (SELECT e.wrapped_dek FROM env_vars e WHERE e.kek_id = k.id LIMIT 1) AS variable_key
                FROM keks k ORDER BY k.id
                """, []
            ).map { row in
                let fields = StoredFields(row, table: "keks")
                return StorageInventory.KeySample(
                    kek: try StoredRecords.kek(row),
                    wrappedDataKey: try fields.optionalBytes("version_key") ?? fields.optionalBytes("variable_key"))
            }
            return StorageInventory(
                schemaVersion: schema, statistics: statistics, auditHeads: heads, auditChains: chains, keys: keys,
                systemValues: systemValues)
        }
    }
}
