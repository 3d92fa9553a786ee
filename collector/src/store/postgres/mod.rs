//! The cluster backend: PostgreSQL, shared by every collector node. Same tables, same
//! results, same refusals and audit rows as the SQLite backend (one test suite runs on
//! both, `store::tests`), with what several writers need on top:
//!
//! - Versioned migrations (`schema_v1.sql`, …) recorded in `schema_migrations`, run under
//!   an advisory lock so nodes that start together migrate exactly once; a database newer
//!   than this code is refused ([`StoreError::TooNew`]).
//! - Flow batches are written with one binary `COPY` per group (`ingest`), with the host
//!   rows locked (`FOR UPDATE`, in id order, so two nodes never deadlock) for the
//!   sequence check; playbook runs are claimed with `FOR UPDATE SKIP LOCKED`.
//! - Changes other nodes must hear about send a `NOTIFY` inside their transaction (so it
//!   is delivered at commit only): see [`listen`] for the channels and [`PgListener`].
//! - What only a cluster needs: Kafka consumer offsets committed in the same transaction
//!   as the batches ([`PgStore::store_consumed`]) and the collector CA every node shares
//!   ([`PgStore::put_ca_if_absent`]).
//!
//! The interface is synchronous, like SQLite's: the blocking client of rust-postgres runs
//! its own small runtime, so a `PgStore` must be used from a plain thread, never from a
//! tokio runtime thread. It keeps one connection and opens it again by itself when it was
//! lost; while PostgreSQL is down, calls fail at once with an error for which
//! [`StoreError::is_unavailable`] is true. Connections are plain TCP or a Unix socket (no
//! TLS yet).
mod alerts;
mod ca;
mod cluster;
mod commands;
pub(crate) mod conn;
mod consumer;
mod flows;
mod hosts;
mod ingest;
mod learn;
pub mod listen;
mod policies;
mod runs;
mod schema;
mod tokens;

use std::cell::RefCell;

use ::postgres::{Client, GenericClient, Transaction};

pub use conn::PgConfig;
use conn::{Conn, Statements};
pub use listen::{Notice, PgListener};
pub use schema::SCHEMA_VERSION;

use super::StoreError;

#[cfg(test)]
pub(crate) use alerts::OUTBOX_LOCK_KEY;

/// The store on PostgreSQL: one connection, opened again when it was lost.
pub struct PgStore {
    /// In a `RefCell` because reads take `&self`; a store is used by one thread at a time
    /// (it is `Send`, not `Sync`, and lives behind the collector's mutex).
    conn: RefCell<Conn>,
}

impl PgStore {
    /// Connects to the database `cfg` names and migrates it to this code's schema (or
    /// refuses one that is newer).
    pub fn connect(cfg: &PgConfig) -> Result<Self, StoreError> {
        let mut conn = Conn::open(cfg)?;
        conn.run(|c, _| schema::migrate(c))?;
        Ok(Self {
            conn: RefCell::new(conn),
        })
    }

    /// Runs `f` on the connection, for calls that take `&self`.
    fn with<T>(
        &self,
        f: impl FnOnce(&mut Client, &mut Statements) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.conn
            .try_borrow_mut()
            .map_err(|_| StoreError::Reentrant)?
            .run(f)
    }

    /// Runs `f` on the connection, for calls that take `&mut self`.
    fn with_mut<T>(
        &mut self,
        f: impl FnOnce(&mut Client, &mut Statements) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.conn.get_mut().run(f)
    }

    /// Runs `f` in a transaction that commits when `f` returns `Ok` and rolls back when it
    /// returns an error.
    fn tx<T>(
        &mut self,
        f: impl FnOnce(&mut Transaction<'_>, &mut Statements) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.with_mut(|c, st| {
            let mut tx = c.transaction()?;
            let out = f(&mut tx, st)?;
            tx.commit()?;
            Ok(out)
        })
    }
}

/// Sends `payload` on `channel` when the transaction commits.
fn notify(c: &mut impl GenericClient, channel: &str, payload: &str) -> Result<(), StoreError> {
    c.execute("SELECT pg_notify($1, $2)", &[&channel, &payload])?;
    Ok(())
}

/// Appends to the audit log inside the caller's transaction.
fn audit_in(
    c: &mut impl GenericClient,
    actor: &str,
    action: &str,
    target: &str,
    detail: &serde_json::Value,
    now_ns: u64,
) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO audit (ts_ns, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5)",
        &[
            &super::ns(now_ns),
            &actor,
            &action,
            &target,
            &detail.to_string(),
        ],
    )?;
    Ok(())
}

/// The JSON kept in a TEXT column (`null` if it does not parse, as the SQLite backend).
fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or(serde_json::Value::Null)
}

/// Text an agent sent, as PostgreSQL can store it: TEXT cannot hold NUL, which SQLite
/// keeps; it becomes U+FFFD instead of failing the whole group commit.
fn text(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') {
        std::borrow::Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// A row limit as SQL wants it.
fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
