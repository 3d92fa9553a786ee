//! The alerts part of the PostgreSQL backend: raising (an upsert on `key_id`, with the
//! same republish, snooze and mute decisions as SQLite's `raise`), listing, snooze and
//! mute, and the outbox the output sinks read.
//!
//! Outbox ids must become visible in id order: a sink that has read up to id 11 never
//! looks below it again, so an id 10 committed after 11 would never be delivered. With
//! one writer (SQLite) that holds by itself; here every transaction that adds to the
//! outbox first takes a transaction-level advisory lock ([`OutboxLock`]), held until its
//! commit, so outbox ids are handed out in commit order.
use ::postgres::{GenericClient, Row, Transaction};

use super::{PgStore, conn::Statements, hosts::rows, json, limit, listen, notify};
use crate::alerts::{AlertSettings, Violation, envelope};
use crate::outputs::Envelope;
use crate::store::*;

const UPSERT: &str = "INSERT INTO alerts (key_id, severity, host_id, rule, policy_version,
        first_ns, last_ns, count, alert)
    VALUES ($1, $2, $3, $4, $5, $6, $6, 1, '')
    ON CONFLICT (key_id) DO UPDATE SET count = alerts.count + 1,
        last_ns = GREATEST(alerts.last_ns, EXCLUDED.last_ns), severity = EXCLUDED.severity,
        policy_version = EXCLUDED.policy_version
    RETURNING count, first_ns, last_ns, published_ns, snoozed_until_ns, muted";

/// Queues the envelope and records the publication, in one statement.
const PUBLISH: &str = "WITH queued AS (
        INSERT INTO alert_outbox (key_id, envelope, created_ns) VALUES ($1, $2, $3)
        RETURNING id)
    UPDATE alerts SET alert = $4, published_ns = $3 WHERE key_id = $1
    RETURNING (SELECT id FROM queued)";

const UPDATE_TEXT: &str = "UPDATE alerts SET alert = $2 WHERE key_id = $1";

/// The advisory lock key of outbox writers ("outbox" in ASCII).
pub(crate) const OUTBOX_LOCK_KEY: i64 = 0x6f75_7462_6f78;

/// Whether the current transaction holds the outbox lock (see the module docs).
#[derive(Default)]
pub(super) struct OutboxLock(bool);

impl OutboxLock {
    /// Takes the lock, once per transaction; it is released at commit or rollback.
    pub(super) fn take(&mut self, c: &mut impl GenericClient) -> Result<(), StoreError> {
        if !self.0 {
            c.execute("SELECT pg_advisory_xact_lock($1)", &[&OUTBOX_LOCK_KEY])?;
            self.0 = true;
        }
        Ok(())
    }
}

