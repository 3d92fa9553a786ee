//! Flows: search by host, remote address, port, executable, verdict and time, include a
//! value with one click, and the live view (server-sent events: rows matching the same
//! filters appear as they are stored).
use std::{convert::Infallible, time::Duration};

use axum::{
    extract::{Query, State},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use maud::{Markup, html};

use super::{
    layout::{badge, or_error, page, time},
    session::Session,
    summary,
};
use crate::{
    api::{
        ApiError, ApiState,
        flows::{FlowQuery, next_page},
    },
    store::FlowRow,
};

/// The chart's and tops' window when the search sets no `since`: the cost of a summary
/// grows with the flows in its window.
const SUMMARY_WINDOW: Duration = Duration::from_secs(3600);
const SUMMARY_BUCKETS: usize = 60;

fn summary_default(q: &FlowQuery) -> bool {
    q.since.is_none()
}

/// The query string for `q` with `key` set to `value` (or removed, for an empty value).
fn with(q: &FlowQuery, key: &str, value: &str) -> String {
    let mut pairs: Vec<(&str, String)> = [
        ("host", &q.host),
        ("remote_ip", &q.remote_ip),
        ("port", &q.port),
        ("exe", &q.exe),
        ("proto", &q.proto),
        ("group", &q.group),
        ("verdict", &q.verdict),
        ("since", &q.since),
        ("until", &q.until),
        ("limit", &q.limit),
        ("not_host", &q.not_host),
        ("not_remote_ip", &q.not_remote_ip),
        ("not_port", &q.not_port),
        ("not_exe", &q.not_exe),
        ("before", &q.before),
    ]
    .into_iter()
    .filter(|(k, _)| *k != key)
    .filter_map(|(k, v)| v.clone().filter(|v| !v.is_empty()).map(|v| (k, v)))
    .collect();
    if !value.is_empty() {
        pairs.push((key, value.to_string()));
    }
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        ser.append_pair(k, &v);
    }
    ser.finish()
}

/// Empty form fields mean "no filter".
fn cleaned(mut q: FlowQuery) -> FlowQuery {
    for v in [
        &mut q.host,
        &mut q.remote_ip,
        &mut q.port,
        &mut q.exe,
        &mut q.proto,
        &mut q.group,
        &mut q.verdict,
        &mut q.since,
        &mut q.until,
        &mut q.limit,
        &mut q.not_host,
        &mut q.not_remote_ip,
        &mut q.not_port,
        &mut q.not_exe,
        &mut q.before,
    ] {
        if v.as_deref().is_some_and(|s| s.trim().is_empty()) {
            *v = None;
        }
    }
    q
}

/// The one-click filter beside a value: only this value (+).
fn only(q: &FlowQuery, key: &str, value: &str) -> Markup {
    html! { a.pill href={ "/console/flows?" (with(q, key, value)) } title={ "only " (key) " = " (value) } { "+" } }
}

/// The one-click filters beside a value: only this value (+), everything but it (−).
fn include(q: &FlowQuery, key: &str, value: &str) -> Markup {
    let not = format!("not_{key}");
    html! {
        (only(q, key, value))
        a.pill.exclude href={ "/console/flows?" (with(q, &not, value)) } title={ "all but " (key) " = " (value) } { "−" }
    }
}

fn verdict_badge(v: Option<&str>) -> Markup {
    match v {
        Some("permitted") => badge("ok", "permitted"),
        Some("escaped") => badge("bad", "escaped"),
        Some("rejected") => badge("warn", "rejected"),
        Some(other) => badge("off", other),
        None => badge("off", "no policy"),
    }
}

/// One table row (also what the live view sends).
pub fn row(q: &FlowQuery, f: &FlowRow) -> Markup {
    let port = if f.direction == "inbound" {
        f.local_port
    } else {
        f.remote_port
    };
    html! {
        tr data-port=(port) {
            td.mono title={ "first seen " (time(f.first_seen_ns)) } { a href={ "/console/flows/" (f.id) } { (time(f.last_seen_ns)) } }
            td { (f.host) (include(q, "host", &f.host)) }
            td { (f.direction) }
            td { (f.proto) (only(q, "proto", &f.proto)) }
            td.mono { (f.local_ip) ":" (f.local_port) }
            td.mono { (f.remote_ip) ":" (f.remote_port) (include(q, "remote_ip", &f.remote_ip)) }
            td { (port) (include(q, "port", &port.to_string())) }
            td.mono { @if let Some(e) = &f.exe { (e) (include(q, "exe", e)) } @else { span.muted { "unattributed" } } }
            td.num { (f.bytes_out) " / " (f.bytes_in) }
            td { (verdict_badge(f.policy_verdict.as_deref()))
                 @if let Some(r) = &f.policy_rule { br; span.muted { (r) } } }
        }
    }
}

