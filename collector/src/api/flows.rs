//! `GET /api/v1/flows`.
use std::time::{SystemTime, UNIX_EPOCH};

use axum::{
    Json,
    extract::{Query, State},
    http::HeaderMap,
};
use serde::Deserialize;

use super::{ApiError, ApiState, error::ErrorBody};
use crate::store::{FlowDetail, FlowExclude, FlowFilter, FlowRow, MAX_FLOW_LIMIT, Scope};

/// Filters; all given ones must match. Newest flows first.
#[derive(Clone, Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FlowQuery {
    /// Agent id or host name.
    pub host: Option<String>,
    /// The remote address (IPv4 or IPv6).
    pub remote_ip: Option<String>,
    /// The service port: the remote port of an outbound flow, the local one of an inbound.
    pub port: Option<String>,
    /// Exact executable path of the process.
    pub exe: Option<String>,
    /// Protocol: tcp, udp, icmp, icmpv6 (or ip-N).
    pub proto: Option<String>,
    /// A group of the published policy: flows of the hosts in it (by name, labels and
    /// addresses; its process filter, which is per flow, aside).
    pub group: Option<String>,
    /// Flows last seen at or after: RFC 3339 (`2026-11-28T10:00:00Z`), a duration before
    /// now (`15m`, `2h`), or Unix ns.
    pub since: Option<String>,
    /// Flows first seen before; same forms as `since`.
    pub until: Option<String>,
    /// At most this many (default 100, at most 10000).
    pub limit: Option<String>,
    /// Compliance verdict: permitted, escaped or rejected.
    pub verdict: Option<String>,
    /// Leave out this host (agent id or host name).
    pub not_host: Option<String>,
    /// Leave out this remote address.
    pub not_remote_ip: Option<String>,
    /// Leave out flows with this service port.
    pub not_port: Option<String>,
    /// Leave out this executable (unattributed flows stay).
    pub not_exe: Option<String>,
    /// The next page: `LAST_SEEN_NS.ID` of the previous page's last row (as
    /// `next` in a console page's "Older" link); the flows after it, newest first.
    pub before: Option<String>,
}

/// `before`: `LAST_SEEN_NS.ID`.
fn cursor(v: Option<&str>) -> Result<Option<(u64, i64)>, ApiError> {
    v.map(|v| {
        v.split_once('.')
            .and_then(|(t, id)| Some((t.parse().ok()?, id.parse().ok()?)))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "`before`: `{v}` is not LAST_SEEN_NS.ID (a row's last_seen_ns and id)"
                ))
            })
    })
    .transpose()
}

/// The `before` that continues after `row`.
pub fn next_page(row: &FlowRow) -> String {
    format!("{}.{}", row.last_seen_ns, row.id)
}

/// A point in time as Unix ns; `name` is the parameter, for the error.
pub fn parse_time(name: &str, v: &str, now: SystemTime) -> Result<u64, ApiError> {
    let ns = |t: SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    };
    if let Ok(n) = v.parse::<u64>() {
        return Ok(n);
    }
    if let Ok(t) = humantime::parse_rfc3339_weak(v) {
        return Ok(ns(t));
    }
    if let Ok(d) = humantime::parse_duration(v) {
        return Ok(ns(now.checked_sub(d).unwrap_or(UNIX_EPOCH)));
    }
    Err(ApiError::bad_request(format!(
        "`{name}`: `{v}` is neither RFC 3339, a duration like 15m, nor Unix ns"
    )))
}

fn parse<T: std::str::FromStr>(
    name: &str,
    v: Option<&str>,
    what: &str,
) -> Result<Option<T>, ApiError> {
    v.map(|v| {
        v.parse()
            .map_err(|_| ApiError::bad_request(format!("`{name}`: `{v}` is not {what}")))
    })
    .transpose()
}

