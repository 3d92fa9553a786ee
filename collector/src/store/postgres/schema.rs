//! Migrations of the PostgreSQL schema. Each version is one SQL file applied in its own
//! transaction and recorded in `schema_migrations(version, applied_ns)`. All of it runs
//! under a session advisory lock, so nodes starting together migrate one after another:
//! the first applies the steps, the others find them applied. A database whose version
//! is newer than [`SCHEMA_VERSION`] belongs to a newer collector and is refused.
use ::postgres::Client;

use crate::store::{StoreError, ns};

/// The schema version this code writes.
pub const SCHEMA_VERSION: i64 = 3;

/// The advisory lock key migrations hold ("cordon" in ASCII). Advisory locks are per
/// database, so databases on one server do not wait for each other.
const LOCK_KEY: i64 = 0x636f_7264_6f6e;

/// Each step migrates from the version before it.
const STEPS: [(i64, &str); 3] = [
    (1, include_str!("schema_v1.sql")),
    (2, include_str!("schema_v2.sql")),
    (3, include_str!("schema_v3.sql")),
];

/// Brings the database to [`SCHEMA_VERSION`] (or refuses a newer one).
pub(super) fn migrate(c: &mut Client) -> Result<(), StoreError> {
    c.execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])?;
    let result = migrate_locked(c);
    // Ending the session would release the lock too; release it now so the others go on.
    let unlocked = c.execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY]);
    result?;
    unlocked?;
    Ok(())
}

fn migrate_locked(c: &mut Client) -> Result<(), StoreError> {
    c.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    BIGINT PRIMARY KEY,
             applied_ns BIGINT NOT NULL
         )",
    )?;
    let found: i64 = c
        .query_one(
            "SELECT COALESCE(max(version), 0) FROM schema_migrations",
            &[],
        )?
        .try_get(0)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (to, sql) in STEPS {
        if found < to {
            let mut tx = c.transaction()?;
            tx.batch_execute(sql)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_ns) VALUES ($1, $2)",
                &[&to, &ns(now_ns())],
            )?;
            tx.commit()?;
            tracing::info!(version = to, "migrated the PostgreSQL schema");
        }
    }
    Ok(())
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