fn filters(q: &FlowQuery) -> Markup {
    let v = |o: &Option<String>| o.clone().unwrap_or_default();
    html! {
        form.filters #filters method="get" action="/console/flows" {
            label { "Host" input name="host" value=(v(&q.host)) size="14"; }
            label { "Remote IP" input name="remote_ip" value=(v(&q.remote_ip)) size="14"; }
            label { "Port" input name="port" value=(v(&q.port)) size="6"; }
            label { "Executable" input name="exe" value=(v(&q.exe)) size="22"; }
            label { "Proto" select name="proto" {
                @for (val, text) in [("", "any"), ("tcp", "tcp"), ("udp", "udp"), ("icmp", "icmp"), ("icmpv6", "icmpv6")] {
                    option value=(val) selected[q.proto.as_deref().unwrap_or("") == val] { (text) }
                }
            } }
            label { "Group" input name="group" value=(v(&q.group)) size="12" placeholder="published policy"; }
            label { "Verdict" select name="verdict" {
                @for (val, text) in [("", "any"), ("permitted", "permitted"), ("escaped", "escaped"), ("rejected", "rejected")] {
                    option value=(val) selected[q.verdict.as_deref().unwrap_or("") == val] { (text) }
                }
            } }
            label { "Since" input name="since" value=(v(&q.since)) size="10" placeholder="15m, RFC 3339"; }
            label { "Until" input name="until" value=(v(&q.until)) size="10"; }
            label { "Rows" input name="limit" value=(v(&q.limit)) size="5" placeholder="100"; }
            @for (key, val) in [("host", &q.not_host), ("remote_ip", &q.not_remote_ip), ("port", &q.not_port), ("exe", &q.not_exe)] {
                @if let Some(val) = val {
                    @let field = format!("not_{key}");
                    input type="hidden" name=(field) value=(val);
                    a.chip href={ "/console/flows?" (with(q, &field, "")) } title="remove this exclusion" { "not " (key) " " (val) " ×" }
                }
            }
            button.primary type="submit" { "Search" }
            a href="/console/flows" { "Clear" }
        }
    }
}

/// `GET /console/flows`.
pub async fn search(
    State(state): State<ApiState>,
    s: Session,
    Query(q): Query<FlowQuery>,
) -> Response {
    let q = cleaned(q);
    let r = async {
        let filter = q.resolve(&state, std::time::SystemTime::now()).await?;
        let limit = crate::store::flow_limit(&filter);
        let mut window = filter.clone();
        window.before = None;
        if window.since_ns.is_none() {
            window.since_ns = Some(crate::ingest::now_ns().saturating_sub(SUMMARY_WINDOW.as_nanos() as u64));
        }
        let (rows, summary) = state
            .store(move |st| Ok((st.flows(&filter)?, st.flow_summary(&window, SUMMARY_BUCKETS)?)))
            .await?;
        Ok::<_, ApiError>(page(
            &s,
            "Flows",
            "flows",
            html! {
                h1 { "Flows" }
                (filters(&q))
                (summary::chart(&summary))
                (summary::tops(&summary, |k, v| format!("/console/flows?{}", with(&q, k, v))))
                p {
                    // An older page does not take live rows at its top.
                    label { input type="checkbox" #live checked[q.before.is_none()]
                        data-src={ "/console/flows/live?" (with(&FlowQuery { before: None, ..q.clone() }, "limit", "")) }; " Live: new flows appear at the top" }
                    " · " span.muted #count { (rows.len()) " shown, newest first" }
                    @if q.before.is_some() { " · " a #newest href={ "/console/flows?" (with(&q, "before", "")) } { "← Newest" } }
                    @if let (true, Some(last)) = (rows.len() == limit, rows.last()) {
                        " · " a #older href={ "/console/flows?" (with(&q, "before", &next_page(last))) } { "Older →" }
                    }
                    @if summary_default(&q) { " · " span.muted { "chart and tops: the last hour (set Since for another window)" } }
                }
                table #flows {
                    thead { tr {
                        th { "Last seen (UTC)" } th { "Host" } th { "Dir" } th { "Proto" } th { "Local" }
                        th { "Remote" } th { "Port" } th { "Process" } th.num { "Bytes out / in" } th { "Verdict" }
                    } }
                    tbody #flow-rows { @for f in &rows { (row(&q, f)) } }
                }
            },
        ))
    }
    .await;
    or_error(&s, r)
}

