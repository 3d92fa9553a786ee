//! Storing a group of flow batches in the caller's transaction, as SQLite's
//! `insert_batch` does batch by batch, with PostgreSQL's bulk paths:
//!
//! 1. The group's host rows are locked at once (`SELECT … FOR UPDATE`, in id order, so
//!    two nodes storing groups of the same agents wait for each other instead of
//!    deadlocking). A batch of an unknown agent is refused alone; one whose sequence
//!    number is not above the host's `last_seq` is a duplicate (also a resend within the
//!    same group), exactly as on SQLite.
//! 2. Each new batch's records are judged through the [`Compliance`] callback, in order.
//! 3. All flow rows of the group go in with ONE binary `COPY`; the conversation edges,
//!    counted per edge in memory, with one `INSERT … SELECT FROM unnest(…) ON CONFLICT
//!    DO UPDATE`; the hosts' new sequence numbers with one `UPDATE … FROM unnest(…)`.
//! 4. Then each violating flow start raises its alert, in record order (`alerts::raise`,
//!    the same decisions as SQLite's); if one was queued for the outputs, the outbox
//!    lock is held to the commit and `NOTIFY cordon_outbox` is sent (delivered at
//!    commit).
use std::collections::{BTreeMap, HashMap};

use ::postgres::{Transaction, binary_copy::BinaryCopyInWriter, types::ToSql, types::Type};
use cordon_wire::{Direction, FlowBatch, FlowEvent, FlowRecord};

use super::{
    alerts::{OutboxLock, raise},
    conn::Statements,
    listen, notify, text,
};
use crate::store::{flow_sql, *};

const LOCK_HOSTS: &str = "SELECT id, agent_id, last_seq, host_name FROM hosts
    WHERE agent_id = ANY($1) ORDER BY id FOR UPDATE";

const COPY_FLOWS: &str = "COPY flows (host_id, event, first_seen_ns, last_seen_ns, proto,
    direction, local_ip, local_port, remote_ip, remote_port, bytes_out, bytes_in, packets_out,
    packets_in, closed, verdict, pid, uid, user_name, comm, exe, cmdline, cgroup,
    unattributed_reason, policy_verdict, policy_rule, policy_version) FROM STDIN (FORMAT binary)";

/// The column types of [`COPY_FLOWS`], in order.
const COPY_TYPES: [Type; 27] = [
    Type::INT8,
    Type::TEXT,
    Type::INT8,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::INT4,
    Type::TEXT,
    Type::INT4,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::BOOL,
    Type::TEXT,
    Type::INT8,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::INT8,
];

const UPSERT_EDGES: &str = "INSERT INTO conversations (host_id, direction, proto, remote_ip,
        port, exe, flows, first_seen_ns, last_seen_ns)
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::int[],
        $6::text[], $7::bigint[], $8::bigint[], $9::bigint[])
    ON CONFLICT (host_id, direction, proto, remote_ip, port, exe) DO UPDATE
        SET flows = conversations.flows + EXCLUDED.flows,
            last_seen_ns = GREATEST(conversations.last_seen_ns, EXCLUDED.last_seen_ns)";

/// The per-period counts' upserts, in the order of [`flow_sql::PERIODS`].
const UPSERT_SLOTS: [&str; 2] = [
    "INSERT INTO flow_minutes (host_id, period, verdict, flows)
     SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[])
     ON CONFLICT (period, host_id, verdict) DO UPDATE SET flows = flow_minutes.flows + EXCLUDED.flows",
    "INSERT INTO flow_hours (host_id, period, verdict, flows)
     SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[])
     ON CONFLICT (period, host_id, verdict) DO UPDATE SET flows = flow_hours.flows + EXCLUDED.flows",
];

/// Flows per (period kind, host, period, verdict): the console's summaries' counts.
type Slots = BTreeMap<(usize, i64, i64, &'static str), i64>;

const SET_SEQS: &str = "UPDATE hosts h SET last_seq = v.seq
    FROM unnest($1::bigint[], $2::bigint[]) AS v(id, seq) WHERE h.id = v.id";

/// A host of the group, as locked.
struct Host {
    id: i64,
    last_seq: i64,
    name: String,
    /// `last_seq` moved in this group.
    moved: bool,
}

/// One record to copy.
struct Pending<'a> {
    host_id: i64,
    agent_id: &'a str,
    record: &'a FlowRecord,
    judged: Option<Judged>,
    /// A violating flow start: it raises its alert.
    violates: bool,
}