impl FlowQuery {
    pub fn filter(&self, now: SystemTime) -> Result<FlowFilter, ApiError> {
        let limit: Option<usize> = parse("limit", self.limit.as_deref(), "a number")?;
        if limit.is_some_and(|l| l == 0 || l > MAX_FLOW_LIMIT) {
            return Err(ApiError::bad_request(format!(
                "`limit`: 1 to {MAX_FLOW_LIMIT}"
            )));
        }
        if let Some(v) = &self.verdict
            && !matches!(v.as_str(), "permitted" | "escaped" | "rejected")
        {
            return Err(ApiError::bad_request(format!(
                "`verdict`: `{v}`: permitted, escaped or rejected"
            )));
        }
        if let Some(p) = &self.proto
            && !(matches!(p.as_str(), "tcp" | "udp" | "icmp" | "icmpv6")
                || p.strip_prefix("ip-")
                    .is_some_and(|n| n.parse::<u8>().is_ok()))
        {
            return Err(ApiError::bad_request(format!(
                "`proto`: `{p}`: tcp, udp, icmp, icmpv6 or ip-N"
            )));
        }
        Ok(FlowFilter {
            proto: self.proto.clone(),
            agents: None,
            verdict: self.verdict.clone(),
            host: self.host.clone(),
            remote_ip: parse("remote_ip", self.remote_ip.as_deref(), "an IP address")?,
            port: parse("port", self.port.as_deref(), "a port (0-65535)")?,
            exe: self.exe.clone(),
            since_ns: self
                .since
                .as_deref()
                .map(|v| parse_time("since", v, now))
                .transpose()?,
            until_ns: self
                .until
                .as_deref()
                .map(|v| parse_time("until", v, now))
                .transpose()?,
            limit: limit.unwrap_or(0),
            exclude: FlowExclude {
                host: self.not_host.clone(),
                remote_ip: parse(
                    "not_remote_ip",
                    self.not_remote_ip.as_deref(),
                    "an IP address",
                )?,
                port: parse("not_port", self.not_port.as_deref(), "a port (0-65535)")?,
                exe: self.not_exe.clone(),
            },
            before: cursor(self.before.as_deref())?,
        })
    }
}

impl FlowQuery {
    /// [`FlowQuery::filter`], with the `group` resolved against the published policy.
    pub async fn resolve(&self, state: &ApiState, now: SystemTime) -> Result<FlowFilter, ApiError> {
        let mut f = self.filter(now)?;
        if let Some(g) = &self.group {
            f.agents = Some(group_members(state, g)?);
        }
        Ok(f)
    }
}

/// The agent ids of the hosts in group `name` of the published policy: those its host
/// filters (names, labels) admit and, if it has addresses, with an address in them.
pub fn group_members(state: &ApiState, name: &str) -> Result<Vec<String>, ApiError> {
    let ctx = state
        .policy
        .current()
        .ok_or_else(|| ApiError::bad_request("`group`: no policy is published"))?;
    let g = ctx
        .policy
        .groups
        .iter()
        .find(|g| g.name == name)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "`group`: the published policy (v{}) has no group `{name}`",
                ctx.version
            ))
        })?;
    let mut out: Vec<String> = ctx
        .hosts
        .iter()
        .filter(|(_, h)| crate::policy::eval::host_passes(g, h))
        .filter(|(id, _)| {
            g.cidr.is_empty()
                || ctx
                    .ip_hosts
                    .iter()
                    .any(|(ip, owner)| owner == *id && g.cidr.iter().any(|c| c.contains(ip)))
        })
        .map(|(id, _)| id.clone())
        .collect();
    out.sort();
    Ok(out)
}

/// Stored flow records matching the filters, newest first.
#[utoipa::path(get, path = "/api/v1/flows", tag = "flows", security(("token" = [])),
    params(FlowQuery),
    responses((status = 200, body = [FlowRow]), (status = 400, body = ErrorBody)))]
pub async fn query(
    State(state): State<ApiState>,
    headers: HeaderMap,
    q: Result<Query<FlowQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<FlowRow>>, ApiError> {
    state.authorize(&headers, Scope::Read).await?;
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let filter = q.resolve(&state, SystemTime::now()).await?;
    Ok(Json(state.store(move |s| s.flows(&filter)).await?))
}

/// One stored flow record, whole: process (cmdline, user, cgroup), counters both ways.
#[utoipa::path(get, path = "/api/v1/flows/{id}", tag = "flows", security(("token" = [])),
    params(("id" = i64, Path, description = "The record's id, as a search returns it")),
    responses((status = 200, body = FlowDetail), (status = 404, body = ErrorBody)))]
pub async fn one(
    State(state): State<ApiState>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<i64>,
) -> Result<Json<FlowDetail>, ApiError> {
    state.authorize(&headers, Scope::Read).await?;
    match state.store(move |s| s.flow(id)).await? {
        Some(f) => Ok(Json(f)),
        None => Err(ApiError::not_found(format!("no flow record {id}"))),
    }
}
