//! The loss check of the collector benchmarks, against the store itself (SQLite or
//! PostgreSQL): every batch a simulated agent sent is stored exactly once. The agents give
//! each batch's records that batch's send time as `last_seen_ns`, so the flows of one
//! batch are the rows of (agent, `last_seen_ns`): each such group must hold exactly the
//! batch's records, no group may be missing or unknown, and each agent's stored batch
//! sequence (`hosts.last_seq`) must be the last one it sent.
use std::collections::HashMap;

use crate::simagent::roam::RoamResult;

/// What the store holds: (agent id, `last_seen_ns`) → rows, and agent id → `last_seq`.
#[derive(Debug, Default)]
pub struct Stored {
    pub groups: HashMap<(String, i64), i64>,
    pub last_seq: HashMap<String, i64>,
    pub rows: i64,
}

const GROUPS: &str = "SELECT h.agent_id, f.last_seen_ns, count(*) FROM flows f \
                      JOIN hosts h ON h.id = f.host_id GROUP BY h.agent_id, f.last_seen_ns";
const SEQS: &str = "SELECT agent_id, last_seq FROM hosts";

impl Stored {
    /// From a SQLite store file.
    pub fn sqlite(path: &std::path::Path) -> anyhow::Result<Stored> {
        let db = rusqlite::Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE,
        )?;
        let mut s = Stored::default();
        let mut q = db.prepare(GROUPS)?;
        let rows = q.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        for row in rows {
            let (a, ns, n) = row?;
            s.rows += n;
            s.groups.insert((a, ns), n);
        }
        let mut q = db.prepare(SEQS)?;
        let rows = q.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        for row in rows {
            let (a, seq) = row?;
            s.last_seq.insert(a, seq);
        }
        Ok(s)
    }

    /// From the cluster's PostgreSQL database (blocking).
    pub fn postgres(c: &mut postgres::Client) -> anyhow::Result<Stored> {
        let mut s = Stored::default();
        for row in c.query(GROUPS, &[])? {
            let n: i64 = row.get(2);
            s.rows += n;
            s.groups.insert((row.get(0), row.get(1)), n);
        }
        for row in c.query(SEQS, &[])? {
            s.last_seq.insert(row.get(0), row.get(1));
        }
        Ok(s)
    }
}

/// The verdict.
#[derive(Debug, Default)]
pub struct Check {
    pub batches_sent: u64,
    pub batches_once: u64,
    pub missing: u64,
    pub duplicated: u64,
    pub partial: u64,
    pub unknown: u64,
    pub rows: i64,
    pub records_acked: u64,
    pub problems: Vec<String>,
}

impl Check {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
            && self.batches_once == self.batches_sent
            && u64::try_from(self.rows).ok() == Some(self.records_acked)
    }

    /// One line for the report.
    pub fn line(&self) -> String {
        format!(
            "{} batches sent, {} stored exactly once, {} missing, {} duplicated, {} partial, \
             {} unknown; {} records acked, {} stored → {}",
            self.batches_sent,
            self.batches_once,
            self.missing,
            self.duplicated,
            self.partial,
            self.unknown,
            self.records_acked,
            self.rows,
            if self.ok() { "exactly once" } else { "FAILED" }
        )
    }
}

/// Compares what the agents sent with what is stored.
pub fn check(stored: &Stored, agents: &[RoamResult], batch: usize) -> Check {
    let mut c = Check {
        rows: stored.rows,
        ..Check::default()
    };
    let mut known = 0usize;
    let per = batch as i64;
    for a in agents {
        c.records_acked += a.records_acked;
        c.batches_sent += a.batches_sent;
        if a.batches_acked != a.batches_sent {
            c.problems.push(format!(
                "{}: {} batches sent, {} acknowledged",
                a.id, a.batches_sent, a.batches_acked
            ));
        }
        for (seq, ns) in &a.sent {
            let n = i64::try_from(*ns)
                .ok()
                .and_then(|ns| stored.groups.get(&(a.id.clone(), ns)))
                .copied()
                .unwrap_or(0);
            if n > 0 {
                known += 1;
            }
            match n {
                0 => {
                    c.missing += 1;
                    c.problems.push(format!("{}: batch {seq} not stored", a.id));
                }
                n if n == per => c.batches_once += 1,
                n if n % per == 0 => {
                    c.duplicated += 1;
                    c.problems
                        .push(format!("{}: batch {seq} stored {} times", a.id, n / per));
                }
                n => {
                    c.partial += 1;
                    c.problems
                        .push(format!("{}: batch {seq}: {n} of {per} records", a.id));
                }
            }
        }
        let want = a.sent.last().map_or(a.first_stored_seq, |(s, _)| *s);
        let got = stored.last_seq.get(&a.id).copied().unwrap_or(-1);
        if i64::try_from(want).ok() != Some(got) {
            c.problems.push(format!(
                "{}: last batch sent {want}, stored last_seq {got}",
                a.id
            ));
        }
        if let Some(e) = &a.error {
            c.problems.push(format!("{}: {e}", a.id));
        }
    }
    c.unknown = (stored.groups.len() - known.min(stored.groups.len())) as u64;
    if c.unknown > 0 {
        c.problems
            .push(format!("{} stored batches no agent sent", c.unknown));
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(id: &str, sent: &[(u64, u64)]) -> RoamResult {
        RoamResult {
            id: id.into(),
            batches_sent: sent.len() as u64,
            batches_acked: sent.len() as u64,
            records_acked: sent.len() as u64 * 2,
            sent: sent.to_vec(),
            ..RoamResult::default()
        }
    }

    fn stored(groups: &[(&str, i64, i64)], seqs: &[(&str, i64)]) -> Stored {
        Stored {
            groups: groups
                .iter()
                .map(|(a, ns, n)| ((a.to_string(), *ns), *n))
                .collect(),
            last_seq: seqs.iter().map(|(a, s)| (a.to_string(), *s)).collect(),
            rows: groups.iter().map(|g| g.2).sum(),
        }
    }

    #[test]
    fn every_batch_once_passes() {
        let a = [agent("a", &[(1, 100), (2, 200)])];
        let c = check(&stored(&[("a", 100, 2), ("a", 200, 2)], &[("a", 2)]), &a, 2);
        assert!(c.ok(), "{c:?}");
        assert_eq!(c.batches_once, 2);
    }

    #[test]
    fn missing_duplicated_partial_and_unknown_batches_fail() {
        let a = [agent("a", &[(1, 100), (2, 200), (3, 300)])];
        let s = stored(&[("a", 100, 4), ("a", 200, 1), ("a", 999, 2)], &[("a", 3)]);
        let c = check(&s, &a, 2);
        assert!(!c.ok());
        assert_eq!(
            (c.duplicated, c.partial, c.missing, c.unknown),
            (1, 1, 1, 1)
        );
        // A stored sequence that is not the last batch sent fails too.
        let c = check(
            &stored(&[("a", 100, 2)], &[("a", 0)]),
            &[agent("a", &[(1, 100)])],
            2,
        );
        assert!(!c.ok(), "{c:?}");
    }
}