/// An edge's key: host, direction, proto, remote address, service port, executable.
type EdgeKey = (i64, &'static str, String, String, i32, String);

/// Start records counted on one edge: (flows, first start seen first, latest start).
type EdgeCount = (i64, i64, i64);

/// Stores `batches` in `tx` (see the module docs); the caller commits.
pub(super) fn store_group(
    tx: &mut Transaction<'_>,
    st: &mut Statements,
    batches: &[(&str, &FlowBatch)],
    compliance: &mut Compliance<'_>,
) -> Result<Vec<Result<Stored, StoreError>>, StoreError> {
    let mut agents: Vec<&str> = batches.iter().map(|(a, _)| *a).collect();
    agents.sort_unstable();
    agents.dedup();
    let lock = st.get(tx, LOCK_HOSTS)?;
    let mut hosts: HashMap<String, Host> = HashMap::with_capacity(agents.len());
    for r in tx.query(&lock, &[&agents])? {
        hosts.insert(
            r.try_get(1)?,
            Host {
                id: r.try_get(0)?,
                last_seq: r.try_get(2)?,
                name: r.try_get(3)?,
                moved: false,
            },
        );
    }

    let mut out = Vec::with_capacity(batches.len());
    let mut pending: Vec<Pending<'_>> = Vec::new();
    let mut edges: BTreeMap<EdgeKey, EdgeCount> = BTreeMap::new();
    let mut slots = Slots::new();
    for (agent_id, batch) in batches {
        let Some(host) = hosts.get_mut(*agent_id) else {
            out.push(Err(StoreError::UnknownAgent(agent_id.to_string())));
            continue;
        };
        if ns(batch.seq) <= host.last_seq {
            out.push(Ok(Stored::Duplicate));
            continue;
        }
        for r in &batch.records {
            let judged = compliance.judge.as_mut().and_then(|j| j(agent_id, r));
            for (k, p) in flow_sql::PERIODS.iter().enumerate() {
                *slots
                    .entry((
                        k,
                        host.id,
                        ns(r.last_seen_ns / p.ns),
                        judged.as_ref().map_or("", |j| j.verdict),
                    ))
                    .or_default() += 1;
            }
            if r.event == FlowEvent::Start {
                count_edge(&mut edges, host.id, r);
            }
            // One alert occurrence per violating flow: counted at its start.
            let violates = r.event == FlowEvent::Start
                && judged.as_ref().is_some_and(|j| j.verdict != "permitted");
            pending.push(Pending {
                host_id: host.id,
                agent_id,
                record: r,
                judged,
                violates,
            });
        }
        host.last_seq = ns(batch.seq);
        host.moved = true;
        out.push(Ok(Stored::New {
            records: batch.records.len(),
        }));
    }

    if !pending.is_empty() {
        copy_flows(tx, &pending)?;
    }
    if !edges.is_empty() {
        upsert_edges(tx, st, &edges)?;
    }
    // In key order, as every transaction takes them: no two wait on each other crosswise.
    for (k, upsert) in UPSERT_SLOTS.iter().enumerate() {
        debug_assert!(upsert.contains(flow_sql::PERIODS[k].table));
        let mut cols = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for ((_, host, period, verdict), n) in
            slots.range((k, i64::MIN, i64::MIN, "")..(k + 1, i64::MIN, i64::MIN, ""))
        {
            cols.0.push(*host);
            cols.1.push(*period);
            cols.2.push(*verdict);
            cols.3.push(*n);
        }
        if !cols.0.is_empty() {
            let upsert = st.get(tx, upsert)?;
            tx.execute(&upsert, &[&cols.0, &cols.1, &cols.2, &cols.3])?;
        }
    }
    let (ids, seqs): (Vec<i64>, Vec<i64>) = hosts
        .values()
        .filter(|h| h.moved)
        .map(|h| (h.id, h.last_seq))
        .unzip();
    if !ids.is_empty() {
        let set = st.get(tx, SET_SEQS)?;
        tx.execute(&set, &[&ids, &seqs])?;
    }
    // Alerts last, in record order: a transaction that queues one holds the outbox lock
    // from then until its commit (see `alerts`), so that stays short.
    let mut lock = OutboxLock::default();
    let mut last_outbox = None;
    for p in pending.iter().filter(|p| p.violates) {
        let (Some(j), Some(host)) = (p.judged.as_ref(), hosts.get(p.agent_id)) else {
            continue;
        };
        let v = crate::alerts::Violation {
            agent_id: p.agent_id,
            host_name: &host.name,
            record: p.record,
            rule: &j.rule,
            action: "deny",
            policy_version: j.version,
            severity: j.severity,
            verdict: j.verdict,
        };
        let settings = compliance.settings;
        if let Some(id) = raise(
            tx,
            st,
            &mut lock,
            p.host_id,
            &v,
            settings,
            compliance.now_ns,
        )? {
            last_outbox = Some(id);
        }
        compliance.raised += 1;
    }
    if let Some(id) = last_outbox {
        notify(tx, listen::OUTBOX, &id.to_string())?;
    }
    Ok(out)
}

fn count_edge(edges: &mut BTreeMap<EdgeKey, EdgeCount>, host_id: i64, r: &FlowRecord) {
    let port = match r.direction {
        Direction::Outbound => r.remote.port(),
        Direction::Inbound => r.local.port(),
    };
    let exe = r
        .process
        .as_ref()
        .and_then(|p| p.exe.as_deref())
        .unwrap_or("");
    let key = (
        host_id,
        direction_name(r.direction),
        proto_name(r.proto),
        r.remote.ip().to_string(),
        i32::from(port),
        text(exe).into_owned(),
    );
    let t = ns(r.first_seen_ns);
    let e = edges.entry(key).or_insert((0, t, t));
    e.0 += 1;
    e.2 = e.2.max(t);
}

/// Every pending record with one binary COPY.
fn copy_flows(tx: &mut Transaction<'_>, pending: &[Pending<'_>]) -> Result<(), StoreError> {
    let sink = tx.copy_in(COPY_FLOWS)?;
    let mut w = BinaryCopyInWriter::new(sink, &COPY_TYPES);
    for p in pending {
        let r = p.record;
        let proc_ = r.process.as_ref();
        let opt = |s: Option<&String>| s.map(|s| text(s).into_owned());
        let (event, direction, verdict) = (
            event_name(r.event),
            direction_name(r.direction),
            verdict_name(r.verdict),
        );
        let (first, last) = (ns(r.first_seen_ns), ns(r.last_seen_ns));
        let proto = proto_name(r.proto);
        let (local_ip, remote_ip) = (r.local.ip().to_string(), r.remote.ip().to_string());
        let (local_port, remote_port) = (i32::from(r.local.port()), i32::from(r.remote.port()));
        let (bytes_out, bytes_in) = (ns(r.bytes_out), ns(r.bytes_in));
        let (packets_out, packets_in) = (ns(r.packets_out), ns(r.packets_in));
        let pid = proc_.map(|p| i64::from(p.pid));
        let uid = proc_.map(|p| i64::from(p.uid));
        let user = opt(proc_.and_then(|p| p.user.as_ref()));
        let comm = proc_.map(|p| text(&p.comm).into_owned());
        let exe = opt(proc_.and_then(|p| p.exe.as_ref()));
        let cmdline = opt(proc_.and_then(|p| p.cmdline.as_ref()));
        let cgroup = opt(proc_.and_then(|p| p.cgroup.as_ref()));
        let reason = opt(r.unattributed_reason.as_ref());
        let j = p.judged.as_ref();
        let (pv, rule, version) = (
            j.map(|j| j.verdict),
            j.map(|j| j.rule.as_str()),
            j.map(|j| j.version),
        );
        let row: [&(dyn ToSql + Sync); 27] = [
            &p.host_id,
            &event,
            &first,
            &last,
            &proto,
            &direction,
            &local_ip,
            &local_port,
            &remote_ip,
            &remote_port,
            &bytes_out,
            &bytes_in,
            &packets_out,
            &packets_in,
            &r.closed,
            &verdict,
            &pid,
            &uid,
            &user,
            &comm,
            &exe,
            &cmdline,
            &cgroup,
            &reason,
            &pv,
            &rule,
            &version,
        ];
        w.write(&row)?;
    }
    w.finish()?;
    Ok(())
}

fn upsert_edges(
    tx: &mut Transaction<'_>,
    st: &mut Statements,
    edges: &BTreeMap<EdgeKey, EdgeCount>,
) -> Result<(), StoreError> {
    let n = edges.len();
    let mut cols = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut flows, mut first, mut last) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for ((host, dir, proto, remote, port, exe), (count, f, l)) in edges {
        cols.0.push(*host);
        cols.1.push(*dir);
        cols.2.push(proto.as_str());
        cols.3.push(remote.as_str());
        cols.4.push(*port);
        cols.5.push(exe.as_str());
        flows.push(*count);
        first.push(*f);
        last.push(*l);
    }
    let upsert = st.get(tx, UPSERT_EDGES)?;
    tx.execute(
        &upsert,
        &[
            &cols.0, &cols.1, &cols.2, &cols.3, &cols.4, &cols.5, &flows, &first, &last,
        ],
    )?;
    Ok(())
}
