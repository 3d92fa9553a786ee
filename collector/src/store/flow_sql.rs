//! The SQL of flow searches and summaries, written once for both backends: the two differ
//! only in how a numbered parameter is spelt (`?1` in SQLite, `$1` in PostgreSQL) and in
//! how a host filter is best resolved, and each binds the [`Arg`]s in its own types.
//!
//! A port filter matches either side of a flow. An `OR` of the two ports cannot be read
//! newest first from one index, so a search by port reads the newest rows of each side
//! from its own index (`flows_remote_port`, `flows_local_port`) and merges the two: the
//! search for a port nothing used answers from the indexes at once instead of walking
//! every row (14 s on 10 million flows before).
use super::FlowFilter;
use crate::store::{MAX_FLOW_LIMIT, ns};

/// A parameter value, bound by the backend.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Arg {
    /// An INTEGER column (ports).
    Int(i32),
    /// A BIGINT column (times, ids, limits).
    Big(i64),
    Text(String),
}

/// How the host filter is written.
pub(crate) enum Hosts<'a> {
    /// The matching host ids, looked up first (SQLite reads `flows_host` in order only
    /// for a list of literals).
    Ids(&'a [i64]),
    /// A sub-select on the host's name or agent id.
    Select,
}

/// A statement under construction: its text and its parameters, numbered in order.
pub(crate) struct Sql {
    mark: char,
    pub text: String,
    pub args: Vec<Arg>,
}

impl Sql {
    pub fn new(mark: char) -> Sql {
        Sql {
            mark,
            text: String::new(),
            args: Vec::new(),
        }
    }

    /// Appends `clause`, every `$` in it standing for `arg` (bound once).
    fn push(&mut self, clause: &str, arg: Arg) {
        self.args.push(arg);
        let p = format!("{}{}", self.mark, self.args.len());
        self.text.push_str(&clause.replace('$', &p));
    }

    /// Binds `arg`; returns its placeholder.
    fn arg(&mut self, arg: Arg) -> String {
        self.args.push(arg);
        format!("{}{}", self.mark, self.args.len())
    }

    fn raw(&mut self, s: &str) {
        self.text.push_str(s);
    }
}

/// The columns a [`super::FlowRow`] is read from, in order (flows `f`, hosts `h`).
pub(crate) const ROW_COLUMNS: &str = "f.id, h.host_name, f.event, f.first_seen_ns, \
     f.last_seen_ns, f.proto, f.direction, f.local_ip, f.local_port, f.remote_ip, \
     f.remote_port, f.bytes_out, f.bytes_in, f.pid, f.exe, f.verdict, f.policy_verdict, \
     f.policy_rule, f.policy_version";

/// How many columns [`ROW_COLUMNS`] has.
pub(crate) const ROW_FIELDS: usize = 19;

/// The rows a search returns: its limit, 100 by default and at most [`MAX_FLOW_LIMIT`].
pub fn limit(f: &FlowFilter) -> usize {
    match f.limit {
        0 => 100,
        n => n.min(MAX_FLOW_LIMIT),
    }
}

