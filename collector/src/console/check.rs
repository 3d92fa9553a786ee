//! "What would this policy say": a hypothetical flow judged against any version (a draft
//! before it is published, or an old one), with the hosts' names, labels and addresses as
//! they are now, by the same evaluator the ingest writer runs on every record.
use std::{net::IpAddr, sync::Arc};

use axum::{
    extract::{Path, Query, State},
    response::Response,
};
use maud::{Markup, html};
use serde::Deserialize;

use super::{
    layout::{badge, or_error, page},
    session::Session,
};
use crate::{
    api::{ApiError, ApiState},
    policy::{Action, Context, Evaluator, FlowView, load, state::host_context},
};

/// The flow to judge, as the reporting host would record it.
#[derive(Deserialize, Default, Clone)]
pub struct CheckForm {
    /// The reporting host: agent id or host name.
    host: Option<String>,
    /// outbound or inbound.
    direction: Option<String>,
    /// tcp or udp.
    proto: Option<String>,
    remote_ip: Option<String>,
    /// The service port: the remote one for an outbound flow, the local one inbound.
    port: Option<String>,
    /// The reporting host's process.
    exe: Option<String>,
}

/// What the policy said.
pub struct Answer {
    pub action: Action,
    pub rule: String,
    pub severity: String,
    /// The reporting host as the policy knew it (`None`: not enrolled).
    pub host_known: bool,
    /// The remote end, when it is an enrolled host.
    pub remote_host: Option<String>,
}

fn field<'a>(v: &'a Option<String>, name: &str) -> Result<&'a str, ApiError> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::bad_request(format!("`{name}` is required")))
}

/// Judges `f` against version `v`.
pub async fn judge(state: &ApiState, v: i64, f: CheckForm) -> Result<Answer, ApiError> {
    let host = field(&f.host, "host")?.to_string();
    let outbound = match f.direction.as_deref().unwrap_or("outbound") {
        "outbound" => true,
        "inbound" => false,
        other => {
            return Err(ApiError::bad_request(format!(
                "`direction`: `{other}`: outbound or inbound"
            )));
        }
    };
    let proto = match f.proto.as_deref().unwrap_or("tcp") {
        "tcp" => 6,
        "udp" => 17,
        other => {
            return Err(ApiError::bad_request(format!(
                "`proto`: `{other}`: tcp or udp"
            )));
        }
    };
    let remote_ip: IpAddr = field(&f.remote_ip, "remote_ip")?
        .parse()
        .map_err(|_| ApiError::bad_request("`remote_ip`: not an IP address"))?;
    let port: u16 = field(&f.port, "port")?
        .parse()
        .map_err(|_| ApiError::bad_request("`port`: not a port (0-65535)"))?;
    let exe = f.exe.clone().filter(|e| !e.trim().is_empty());
    let (row, (hosts, ip_hosts)) = state
        .store(move |st| Ok((st.policy(Some(v))?, host_context(&**st)?)))
        .await?;
    let row = row.ok_or_else(|| ApiError::not_found(format!("no policy version {v}")))?;
    let (_, compiled) = load(&row.body)
        .map_err(|e| ApiError::internal(format!("stored policy v{v} does not compile: {e}")))?;
    // The host by agent id, else by name; an unknown one is judged as the policy judges
    // a host it does not know (only groups without host filters).
    let agent = if hosts.contains_key(&host) {
        Some(host.clone())
    } else {
        hosts
            .iter()
            .find(|(_, h)| h.name == host)
            .map(|(id, _)| id.clone())
    };
    let local_ip = agent
        .as_ref()
        .and_then(|a| {
            let mut mine: Vec<&IpAddr> = ip_hosts
                .iter()
                .filter(|(_, id)| *id == a)
                .map(|(ip, _)| ip)
                .collect();
            mine.sort();
            mine.first().map(|ip| **ip)
        })
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let remote_host = ip_hosts
        .get(&remote_ip)
        .and_then(|id| hosts.get(id))
        .map(|h| h.name.clone());
    let ctx = Arc::new(Context {
        policy: Arc::new(compiled),
        version: v,
        hosts,
        ip_hosts,
    });
    let id = agent.clone().unwrap_or(host);
    // An ephemeral port on the other side.
    let (local_port, remote_port) = if outbound {
        (49152, port)
    } else {
        (port, 49152)
    };
    let view = FlowView {
        host: &id,
        proto,
        outbound,
        local_ip,
        local_port,
        remote_ip,
        remote_port,
        exe: exe.as_deref(),
    };
    let d = Evaluator::new(ctx.clone()).evaluate(&view);
    Ok(Answer {
        action: d.action,
        rule: d.rule_name(&ctx.policy),
        severity: d.severity.as_str().to_string(),
        host_known: agent.is_some(),
        remote_host,
    })
}

/// The form, filled with what was asked.
pub fn form(v: i64, f: &CheckForm) -> Markup {
    let val = |o: &Option<String>| o.clone().unwrap_or_default();
    html! {
        form.filters #check method="get" action={ "/console/policy/" (v) "/check" } {
            label { "Host" input name="host" value=(val(&f.host)) size="16" placeholder="name or agent id"; }
            label { "Direction" select name="direction" {
                @for d in ["outbound", "inbound"] { option value=(d) selected[f.direction.as_deref() == Some(d)] { (d) } }
            } }
            label { "Proto" select name="proto" {
                @for p in ["tcp", "udp"] { option value=(p) selected[f.proto.as_deref() == Some(p)] { (p) } }
            } }
            label { "Remote IP" input name="remote_ip" value=(val(&f.remote_ip)) size="14"; }
            label { "Service port" input name="port" value=(val(&f.port)) size="6"; }
            label { "Executable" input name="exe" value=(val(&f.exe)) size="20" placeholder="any"; }
            button.primary type="submit" { "Check" }
        }
    }
}

/// `GET /console/policy/{v}/check`: the form, and with a flow filled in, the answer.
pub async fn check(
    State(state): State<ApiState>,
    s: Session,
    Path(v): Path<i64>,
    Query(f): Query<CheckForm>,
) -> Response {
    let r = async {
        let asked = f.host.is_some();
        let answer = if asked {
            Some(judge(&state, v, f.clone()).await?)
        } else {
            None
        };
        Ok::<_, ApiError>(page(
            &s,
            &format!("Check against v{v}"),
            "policy",
            html! {
                h1 { "What would " a href={ "/console/policy/" (v) } { "v" (v) } " say?" }
                p.muted { "A flow judged as the collector would judge it if v" (v) " were published, with the hosts' names, labels and addresses as they are now." }
                (form(v, &f))
                @if let Some(a) = &answer {
                    div.panel #verdict {
                        @match a.action {
                            Action::Allow => { (badge("ok", "allowed")) " — stored as permitted" },
                            Action::Deny => { (badge("bad", "denied")) " — stored as escaped (rejected where the network dropped it), severity " (a.severity) },
                        }
                        p { "Decided by " b #rule { (a.rule) } "." }
                        @if !a.host_known { p.muted { "The host is not enrolled: judged as an unknown host." } }
                        @if let Some(h) = &a.remote_host { p.muted { "The remote address is host " (h) "." } }
                    }
                }
            },
        ))
    }
    .await;
    or_error(&s, r)
}
