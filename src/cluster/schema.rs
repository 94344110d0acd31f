//! The state database's schema `pgmoat`: versioned migrations, applied on start.
//!
//! Several nodes may start at once against an empty database, so the whole migration
//! runs in one transaction under a transaction-level advisory lock: the first node
//! creates and migrates, the others wait for it and then find nothing left to do. A
//! database migrated by a newer pgmoat (a version this build does not know) is an
//! error: an older node must not write rows whose meaning changed under it.

use tokio_postgres::Client;

use super::StateError;

/// Advisory lock key for migrations (`'pgmoat.migrate'` as eight bytes).
const MIGRATE_LOCK: i64 = 0x7067_6d6f_6174_6d69;

/// Migration `i` brings the schema from version `i` to `i + 1`. Append only: never
/// edit one that has shipped.
const MIGRATIONS: &[&str] = &[
    // 1: the control plane's first tables.
    "CREATE TABLE pgmoat.nodes (
        node text PRIMARY KEY,
        started_at timestamptz NOT NULL DEFAULT now(),
        heartbeat_at timestamptz NOT NULL DEFAULT now(),
        sessions integer NOT NULL DEFAULT 0
    );
    CREATE TABLE pgmoat.approvals (
        id text PRIMARY KEY,
        tenant text NOT NULL,
        node text NOT NULL,
        identity text NOT NULL,
        groups text[] NOT NULL,
        target text NOT NULL,
        sql text NOT NULL,
        params text[] NOT NULL,
        rule text NOT NULL,
        approvers text[] NOT NULL,
        fingerprint bytea NOT NULL,
        requested_at timestamptz NOT NULL,
        expires_at timestamptz NOT NULL,
        state text NOT NULL DEFAULT 'pending'
            CHECK (state IN ('pending', 'approved', 'denied', 'expired', 'withdrawn')),
        decided_by text,
        reason text,
        grant_until timestamptz,
        decided_at timestamptz
    );
    CREATE INDEX approvals_pending ON pgmoat.approvals (node) WHERE state = 'pending';
    CREATE TABLE pgmoat.login_failures (
        tenant text NOT NULL,
        address inet NOT NULL,
        window_start timestamptz NOT NULL,
        failures integer NOT NULL,
        PRIMARY KEY (tenant, address)
    );
    CREATE TABLE pgmoat.audit_heads (
        node text NOT NULL,
        tenant text NOT NULL,
        seq bigint NOT NULL,
        hash text NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (node, tenant)
    );",
    // 2: which front door asked (postgres, mcp, ssh, http).
    "ALTER TABLE pgmoat.approvals ADD COLUMN front_door text NOT NULL DEFAULT 'postgres';",
];

/// The schema version this build writes.
pub const VERSION: i32 = MIGRATIONS.len() as i32;

/// Create schema `pgmoat` if needed and apply every migration it lacks.
pub async fn migrate(client: &mut Client) -> Result<i32, StateError> {
    let tx = client.transaction().await.map_err(StateError::db)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])
        .await
        .map_err(StateError::db)?;
    tx.batch_execute(
        "CREATE SCHEMA IF NOT EXISTS pgmoat;
         CREATE TABLE IF NOT EXISTS pgmoat.migrations (
             version integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         );",
    )
    .await
    .map_err(StateError::db)?;
    let row = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM pgmoat.migrations",
            &[],
        )
        .await
        .map_err(StateError::db)?;
    let current: i32 = row.get(0);
    if current > VERSION {
        return Err(StateError::Schema(format!(
            "the state database's schema is at version {current}, newer than this pgmoat's {VERSION}: upgrade pgmoat"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = i as i32 + 1;
        tx.batch_execute(sql).await.map_err(|e| {
            StateError::Schema(format!("migration {version}: {}", super::db_message(&e)))
        })?;
        tx.execute(
            "INSERT INTO pgmoat.migrations (version) VALUES ($1)",
            &[&version],
        )
        .await
        .map_err(StateError::db)?;
    }
    tx.commit().await.map_err(StateError::db)?;
    Ok(VERSION)
}