/// Raises or updates the alert for `v` inside the caller's transaction, and queues it for
/// the outputs when it is new or due again (not while snoozed or muted). Returns the
/// outbox id when it was queued (the caller sends `NOTIFY cordon_outbox`).
pub(super) fn raise(
    tx: &mut Transaction<'_>,
    st: &mut Statements,
    lock: &mut OutboxLock,
    host_id: i64,
    v: &Violation<'_>,
    settings: &AlertSettings,
    now_ns: u64,
) -> Result<Option<i64>, StoreError> {
    let key = v.key_id();
    let upsert = st.get(tx, UPSERT)?;
    let r = tx.query_one(
        &upsert,
        &[
            &key,
            &v.severity.as_str(),
            &host_id,
            &v.rule,
            &v.policy_version,
            &ns(v.record.first_seen_ns),
        ],
    )?;
    let (count, first, last): (i64, i64, i64) = (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
    let published: Option<i64> = r.try_get(3)?;
    let (snoozed, muted): (i64, bool) = (r.try_get(4)?, r.try_get(5)?);
    let alert = v.alert(&key, u(count), u(first), u(last), now_ns);
    let due = published.is_none_or(|p| {
        settings.republish_secs > 0
            && now_ns.saturating_sub(u(p)) >= settings.republish_secs * 1_000_000_000
    });
    let quiet = muted || u(snoozed) > now_ns;
    let text = alert.to_string();
    if due && !quiet {
        let env = envelope(settings, v.host_name, &key, alert, now_ns);
        lock.take(tx)?;
        let publish = st.get(tx, PUBLISH)?;
        let r = tx.query_one(&publish, &[&key, &env.hec.to_string(), &ns(now_ns), &text])?;
        Ok(Some(r.try_get(0)?))
    } else {
        let update = st.get(tx, UPDATE_TEXT)?;
        tx.execute(&update, &[&key, &text])?;
        Ok(None)
    }
}

fn alert_row(r: &Row) -> Result<AlertRow, StoreError> {
    let text: String = r.try_get(10)?;
    Ok(AlertRow {
        key_id: r.try_get(0)?,
        severity: r.try_get(1)?,
        host: r.try_get(2)?,
        rule: r.try_get(3)?,
        policy_version: r.try_get(4)?,
        count: u(r.try_get(5)?),
        first_ns: u(r.try_get(6)?),
        last_ns: u(r.try_get(7)?),
        snoozed_until_ns: u(r.try_get(8)?),
        muted: r.try_get(9)?,
        alert: json(&text),
    })
}

impl AlertStore for PgStore {
    fn alerts(&self, f: &AlertFilter) -> Result<Vec<AlertRow>, StoreError> {
        let n = match f.limit {
            0 => 100,
            n => n.min(10_000),
        };
        let mut out = self.with(|c, _| {
            rows(
                c.query(
                    "SELECT a.key_id, a.severity, h.host_name, a.rule, a.policy_version,
                            a.count, a.first_ns, a.last_ns, a.snoozed_until_ns, a.muted, a.alert
                     FROM alerts a JOIN hosts h ON h.id = a.host_id
                     WHERE ($1::text IS NULL OR h.agent_id = $1 OR h.host_name = $1)
                       AND a.last_ns >= $2
                     ORDER BY a.last_ns DESC LIMIT $3",
                    &[&f.host, &ns(f.since_ns.unwrap_or(0)), &limit(n)],
                )?,
                alert_row,
            )
        })?;
        if let Some(min) = f.min_severity {
            out.retain(|a| crate::policy::Severity::parse(&a.severity).is_some_and(|s| s >= min));
        }
        Ok(out)
    }

    fn snooze_alert(&mut self, key_id: &str, until_ns: u64) -> Result<bool, StoreError> {
        self.with_mut(|c, _| {
            Ok(c.execute(
                "UPDATE alerts SET snoozed_until_ns = $2 WHERE key_id = $1",
                &[&key_id, &ns(until_ns)],
            )? == 1)
        })
    }

    fn mute_alert(&mut self, key_id: &str, muted: bool) -> Result<bool, StoreError> {
        self.with_mut(|c, _| {
            Ok(c.execute(
                "UPDATE alerts SET muted = $2 WHERE key_id = $1",
                &[&key_id, &muted],
            )? == 1)
        })
    }

    fn queue_envelope(&mut self, env: &Envelope, now_ns: u64) -> Result<(), StoreError> {
        self.tx(|tx, _| {
            OutboxLock::default().take(tx)?;
            let id: i64 = tx
                .query_one(
                    "INSERT INTO alert_outbox (key_id, envelope, created_ns) VALUES ($1, $2, $3)
                     RETURNING id",
                    &[&env.key, &env.hec.to_string(), &ns(now_ns)],
                )?
                .try_get(0)?;
            notify(tx, listen::OUTBOX, &id.to_string())
        })
    }

    fn outbox_after(&self, after_id: i64, n: usize) -> Result<Vec<(i64, Envelope)>, StoreError> {
        self.with(|c, _| {
            rows(
                c.query(
                    "SELECT id, key_id, envelope FROM alert_outbox WHERE id > $1
                     ORDER BY id LIMIT $2",
                    &[&after_id, &limit(n)],
                )?,
                |r| {
                    let text: String = r.try_get(2)?;
                    Ok((
                        r.try_get(0)?,
                        Envelope {
                            key: r.try_get(1)?,
                            hec: json(&text),
                        },
                    ))
                },
            )
        })
    }

    fn sink_position(&self, sink: &str) -> Result<i64, StoreError> {
        self.with(|c, _| {
            Ok(
                match c.query_opt(
                    "SELECT delivered_id FROM sink_progress WHERE sink = $1",
                    &[&sink],
                )? {
                    Some(r) => r.try_get(0)?,
                    None => 0,
                },
            )
        })
    }

    fn set_sink_position(&mut self, sink: &str, id: i64, dead: u64) -> Result<(), StoreError> {
        self.with_mut(|c, _| {
            c.execute(
                "INSERT INTO sink_progress (sink, delivered_id, dead_lettered) VALUES ($1, $2, $3)
                 ON CONFLICT (sink) DO UPDATE
                     SET delivered_id = GREATEST(sink_progress.delivered_id, EXCLUDED.delivered_id),
                         dead_lettered = sink_progress.dead_lettered + EXCLUDED.dead_lettered",
                &[&sink, &id, &ns(dead)],
            )?;
            Ok(())
        })
    }

    fn prune_outbox(&mut self, sinks: &[&str]) -> Result<usize, StoreError> {
        if sinks.is_empty() {
            // No sink: nothing will ever read it.
            return self.with_mut(|c, _| Ok(c.execute("DELETE FROM alert_outbox", &[])? as usize));
        }
        let mut lowest = i64::MAX;
        for s in sinks {
            lowest = lowest.min(self.sink_position(s)?);
        }
        self.with_mut(|c, _| {
            Ok(c.execute("DELETE FROM alert_outbox WHERE id <= $1", &[&lowest])? as usize)
        })
    }
}
