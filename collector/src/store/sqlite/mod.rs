//! The embedded backend: SQLite in WAL mode in the collector's data directory, with
//! `synchronous = FULL`, so a committed batch is on disk. The collector opens several
//! connections to one file (ingest, API, outputs, playbooks); writers take the lock at the
//! start of their transaction (`BEGIN IMMEDIATE`) and wait for one another.
mod alerts;
mod cluster;
mod commands;
mod flows;
mod hosts;
mod learn;
mod policies;
mod runs;
mod tokens;

use std::path::Path;

use rusqlite::Connection;

use super::StoreError;

const SCHEMA_VERSION: i64 = 10;

pub struct SqliteStore {
    conn: Connection,
}

impl SqliteStore {
    /// A transaction that takes the write lock at once (BEGIN IMMEDIATE). The store has
    /// several connections (ingest, API, outputs); a deferred transaction that reads and
    /// then writes fails with "database is locked" without waiting when another connection
    /// committed in between, while an immediate one waits for the lock (busy timeout).
    fn write_tx(&mut self) -> Result<rusqlite::Transaction<'_>, StoreError> {
        Ok(self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?)
    }

    /// Opens (creating and migrating) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::init(Connection::open(path)?)
    }

    /// An in-memory store, for tests.
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Self, StoreError> {
        // Another connection (the API's, or ingest's) may hold the write lock briefly.
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        // Each step migrates from the version before it, in its own transaction.
        let steps: [(i64, &str); 10] = [
            (1, include_str!("schema.sql")),
            (2, include_str!("schema_v2.sql")),
            (3, include_str!("schema_v3.sql")),
            (4, include_str!("schema_v4.sql")),
            (5, include_str!("schema_v5.sql")),
            (6, include_str!("schema_v6.sql")),
            (7, include_str!("schema_v7.sql")),
            (8, include_str!("schema_v8.sql")),
            (9, include_str!("schema_v9.sql")),
            (10, include_str!("schema_v10.sql")),
        ];
        for (to, sql) in steps {
            if version < to {
                let tx = conn.unchecked_transaction()?;
                tx.execute_batch(sql)?;
                tx.pragma_update(None, "user_version", to)?;
                tx.commit()?;
            }
        }
        Ok(Self { conn })
    }
}
