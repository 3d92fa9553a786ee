//! The embedded store: SQLite in WAL mode in the collector's data directory.
//!
//! A flow batch is stored in one transaction together with the agent's new sequence
//! number, with `synchronous = FULL`, so when [`Store::store_batch`] returns the batch is on
//! disk and may be acknowledged. A batch whose sequence number is not above the stored one
//! is a resend (the agent did not see the ack) and is acknowledged without storing twice.
mod alerts;
mod commands;
mod flows;
mod hosts;
mod learn;
mod policies;
mod runs;
mod tokens;

use std::path::Path;

use cordon_wire::{Direction, FlowBatch, FlowEvent, Proto, Verdict};
use rusqlite::{Connection, OptionalExtension, params};

pub use alerts::{AlertFilter, AlertRow};
pub use commands::{AuditRow, CommandRow, HostEnforcement, NewCommand};
pub use flows::{FlowFilter, FlowRow, MAX_LIMIT as MAX_FLOW_LIMIT};
pub use hosts::HostRow;
pub use learn::{Approvals, FlowObservation, LearnHost};
pub use policies::{PolicyRow, PublishRefusal};
pub use runs::{ApprovalRow, Next, RunRow, RunStepRow, StepRecord};
pub use tokens::{Scope, TokenInfo, TokenRefusal};

const SCHEMA_VERSION: i64 = 6;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("database schema version {found} is newer than this collector's ({supported})")]
    TooNew { found: i64, supported: i64 },
    #[error("unknown agent `{0}`")]
    UnknownAgent(String),
}

pub struct Store {
    conn: Connection,
}

/// One edge of a host's conversation graph.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conversation {
    pub direction: String,
    pub proto: String,
    pub remote_ip: String,
    /// The service port: the remote one for outbound flows, the local one for inbound.
    pub port: u16,
    /// Empty when the process was unknown.
    pub exe: String,
    /// Flows started on this edge.
    pub flows: u64,
}

/// The compliance verdict of one flow record.
#[derive(Clone, Debug, PartialEq)]
pub struct Judged {
    /// permitted, escaped or rejected.
    pub verdict: &'static str,
    pub rule: String,
    pub version: i64,
    pub severity: crate::policy::Severity,
}

/// Record-judging function: `(agent id, record)` → verdict, `None` when no policy applies.
pub type JudgeFn<'a> = dyn FnMut(&str, &cordon_wire::FlowRecord) -> Option<Judged> + 'a;

/// How `store_batches` judges records and raises alerts.
pub struct Compliance<'a> {
    pub judge: Option<&'a mut JudgeFn<'a>>,
    pub settings: &'a crate::alerts::AlertSettings,
    pub now_ns: u64,
    /// Alert occurrences raised (out).
    pub raised: u64,
}

static NO_SETTINGS: std::sync::LazyLock<crate::alerts::AlertSettings> =
    std::sync::LazyLock::new(Default::default);

impl Compliance<'_> {
    /// No policy: verdicts stay empty.
    pub fn none() -> Compliance<'static> {
        Compliance {
            judge: None,
            settings: &NO_SETTINGS,
            now_ns: 0,
            raised: 0,
        }
    }
}

/// What `store_batch` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    /// The batch is durably stored.
    New { records: usize },
    /// Already stored earlier (a resend): acknowledge it again, store nothing.
    Duplicate,
}

pub(crate) fn proto_name(p: Proto) -> String {
    match p {
        Proto::Tcp => "tcp".into(),
        Proto::Udp => "udp".into(),
        Proto::Icmp => "icmp".into(),
        Proto::Icmpv6 => "icmpv6".into(),
        Proto::Other(n) => format!("ip-{n}"),
    }
}

pub(crate) fn direction_name(d: Direction) -> &'static str {
    match d {
        Direction::Outbound => "outbound",
        Direction::Inbound => "inbound",
    }
}

fn event_name(e: FlowEvent) -> &'static str {
    match e {
        FlowEvent::Start => "start",
        FlowEvent::Update => "update",
        FlowEvent::End => "end",
    }
}

fn verdict_name(v: Verdict) -> &'static str {
    match v {
        Verdict::Forwarded => "forwarded",
        Verdict::Dropped => "dropped",
    }
}