/// `GET /console/flows/live`: rows stored after the stream opened that match the
/// filters, once a second as an SSE `flow` event.
pub async fn live(
    State(state): State<ApiState>,
    _s: Session,
    Query(q): Query<FlowQuery>,
) -> Response {
    let q = cleaned(q);
    let mut filter = match q.resolve(&state, std::time::SystemTime::now()).await {
        Ok(f) => f,
        Err(e) => return (e.status(), e.message().to_string()).into_response(),
    };
    filter.limit = 200;
    let mut after = crate::ingest::now_ns();
    let stream = async_stream(move |tx| async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let mut f = filter.clone();
            f.since_ns = Some(f.since_ns.unwrap_or(0).max(after + 1));
            let Ok(mut rows) = state.store(move |st| st.flows(&f)).await else {
                continue;
            };
            if rows.is_empty() {
                continue;
            }
            after = rows.iter().map(|r| r.last_seen_ns).max().unwrap_or(after);
            rows.reverse();
            let html: String = rows.iter().map(|r| row(&q, r).into_string()).collect();
            if tx
                .send(Event::default().event("flow").data(html))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// A stream fed by a task through a small channel; the task ends when the client goes.
fn async_stream<F, Fut>(f: F) -> impl futures_core::Stream<Item = Result<Event, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Event>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tokio::spawn(f(tx));
    ReceiverStream(rx)
}

struct ReceiverStream(tokio::sync::mpsc::Receiver<Event>);

impl futures_core::Stream for ReceiverStream {
    type Item = Result<Event, Infallible>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|o| o.map(Ok))
    }
}

/// `GET /console/flows/{id}`: one record, whole.
pub async fn detail(
    State(state): State<ApiState>,
    s: Session,
    axum::extract::Path(id): axum::extract::Path<i64>,
) -> Response {
    let r = async {
        let Some(d) = state.store(move |st| st.flow(id)).await? else {
            return Err(ApiError::not_found(format!("no flow record {id} (retired, or never stored)")));
        };
        let f = &d.row;
        let q = FlowQuery::default();
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "—".into());
        Ok::<_, ApiError>(page(
            &s,
            &format!("Flow {id}"),
            "flows",
            html! {
                h1 { "Flow " (id) " " (verdict_badge(f.policy_verdict.as_deref())) }
                table.kv #flow-detail {
                    tr { th { "Host" } td { a href={ "/console/hosts/" (d.agent_id) } { (f.host) } " " (include(&q, "host", &f.host)) } }
                    tr { th { "Record" } td { (f.event) @if d.closed { " (ended)" } } }
                    tr { th { "First seen" } td.mono { (time(f.first_seen_ns)) } }
                    tr { th { "Last seen" } td.mono { (time(f.last_seen_ns)) } }
                    tr { th { "Connection" } td.mono { (f.proto) " " (f.direction) " " (f.local_ip) ":" (f.local_port) " → " (f.remote_ip) ":" (f.remote_port) } }
                    tr { th { "Bytes out / in" } td.num { (f.bytes_out) " / " (f.bytes_in) } }
                    tr { th { "Packets out / in" } td.num { (d.packets_out) " / " (d.packets_in) } }
                    tr { th { "Network verdict" } td { (f.verdict) } }
                    tr { th { "Policy" } td { (verdict_badge(f.policy_verdict.as_deref()))
                        @if let Some(r) = &f.policy_rule { " " (r) }
                        @if let Some(v) = f.policy_version { " (version " a href={ "/console/policy/" (v) } { (v) } ")" } } }
                    tr { th { "Process" } td.mono { @match f.pid { Some(p) => { "pid " (p) }, None => { "—" } } } }
                    tr { th { "Executable" } td.mono { (opt(&f.exe)) } }
                    tr { th { "Command line" } td.mono #cmdline { (opt(&d.cmdline)) } }
                    tr { th { "Command" } td.mono { (opt(&d.comm)) } }
                    tr { th { "User" } td.mono { (opt(&d.user)) @if let Some(u) = d.uid { " (uid " (u) ")" } } }
                    tr { th { "Cgroup" } td.mono { (opt(&d.cgroup)) } }
                    @if let Some(r) = &d.unattributed_reason { tr { th { "Unattributed" } td { (r) } } }
                }
                p { a href={ "/console/flows?" (with(&q, "host", &f.host)) } { "Flows of " (f.host) } " · "
                    a href={ "/console/flows?" (with(&q, "remote_ip", &f.remote_ip)) } { "Flows with " (f.remote_ip) } }
            },
        ))
    }
    .await;
    or_error(&s, r)
}