/// Every condition of `f` except the port, each starting with ` AND `.
fn conditions(q: &mut Sql, f: &FlowFilter, hosts: &Hosts<'_>) {
    match (&f.host, hosts) {
        (None, _) => {}
        (Some(_), Hosts::Ids(ids)) => {
            let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
            q.raw(&format!(" AND f.host_id IN ({})", ids.join(", ")));
        }
        (Some(h), Hosts::Select) => q.push(
            " AND f.host_id IN (SELECT id FROM hosts WHERE agent_id = $ OR host_name = $)",
            Arg::Text(h.clone()),
        ),
    }
    if let Some(ip) = f.remote_ip {
        q.push(" AND f.remote_ip = $", Arg::Text(ip.to_string()));
    }
    if let Some(exe) = &f.exe {
        q.push(" AND f.exe = $", Arg::Text(exe.clone()));
    }
    match f.verdict.as_deref() {
        // Violations have their own partial index, which SQLite uses only when the query
        // repeats its condition word for word (it proves no implication from a parameter),
        // and a generic PostgreSQL plan only with literals. The value is one of these two.
        Some(v @ ("escaped" | "rejected")) => q.raw(&format!(
            " AND f.policy_verdict IN ('escaped', 'rejected') AND f.policy_verdict = '{v}'"
        )),
        Some(v) => q.push(" AND f.policy_verdict = $", Arg::Text(v.to_string())),
        None => {}
    }
    if let Some(t) = f.since_ns {
        q.push(" AND f.last_seen_ns >= $", Arg::Big(ns(t)));
    }
    if let Some(t) = f.until_ns {
        q.push(" AND f.first_seen_ns < $", Arg::Big(ns(t)));
    }
    if let Some((t, id)) = f.before {
        // The first comparison alone is a range on the time index; the second breaks ties.
        let t = q.arg(Arg::Big(ns(t)));
        let id = q.arg(Arg::Big(id));
        q.raw(&format!(
            " AND f.last_seen_ns <= {t} AND (f.last_seen_ns < {t} OR f.id < {id})"
        ));
    }
    let x = &f.exclude;
    if let Some(h) = &x.host {
        q.push(
            " AND f.host_id NOT IN (SELECT id FROM hosts WHERE agent_id = $ OR host_name = $)",
            Arg::Text(h.clone()),
        );
    }
    if let Some(ip) = x.remote_ip {
        q.push(" AND f.remote_ip <> $", Arg::Text(ip.to_string()));
    }
    if let Some(p) = x.port {
        q.push(
            " AND f.remote_port <> $ AND f.local_port <> $",
            Arg::Int(i32::from(p)),
        );
    }
    if let Some(exe) = &x.exe {
        // Unattributed flows (no executable) are not the excluded one.
        q.push(" AND (f.exe IS NULL OR f.exe <> $)", Arg::Text(exe.clone()));
    }
}

const NEWEST_FIRST: &str = " ORDER BY f.last_seen_ns DESC, f.id DESC";

/// The search: the newest rows matching `f`, [`ROW_COLUMNS`] of each.
pub(crate) fn search(f: &FlowFilter, mark: char, hosts: &Hosts<'_>) -> Sql {
    let n = limit(f) as i64;
    let mut q = Sql::new(mark);
    match f.port {
        None => {
            q.raw(&format!(
                "SELECT {ROW_COLUMNS} FROM flows f JOIN hosts h ON h.id = f.host_id WHERE true"
            ));
            conditions(&mut q, f, hosts);
            q.raw(NEWEST_FIRST);
            q.push(" LIMIT $", Arg::Big(n));
        }
        Some(p) => {
            // Each side newest first from its own index, then merged (UNION drops a flow
            // that has the port on both sides).
            q.raw(&format!("SELECT {ROW_COLUMNS} FROM ("));
            for (i, side) in ["remote_port", "local_port"].iter().enumerate() {
                if i > 0 {
                    q.raw(" UNION ");
                }
                q.raw("SELECT * FROM (SELECT f.* FROM flows f WHERE true");
                conditions(&mut q, f, hosts);
                q.push(&format!(" AND f.{side} = $"), Arg::Int(i32::from(p)));
                q.raw(NEWEST_FIRST);
                q.push(" LIMIT $", Arg::Big(n));
                q.raw(&format!(") s{i}"));
            }
            q.raw(") f JOIN hosts h ON h.id = f.host_id");
            q.raw(NEWEST_FIRST);
            q.push(" LIMIT $", Arg::Big(n));
        }
    }
    q
}

/// Everything of `f` but its limit, as a WHERE clause over flows `f` for a summary: the
/// window is on `last_seen_ns` at both ends (what the chart is bucketed by, and all in
/// the time index), the port an OR (aggregates read every matching row anyway).
fn matching(q: &mut Sql, f: &FlowFilter, hosts: &Hosts<'_>) {
    q.raw(" WHERE true");
    let mut f = f.clone();
    if let Some(t) = f.until_ns.take() {
        q.push(" AND f.last_seen_ns < $", Arg::Big(ns(t)));
    }
    let f = &f;
    conditions(q, f, hosts);
    if let Some(p) = f.port {
        q.push(
            " AND (f.remote_port = $ OR f.local_port = $)",
            Arg::Int(i32::from(p)),
        );
    }
}