/// Unix ns as SQLite's signed integer (saturating; year 2262 is far off).
fn ns(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Store {
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
        let steps: [(i64, &str); 6] = [
            (1, include_str!("schema.sql")),
            (2, include_str!("schema_v2.sql")),
            (3, include_str!("schema_v3.sql")),
            (4, include_str!("schema_v4.sql")),
            (5, include_str!("schema_v5.sql")),
            (6, include_str!("schema_v6.sql")),
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

    /// Records that agent `agent_id` connected; returns its host id and the highest batch
    /// sequence number stored for it.
    pub fn host_connected(
        &mut self,
        agent_id: &str,
        host_name: &str,
        agent_version: &str,
        capture: &str,
        now_ns: u64,
    ) -> Result<(i64, u64), StoreError> {
        let now = ns(now_ns);
        self.conn.execute(
            "INSERT INTO hosts (agent_id, host_name, agent_version, capture, first_seen_ns, last_seen_ns)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)
             ON CONFLICT(agent_id) DO UPDATE SET host_name = ?2, agent_version = ?3,
                 capture = ?4, last_seen_ns = ?5",
            params![agent_id, host_name, agent_version, capture, now],
        )?;
        let (id, seq): (i64, i64) = self.conn.query_row(
            "SELECT id, last_seq FROM hosts WHERE agent_id = ?1",
            [agent_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok((id, u64::try_from(seq).unwrap_or(0)))
    }

    /// Stores a batch durably (see the module docs), without compliance verdicts.
    pub fn store_batch(&mut self, agent_id: &str, batch: &FlowBatch) -> Result<Stored, StoreError> {
        let tx = self.write_tx()?;
        let stored = Self::insert_batch(&tx, agent_id, batch, &mut Compliance::none())?;
        tx.commit()?;
        Ok(stored)
    }

    /// Stores several agents' batches in one transaction, so one commit (one fsync) makes
    /// them all durable: group commit. A batch of an unknown agent is refused alone (that
    /// is found before anything of it is written); any other error fails the whole group,
    /// and then nothing of it is stored.
    pub fn store_batches(
        &mut self,
        batches: &[(&str, &FlowBatch)],
        compliance: &mut Compliance<'_>,
    ) -> Result<Vec<Result<Stored, StoreError>>, StoreError> {
        let tx = self.write_tx()?;
        let mut out = Vec::with_capacity(batches.len());
        for (agent_id, batch) in batches {
            match Self::insert_batch(&tx, agent_id, batch, compliance) {
                Ok(stored) => out.push(Ok(stored)),
                Err(e @ StoreError::UnknownAgent(_)) => out.push(Err(e)),
                // Dropping the transaction rolls the group back.
                Err(e) => return Err(e),
            }
        }
        tx.commit()?;
        Ok(out)
    }

    /// Sets this connection's page cache, in KiB (SQLite's default is 2 MiB). The ingest
    /// writer uses a large one: the flows' indexes take inserts all over, and every page
    /// missing from the cache is a read from the file.
    pub fn set_cache_kib(&mut self, kib: u32) -> Result<(), StoreError> {
        self.conn
            .pragma_update(None, "cache_size", -i64::from(kib))?;
        Ok(())
    }

    /// One batch inside the caller's transaction (or savepoint): its records, their
    /// conversation edges and the agent's new sequence number; nothing for a resend.
    fn insert_batch(
        tx: &Connection,
        agent_id: &str,
        batch: &FlowBatch,
        compliance: &mut Compliance<'_>,
    ) -> Result<Stored, StoreError> {
        let (host_id, last_seq, host_name): (i64, i64, String) = tx
            .query_row(
                "SELECT id, last_seq, host_name FROM hosts WHERE agent_id = ?1",
                [agent_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?
            .ok_or_else(|| StoreError::UnknownAgent(agent_id.to_string()))?;
        if ns(batch.seq) <= last_seq {
            return Ok(Stored::Duplicate);
        }
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO flows (host_id, event, first_seen_ns, last_seen_ns, proto, direction,
                    local_ip, local_port, remote_ip, remote_port, bytes_out, bytes_in,
                    packets_out, packets_in, closed, verdict, pid, uid, user_name, comm, exe,
                    cmdline, cgroup, unattributed_reason, policy_verdict, policy_rule,
                    policy_version)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                    ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27)",
            )?;
            let mut edge = tx.prepare_cached(
                "INSERT INTO conversations (host_id, direction, proto, remote_ip, port, exe, flows,
                    first_seen_ns, last_seen_ns)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, ?7)
                 ON CONFLICT DO UPDATE SET flows = flows + 1,
                    last_seen_ns = max(last_seen_ns, ?7)",
            )?;
            for r in &batch.records {
                let p = r.process.as_ref();
                let judged = compliance.judge.as_mut().and_then(|j| j(agent_id, r));
                insert.execute(params![
                    host_id,
                    event_name(r.event),
                    ns(r.first_seen_ns),
                    ns(r.last_seen_ns),
                    proto_name(r.proto),
                    direction_name(r.direction),
                    r.local.ip().to_string(),
                    r.local.port(),
                    r.remote.ip().to_string(),
                    r.remote.port(),
                    ns(r.bytes_out),
                    ns(r.bytes_in),
                    ns(r.packets_out),
                    ns(r.packets_in),
                    r.closed,
                    verdict_name(r.verdict),
                    p.map(|p| p.pid),
                    p.map(|p| p.uid),
                    p.and_then(|p| p.user.as_deref()),
                    p.map(|p| p.comm.as_str()),
                    p.and_then(|p| p.exe.as_deref()),
                    p.and_then(|p| p.cmdline.as_deref()),
                    p.and_then(|p| p.cgroup.as_deref()),
                    r.unattributed_reason.as_deref(),
                    judged.as_ref().map(|j| j.verdict),
                    judged.as_ref().map(|j| j.rule.as_str()),
                    judged.as_ref().map(|j| j.version),
                ])?;
                // One alert occurrence per violating flow: counted at its start.
                if let Some(j) = judged.as_ref().filter(|j| j.verdict != "permitted")
                    && r.event == FlowEvent::Start
                {
                    {
                        let v = crate::alerts::Violation {
                            agent_id,
                            host_name: &host_name,
                            record: r,
                            rule: &j.rule,
                            action: "deny",
                            policy_version: j.version,
                            severity: j.severity,
                            verdict: j.verdict,
                        };
                        alerts::raise(tx, host_id, &v, compliance.settings, compliance.now_ns)?;
                        compliance.raised += 1;
                    }
                }
                if r.event == FlowEvent::Start {
                    let port = match r.direction {
                        Direction::Outbound => r.remote.port(),
                        Direction::Inbound => r.local.port(),
                    };
                    edge.execute(params![
                        host_id,
                        direction_name(r.direction),
                        proto_name(r.proto),
                        r.remote.ip().to_string(),
                        port,
                        p.and_then(|p| p.exe.as_deref()).unwrap_or(""),
                        ns(r.first_seen_ns),
                    ])?;
                }
            }
        }
        tx.execute(
            "UPDATE hosts SET last_seq = ?2 WHERE id = ?1",
            params![host_id, ns(batch.seq)],
        )?;
        Ok(Stored::New {
            records: batch.records.len(),
        })
    }

    /// Whether agent `agent_id` was revoked (unknown agents are not).
    pub fn is_revoked(&self, agent_id: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT revoked FROM hosts WHERE agent_id = ?1",
                [agent_id],
                |r| r.get::<_, bool>(0),
            )
            .optional()?
            .unwrap_or(false))
    }

    /// Refuses agent `agent_id` from now on (its certificate stays valid cryptographically,
    /// so the collector checks this at every connection). Returns false if unknown.
    pub fn revoke(&mut self, agent_id: &str) -> Result<bool, StoreError> {
        Ok(self.conn.execute(
            "UPDATE hosts SET revoked = 1 WHERE agent_id = ?1",
            [agent_id],
        )? == 1)
    }

    /// Stores the latest inventory of an agent (the encoded message).
    pub fn store_inventory(
        &mut self,
        agent_id: &str,
        body: &[u8],
        now_ns: u64,
    ) -> Result<(), StoreError> {
        let n = self.conn.execute(
            "INSERT INTO inventory (host_id, updated_ns, body)
             SELECT id, ?2, ?3 FROM hosts WHERE agent_id = ?1
             ON CONFLICT(host_id) DO UPDATE SET updated_ns = ?2, body = ?3",
            params![agent_id, ns(now_ns), body],
        )?;
        if n == 0 {
            return Err(StoreError::UnknownAgent(agent_id.to_string()));
        }
        Ok(())
    }

    /// The latest inventory an agent sent, if any.
    pub fn inventory(&self, agent_id: &str) -> Result<Option<cordon_wire::Inventory>, StoreError> {
        let body: Option<Vec<u8>> = self
            .conn
            .query_row(
                "SELECT i.body FROM inventory i JOIN hosts h ON h.id = i.host_id WHERE h.agent_id = ?1",
                [agent_id],
                |r| r.get(0),
            )
            .optional()?;
        Ok(body.and_then(|b| match cordon_wire::decode(&b) {
            Ok(cordon_wire::Message::Inventory(inv)) => Some(inv),
            _ => None,
        }))
    }

    /// Deletes flows last seen before `before_ns`; returns how many.
    pub fn apply_retention(&mut self, before_ns: u64) -> Result<usize, StoreError> {
        Ok(self
            .conn
            .execute("DELETE FROM flows WHERE last_seen_ns < ?1", [ns(before_ns)])?)
    }

    /// Conversation edges of a host, busiest first.
    pub fn conversations(&self, agent_id: &str) -> Result<Vec<Conversation>, StoreError> {
        let mut q = self.conn.prepare(
            "SELECT c.direction, c.proto, c.remote_ip, c.port, c.exe, c.flows
             FROM conversations c JOIN hosts h ON h.id = c.host_id
             WHERE h.agent_id = ?1 ORDER BY c.flows DESC, c.remote_ip, c.port",
        )?;
        let rows = q.query_map([agent_id], |r| {
            let flows: i64 = r.get(5)?;
            Ok(Conversation {
                direction: r.get(0)?,
                proto: r.get(1)?,
                remote_ip: r.get(2)?,
                port: r.get(3)?,
                exe: r.get(4)?,
                flows: flows.max(0) as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests;
