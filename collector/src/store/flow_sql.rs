//! The SQL of flow searches and summaries, written once for both backends: the two differ
//! only in how a numbered parameter is spelt (`?1` in SQLite, `$1` in PostgreSQL) and in
//! how a host filter is best resolved, and each binds the [`Arg`]s in its own types.
//!
//! A port filter matches a flow's service port — the remote port of an outbound flow, the
//! local one of an inbound flow, the port the service listens on — read newest first from
//! its expression index (`flows_service_port`, [`SERVICE_PORT`] word for word, as both
//! databases match an expression index only to the same expression): the search for a port
//! nothing used answers from the index at once instead of walking every row (14 s on 10
//! million flows before). The ephemeral side is not indexed: an index on it takes inserts
//! all over and halved the collector's ingest.
use super::FlowFilter;
use crate::store::{MAX_FLOW_LIMIT, ns};

/// A flow's service port, as `flows_service_port` indexes it.
pub(crate) const SERVICE_PORT: &str =
    "(CASE WHEN f.direction = 'inbound' THEN f.local_port ELSE f.remote_port END)";

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

/// Every condition of `f`, each starting with ` AND `.
fn conditions(q: &mut Sql, f: &FlowFilter, hosts: &Hosts<'_>) {
    if let Some(p) = f.port {
        q.push(&format!(" AND {SERVICE_PORT} = $"), Arg::Int(i32::from(p)));
    }
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
    if let Some(p) = &f.proto {
        q.push(" AND f.proto = $", Arg::Text(p.clone()));
    }
    match f.agents.as_deref() {
        None => {}
        Some([]) => q.raw(" AND false"),
        Some(agents) => {
            let marks: Vec<String> = agents.iter().map(|a| q.arg(Arg::Text(a.clone()))).collect();
            q.raw(&format!(
                " AND f.host_id IN (SELECT id FROM hosts WHERE agent_id IN ({}))",
                marks.join(", ")
            ));
        }
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
        q.push(&format!(" AND {SERVICE_PORT} <> $"), Arg::Int(i32::from(p)));
    }
    if let Some(exe) = &x.exe {
        // Unattributed flows (no executable) are not the excluded one.
        q.push(" AND (f.exe IS NULL OR f.exe <> $)", Arg::Text(exe.clone()));
    }
}

const NEWEST_FIRST: &str = " ORDER BY f.last_seen_ns DESC, f.id DESC";

/// The search: the newest rows matching `f`, [`ROW_COLUMNS`] of each.
pub(crate) fn search(f: &FlowFilter, mark: char, hosts: &Hosts<'_>) -> Sql {
    let mut q = Sql::new(mark);
    q.raw(&format!(
        "SELECT {ROW_COLUMNS} FROM flows f JOIN hosts h ON h.id = f.host_id WHERE true"
    ));
    conditions(&mut q, f, hosts);
    q.raw(NEWEST_FIRST);
    q.push(" LIMIT $", Arg::Big(limit(f) as i64));
    q
}

/// Everything of `f` but its limit, as a WHERE clause over flows `f` for a summary: the
/// window is on `last_seen_ns` at both ends (what the chart is bucketed by, and all in
/// the time index).
fn matching(q: &mut Sql, f: &FlowFilter, hosts: &Hosts<'_>) {
    q.raw(" WHERE true");
    let mut f = f.clone();
    if let Some(t) = f.until_ns.take() {
        q.push(" AND f.last_seen_ns < $", Arg::Big(ns(t)));
    }
    conditions(q, &f, hosts);
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
    q.raw(&format!(
        "SELECT {SERVICE_PORT} AS port, count(*) AS n FROM flows f"
    ));
    matching(&mut q, &f, hosts);
    q.raw(" GROUP BY port ORDER BY n DESC, port");
    q.push(" LIMIT $", Arg::Big(n as i64));
    q
}

/// A period of the per-period counts kept at ingest: its table and its length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Period {
    pub table: &'static str,
    pub ns: u64,
}

pub(crate) const MINUTE: Period = Period {
    table: "flow_minutes",
    ns: 60_000_000_000,
};
pub(crate) const HOUR: Period = Period {
    table: "flow_hours",
    ns: 3_600_000_000_000,
};
/// Both, in the order ingest writes them.
pub(crate) const PERIODS: [Period; 2] = [MINUTE, HOUR];

/// The counts a summary of a window this long reads: by the hour from 12 hours (a day is
/// 24 rows a host, not 1,440), else by the minute.
pub(crate) fn period_for(window_ns: u64) -> Period {
    if window_ns >= 12 * HOUR.ns {
        HOUR
    } else {
        MINUTE
    }
}

/// Whether a summary of `f` can be read from the per-period counts: it filters on
/// nothing but host and time.
pub(crate) fn rollup_serves(f: &FlowFilter) -> bool {
    let x = &f.exclude;
    f.remote_ip.is_none()
        && f.port.is_none()
        && f.exe.is_none()
        && f.proto.is_none()
        && f.agents.is_none()
        && f.verdict.is_none()
        && x.host.is_none()
        && x.remote_ip.is_none()
        && x.port.is_none()
        && x.exe.is_none()
}

