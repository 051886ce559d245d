//! Applies `migrations/*.sql` in version order with refinery, recorded in its
//! `refinery_schema_history` table, one migrator at a time.

use sha2::{Digest, Sha256};

use crate::db::Database;
use crate::StoreError;

mod sql {
    // The path is relative to this crate's manifest directory. The files are read at
    // compile time: the crate must be rebuilt to pick up a new migration file.
    refinery::embed_migrations!("../migrations");
}

/// The advisory lock serialising migrators on one database (`berth_mig` in ASCII), so
/// two replicas or test processes starting together do not race on the same DDL.
const MIGRATION_LOCK: i64 = 0x6265_7274_685f_6d69;

/// Applies every pending migration to `db` and returns how many were applied.
///
/// Holds a session advisory lock on a dedicated connection for the whole run; a
/// concurrent caller waits, then finds nothing left to do. Refuses to run when the
/// database holds a migration this build does not know, or one whose contents differ.
#[tracing::instrument(skip_all)]
pub async fn run(db: &Database) -> Result<usize, StoreError> {
    let mut client = db.connect().await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let outcome = sql::migrations::runner()
        .run_async(&mut client)
        .await
        .map_err(|e| StoreError::Migration(e.to_string()));
    // Also released when the connection closes, but the client may outlive an error.
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    let report = outcome?;
    unlocked?;
    let applied = report.applied_migrations();
    for migration in applied {
        tracing::info!(migration = %migration, "applied migration");
    }
    if applied.is_empty() {
        tracing::debug!("schema is up to date");
    }
    Ok(applied.len())
}

/// The migrations built into this binary, as `(version, name)` in application order.
pub fn embedded_versions() -> Vec<(i64, String)> {
    let mut migrations = sql::migrations::runner().get_migrations().clone();
    migrations.sort();
    migrations
        .iter()
        .map(|m| (i64::from(m.version()), m.name().to_owned()))
        .collect()
}

/// A short hex digest of every built-in migration's version, name and SQL: equal
/// fingerprints mean identical schemas (tests key their template database by it).
pub fn fingerprint() -> String {
    let mut migrations = sql::migrations::runner().get_migrations().clone();
    migrations.sort();
    let mut hasher = Sha256::new();
    for m in &migrations {
        hasher.update(i64::from(m.version()).to_be_bytes());
        hasher.update(m.name().as_bytes());
        hasher.update([0]);
        hasher.update(m.sql().unwrap_or_default().as_bytes());
        hasher.update([0]);
    }
    hex::encode(&hasher.finalize()[..8])
}