/// Flows matching `f` per time bucket and compliance verdict: rows of (bucket index from
/// `start_ns`, verdict or NULL, count). `f.since_ns` must be set (the window's start).
pub(crate) fn series(f: &FlowFilter, width_ns: u64, mark: char, hosts: &Hosts<'_>) -> Sql {
    let mut q = Sql::new(mark);
    let start = ns(f.since_ns.unwrap_or(0));
    q.push("SELECT (f.last_seen_ns - $)", Arg::Big(start));
    q.push(
        " / $ AS bucket, f.policy_verdict, count(*) FROM flows f",
        Arg::Big(ns(width_ns.max(1))),
    );
    matching(&mut q, f, hosts);
    q.raw(" GROUP BY bucket, f.policy_verdict");
    q
}

/// The hosts with most flows matching `f`: rows of (host name, flows). Counted per host
/// id first, so a window's flows are read from the time index alone (`flows_time` holds
/// the host and the verdict too), and only the ten winners are joined to their names.
pub(crate) fn top_hosts(f: &FlowFilter, n: usize, mark: char, hosts: &Hosts<'_>) -> Sql {
    let mut q = Sql::new(mark);
    // `+f.host_id`: grouping by the bare column let SQLite walk all of `flows_host` (in
    // host order, 10 million entries) instead of the window's range of `flows_time`.
    q.raw("SELECT h.host_name, t.n FROM (SELECT +f.host_id AS hid, count(*) AS n FROM flows f");
    matching(&mut q, f, hosts);
    q.raw(" GROUP BY hid ORDER BY n DESC, hid");
    q.push(" LIMIT $", Arg::Big(n as i64));
    q.raw(") t JOIN hosts h ON h.id = t.hid ORDER BY t.n DESC, h.host_name");
    q
}

/// The service ports (remote for outbound flows, local for inbound) of the most escaped
/// flows matching `f`: rows of (port, flows).
pub(crate) fn top_escaped_ports(f: &FlowFilter, n: usize, mark: char, hosts: &Hosts<'_>) -> Sql {
    let mut f = f.clone();
    f.verdict = Some("escaped".into());
    let mut q = Sql::new(mark);
    q.raw(
        "SELECT CASE WHEN f.direction = 'inbound' THEN f.local_port ELSE f.remote_port END \
         AS port, count(*) AS n FROM flows f",
    );
    matching(&mut q, &f, hosts);
    q.raw(" GROUP BY port ORDER BY n DESC, port");
    q.push(" LIMIT $", Arg::Big(n as i64));
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_search_merges_both_sides_and_numbers_parameters_in_order() {
        let f = FlowFilter {
            port: Some(443),
            exe: Some("/usr/bin/curl".into()),
            limit: 5,
            ..Default::default()
        };
        let q = search(&f, '$', &Hosts::Select);
        assert!(q.text.contains("f.remote_port = $2"), "{}", q.text);
        assert!(q.text.contains("f.local_port = $5"), "{}", q.text);
        assert!(q.text.contains(" UNION "), "{}", q.text);
        assert!(q.text.ends_with("LIMIT $7"), "{}", q.text);
        assert_eq!(q.args.len(), 7);
        assert_eq!(q.args[1], Arg::Int(443));
        assert_eq!(q.args[6], Arg::Big(5));
    }

    #[test]
    fn resolved_host_ids_are_literals_and_exclusions_keep_unattributed_flows() {
        let mut f = FlowFilter {
            host: Some("web-1".into()),
            ..Default::default()
        };
        f.exclude.exe = Some("/bin/sh".into());
        let q = search(&f, '?', &Hosts::Ids(&[3, 7]));
        assert!(q.text.contains("f.host_id IN (3, 7)"), "{}", q.text);
        assert!(
            q.text.contains("(f.exe IS NULL OR f.exe <> ?1)"),
            "{}",
            q.text
        );
        assert_eq!(q.args, vec![Arg::Text("/bin/sh".into()), Arg::Big(100)]);
    }
}