/// A window in whole periods: [start, end), buckets of `width` periods.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Slots {
    pub period: Period,
    pub start: i64,
    pub end: i64,
    pub width: i64,
}

/// The per-period counts' FROM and WHERE for `f`'s host and the window.
fn slots_matching(q: &mut Sql, f: &FlowFilter, w: &Slots, hosts: &Hosts<'_>) {
    q.raw(&format!(" FROM {} m", w.period.table));
    q.push(" WHERE m.period >= $", Arg::Big(w.start));
    q.push(" AND m.period < $", Arg::Big(w.end));
    match (&f.host, hosts) {
        (None, _) => {}
        (Some(_), Hosts::Ids(ids)) => {
            let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
            q.raw(&format!(" AND m.host_id IN ({})", ids.join(", ")));
        }
        (Some(h), Hosts::Select) => q.push(
            " AND m.host_id IN (SELECT id FROM hosts WHERE agent_id = $ OR host_name = $)",
            Arg::Text(h.clone()),
        ),
    }
}

/// [`series`] from the per-period counts: rows of (bucket, verdict or '', flows).
pub(crate) fn series_slots(f: &FlowFilter, w: &Slots, mark: char, hosts: &Hosts<'_>) -> Sql {
    let mut q = Sql::new(mark);
    q.push("SELECT (m.period - $)", Arg::Big(w.start));
    q.push(
        " / $ AS bucket, m.verdict, CAST(sum(m.flows) AS BIGINT)",
        Arg::Big(w.width.max(1)),
    );
    slots_matching(&mut q, f, w, hosts);
    q.raw(" GROUP BY bucket, m.verdict");
    q
}

/// [`top_hosts`] from the per-period counts.
pub(crate) fn top_hosts_slots(
    f: &FlowFilter,
    w: &Slots,
    n: usize,
    mark: char,
    hosts: &Hosts<'_>,
) -> Sql {
    let mut q = Sql::new(mark);
    q.raw(
        "SELECT h.host_name, t.n FROM (SELECT m.host_id AS hid, CAST(sum(m.flows) AS BIGINT) AS n",
    );
    slots_matching(&mut q, f, w, hosts);
    q.raw(" GROUP BY m.host_id ORDER BY n DESC, hid");
    q.push(" LIMIT $", Arg::Big(n as i64));
    q.raw(") t JOIN hosts h ON h.id = t.hid ORDER BY t.n DESC, h.host_name");
    q
}

/// One flow whole: [`ROW_COLUMNS`], then agent id, packets both ways, closed, uid, user,
/// comm, cmdline, cgroup and unattributed reason; the id is parameter 1.
pub(crate) fn detail(mark: char) -> String {
    format!(
        "SELECT {ROW_COLUMNS}, h.agent_id, f.packets_out, f.packets_in, f.closed, f.uid, \
         f.user_name, f.comm, f.cmdline, f.cgroup, f.unattributed_reason \
         FROM flows f JOIN hosts h ON h.id = f.host_id WHERE f.id = {mark}1"
    )
}

/// A summary's window and its three statements: series (bucket, verdict, flows), top
/// hosts (name, flows) and most escaped ports (port, flows).
pub(crate) struct SummaryPlan {
    pub start_ns: u64,
    pub width_ns: u64,
    pub buckets: usize,
    pub series: Sql,
    pub top_hosts: Sql,
    pub escaped_ports: Sql,
}

/// The summary of `f`: from the per-period counts when they serve it, else from the flows.
pub(crate) fn summary(
    f: &FlowFilter,
    buckets: usize,
    now_ns: u64,
    mark: char,
    hosts: &Hosts<'_>,
) -> SummaryPlan {
    let ((start_ns, width_ns, n), slots) = if rollup_serves(f) {
        let (w, s) = super::flows::slot_window(f, buckets, now_ns);
        (w, Some(s))
    } else {
        (super::flows::window(f, buckets, now_ns), None)
    };
    let mut f = f.clone();
    f.since_ns = Some(f.since_ns.unwrap_or(start_ns));
    let (series, top_hosts) = match &slots {
        Some(w) => (
            series_slots(&f, w, mark, hosts),
            top_hosts_slots(&f, w, super::TOP_N, mark, hosts),
        ),
        None => (
            series(&f, width_ns, mark, hosts),
            self::top_hosts(&f, super::TOP_N, mark, hosts),
        ),
    };
    SummaryPlan {
        start_ns,
        width_ns,
        buckets: n,
        series,
        top_hosts,
        escaped_ports: top_escaped_ports(&f, super::TOP_N, mark, hosts),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_search_uses_the_service_port_expression_and_numbers_parameters_in_order() {
        let f = FlowFilter {
            port: Some(443),
            exe: Some("/usr/bin/curl".into()),
            limit: 5,
            ..Default::default()
        };
        let q = search(&f, '$', &Hosts::Select);
        assert!(
            q.text.contains(&format!("{SERVICE_PORT} = $1")),
            "{}",
            q.text
        );
        assert!(q.text.contains("f.exe = $2"), "{}", q.text);
        assert!(q.text.ends_with("LIMIT $3"), "{}", q.text);
        assert_eq!(
            q.args,
            vec![
                Arg::Int(443),
                Arg::Text("/usr/bin/curl".into()),
                Arg::Big(5)
            ]
        );
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
