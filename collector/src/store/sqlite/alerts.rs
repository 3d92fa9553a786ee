//! The alerts part of the SQLite backend.
use rusqlite::{Connection, OptionalExtension, params};

use super::SqliteStore;
use crate::alerts::{AlertSettings, Violation, envelope};
use crate::outputs::Envelope;
use crate::store::*;

/// Raises or updates the alert for `v` inside the caller's transaction, and queues it for
/// the outputs when it is new or due again (not while snoozed or muted).
pub(super) fn raise(
    tx: &Connection,
    host_id: i64,
    v: &Violation<'_>,
    settings: &AlertSettings,
    now_ns: u64,
) -> Result<(), StoreError> {
    let key = v.key_id();
    let seen = v.record.first_seen_ns;
    let (count, first, last, published, snoozed, muted): (i64, i64, i64, Option<i64>, i64, bool) =
        tx.prepare_cached(
            "INSERT INTO alerts (key_id, severity, host_id, rule, policy_version, first_ns,
                 last_ns, count, alert)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, 1, '')
             ON CONFLICT(key_id) DO UPDATE SET count = count + 1,
                 last_ns = max(last_ns, ?6), severity = ?2, policy_version = ?5
             RETURNING count, first_ns, last_ns, published_ns, snoozed_until_ns, muted",
        )?
        .query_row(
            params![
                key,
                v.severity.as_str(),
                host_id,
                v.rule,
                v.policy_version,
                ns(seen)
            ],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            },
        )?;
    let alert = v.alert(&key, u(count), u(first), u(last), now_ns);
    let due = published.is_none_or(|p| {
        settings.republish_secs > 0
            && now_ns.saturating_sub(u(p)) >= settings.republish_secs * 1_000_000_000
    });
    let quiet = muted || u(snoozed) > now_ns;
    let text = alert.to_string();
    if due && !quiet {
        let env = envelope(settings, v.host_name, &key, alert, now_ns);
        tx.prepare_cached(
            "INSERT INTO alert_outbox (key_id, envelope, created_ns) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![key, env.hec.to_string(), ns(now_ns)])?;
        tx.prepare_cached("UPDATE alerts SET alert = ?2, published_ns = ?3 WHERE key_id = ?1")?
            .execute(params![key, text, ns(now_ns)])?;
    } else {
        tx.prepare_cached("UPDATE alerts SET alert = ?2 WHERE key_id = ?1")?
            .execute(params![key, text])?;
    }
    Ok(())
}

impl AlertStore for SqliteStore {
    fn alerts(&self, f: &AlertFilter) -> Result<Vec<AlertRow>, StoreError> {
        let mut q = self.conn.prepare(
            "SELECT a.key_id, a.severity, h.host_name, a.rule, a.policy_version, a.count,
                    a.first_ns, a.last_ns, a.snoozed_until_ns, a.muted, a.alert
             FROM alerts a JOIN hosts h ON h.id = a.host_id
             WHERE (?1 IS NULL OR h.agent_id = ?1 OR h.host_name = ?1)
               AND a.last_ns >= ?2
             ORDER BY a.last_ns DESC LIMIT ?3",
        )?;
        let limit = match f.limit {
            0 => 100,
            n => n.min(10_000),
        };
        let rows = q.query_map(
            params![f.host, ns(f.since_ns.unwrap_or(0)), limit as i64],
            |r| {
                let text: String = r.get(10)?;
                Ok(AlertRow {
                    key_id: r.get(0)?,
                    severity: r.get(1)?,
                    host: r.get(2)?,
                    rule: r.get(3)?,
                    policy_version: r.get(4)?,
                    count: u(r.get(5)?),
                    first_ns: u(r.get(6)?),
                    last_ns: u(r.get(7)?),
                    snoozed_until_ns: u(r.get(8)?),
                    muted: r.get(9)?,
                    alert: serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
                })
            },
        )?;
        let mut out: Vec<AlertRow> = rows.collect::<Result<_, _>>()?;
        if let Some(min) = f.min_severity {
            out.retain(|a| crate::policy::Severity::parse(&a.severity).is_some_and(|s| s >= min));
        }
        Ok(out)
    }

    fn snooze_alert(&mut self, key_id: &str, until_ns: u64) -> Result<bool, StoreError> {
        Ok(self.conn.execute(
            "UPDATE alerts SET snoozed_until_ns = ?2 WHERE key_id = ?1",
            params![key_id, ns(until_ns)],
        )? == 1)
    }

    fn mute_alert(&mut self, key_id: &str, muted: bool) -> Result<bool, StoreError> {
        Ok(self.conn.execute(
            "UPDATE alerts SET muted = ?2 WHERE key_id = ?1",
            params![key_id, muted],
        )? == 1)
    }

    fn queue_envelope(
        &mut self,
        env: &crate::outputs::Envelope,
        now_ns: u64,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO alert_outbox (key_id, envelope, created_ns) VALUES (?1, ?2, ?3)",
            params![env.key, env.hec.to_string(), ns(now_ns)],
        )?;
        Ok(())
    }

    fn outbox_after(
        &self,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<(i64, Envelope)>, StoreError> {
        let mut q = self.conn.prepare_cached(
            "SELECT id, key_id, envelope FROM alert_outbox WHERE id > ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows = q.query_map(params![after_id, limit as i64], |r| {
            let text: String = r.get(2)?;
            Ok((
                r.get::<_, i64>(0)?,
                Envelope {
                    key: r.get(1)?,
                    hec: serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
                },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn sink_position(&self, sink: &str) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT delivered_id FROM sink_progress WHERE sink = ?1",
                [sink],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0))
    }

    fn set_sink_position(&mut self, sink: &str, id: i64, dead: u64) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO sink_progress (sink, delivered_id, dead_lettered) VALUES (?1, ?2, ?3)
             ON CONFLICT(sink) DO UPDATE SET delivered_id = max(delivered_id, ?2),
                 dead_lettered = dead_lettered + ?3",
            params![sink, id, ns(dead)],
        )?;
        Ok(())
    }

    fn prune_outbox(&mut self, sinks: &[&str]) -> Result<usize, StoreError> {
        let mut lowest = i64::MAX;
        for s in sinks {
            lowest = lowest.min(self.sink_position(s)?);
        }
        if sinks.is_empty() {
            // No sink: nothing will ever read it.
            return Ok(self.conn.execute("DELETE FROM alert_outbox", [])?);
        }
        Ok(self
            .conn
            .execute("DELETE FROM alert_outbox WHERE id <= ?1", [lowest])?)
    }
}
