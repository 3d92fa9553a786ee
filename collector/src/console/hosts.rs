//! Hosts: every host with its state, one host with inventory and listening sockets, and
//! isolation and release (admin tokens only, each with a confirmation step).
use axum::{
    Form,
    extract::{Path, State},
    http::HeaderMap,
    response::{IntoResponse, Redirect, Response},
};
use maud::{Markup, html};
use serde::Deserialize;

use super::{
    layout::{ago, badge, csrf, or_error, page, time},
    session::Session,
};
use crate::{
    api::{
        ApiError, ApiState,
        commands::{IsolateRequest, isolate_command, queue, release_command},
        hosts::{Host, nodes_up, with_live},
    },
    store::HostRow,
};

fn state_badges(h: &Host) -> Markup {
    html! {
        @if h.row.revoked { (badge("bad", "revoked")) " " }
        @if h.connected { (badge("ok", "connected")) } @else { (badge("off", "offline")) }
        @if h.row.isolated { " " (badge("bad", "isolated")) }
    }
}

fn isolation(r: &HostRow) -> Markup {
    html! {
        @if r.isolated {
            "since " (time(r.isolated_since_ns.unwrap_or(0)))
            @if let Some(by) = &r.isolated_by { " by " b { (by) } }
            @if let Some(why) = &r.isolation_reason { ": " (why) }
            @if let Some(e) = r.isolation_expires_ns.filter(|e| *e > 0) { br; span.muted { "lifts at " (time(e)) } }
        } @else { span.muted { "—" } }
    }
}

/// `GET /console/hosts`.
pub async fn list(State(state): State<ApiState>, s: Session) -> Response {
    let r = async {
        let (rows, up) = state.store(|st| Ok((st.hosts()?, nodes_up(st)?))).await?;
        let hosts: Vec<Host> = rows
            .into_iter()
            .map(|r| with_live(&state, r, &up))
            .collect();
        let connected = hosts.iter().filter(|h| h.connected).count();
        let isolated = hosts.iter().filter(|h| h.row.isolated).count();
        Ok::<_, ApiError>(page(
            &s,
            "Hosts",
            "hosts",
            html! {
                h1 { "Hosts " span.muted { (hosts.len()) " · " (connected) " connected · " (isolated) " isolated" } }
                table #hosts {
                    thead { tr {
                        th { "Host" } th { "State" } th { "Node" } th { "Capture" } th { "Enforcement" }
                        th { "Isolation" } th { "Agent" } th { "Last seen" }
                    } }
                    tbody {
                        @for h in &hosts {
                            tr data-host=(h.row.host_name) {
                                td { a href={ "/console/hosts/" (h.row.id) } { (h.row.host_name) } br; span.muted.mono { (h.row.id) } }
                                td { (state_badges(h)) }
                                td { (h.row.node.as_deref().filter(|_| h.connected).unwrap_or("")) }
                                td { (h.row.capture) }
                                td { (h.row.enforcement_backend.as_deref().unwrap_or("")) }
                                td { (isolation(&h.row)) }
                                td { (h.row.agent_version) }
                                td title=(time(h.row.last_seen_ns)) { (ago(h.row.last_seen_ns)) }
                            }
                        }
                    }
                }
            },
        ))
    }
    .await;
    or_error(&s, r)
}

async fn load(
    state: &ApiState,
    id: String,
) -> Result<(Host, Option<cordon_wire::Inventory>, Vec<(String, String)>), ApiError> {
    let (row, inv, labels, up) = state
        .store(move |st| {
            let Some(row) = st.host(&id)? else {
                return Ok(None);
            };
            let inv = st.inventory(&row.id)?;
            let labels = st.labels(&row.id)?;
            Ok(Some((row, inv, labels, nodes_up(st)?)))
        })
        .await?
        .ok_or_else(|| ApiError::not_found("no such host"))?;
    Ok((
        with_live(state, row, &up),
        inv,
        labels.into_iter().collect(),
    ))
}

/// `GET /console/hosts/{id}`: state, labels, inventory, listening sockets, the actions.
pub async fn show(State(state): State<ApiState>, s: Session, Path(id): Path<String>) -> Response {
    let r = async {
        let (h, inv, labels) = load(&state, id).await?;
        let r = &h.row;
        Ok(page(
            &s,
            &r.host_name,
            "hosts",
            html! {
                h1 { (r.host_name) " " (state_badges(&h)) }
                div.panel {
                    dl.kv {
                        dt { "Agent id" } dd.mono { (r.id) }
                        dt { "Node" } dd { (r.node.as_deref().filter(|_| h.connected).unwrap_or("—")) }
                        dt { "Address" } dd { (h.remote.as_deref().unwrap_or("—")) }
                        dt { "Capture" } dd { (r.capture) }
                        dt { "Enforcement" } dd { (r.enforcement_backend.as_deref().unwrap_or("—")) }
                        dt { "Isolation" } dd #isolation { (isolation(r)) }
                        dt { "Agent version" } dd { (r.agent_version) }
                        dt { "First seen" } dd { (time(r.first_seen_ns)) }
                        dt { "Last seen" } dd { (time(r.last_seen_ns)) " (" (ago(r.last_seen_ns)) ")" }
                        dt { "Labels" } dd {
                            @for (k, v) in &labels { code { (k) "=" (v) } " " }
                            @if labels.is_empty() { span.muted { "none" } }
                        }
                    }
                }
                @if s.can_act() {
                    div.panel #actions {
                        @if r.isolated {
                            a href={ "/console/hosts/" (r.id) "/release" } { button.primary #release { "Release…" } }
                        } @else {
                            a href={ "/console/hosts/" (r.id) "/isolate" } { button.danger #isolate { "Isolate…" } }
                        }
                    }
                }
                p { a href={ "/console/flows?host=" (r.id) } { "Flows of this host" } }
                @if let Some(inv) = &inv {
                    h2 { "Inventory" }
                    div.panel { dl.kv {
                        dt { "OS" } dd { (inv.os) }
                        dt { "Kernel" } dd { (inv.kernel) }
                        dt { "CPUs" } dd { (inv.cpus) }
                        dt { "Memory" } dd { (inv.memory_bytes / (1 << 20)) " MiB" }
                        dt { "Interfaces" } dd {
                            @for i in &inv.interfaces {
                                code { (i.name) } " "
                                @for a in &i.addresses { span.mono { (a.to_string()) } " " }
                                br;
                            }
                        }
                    } }
                    h2 { "Listening sockets" }
                    table #listening {
                        thead { tr { th { "Proto" } th { "Address" } th { "Process" } th { "User" } th { "Command line" } } }
                        tbody { @for l in &inv.listening { tr {
                            td { (crate::store::proto_name(l.proto)) }
                            td.mono { (l.local.to_string()) }
                            td { @if let Some(p) = &l.process { (p.exe.as_deref().unwrap_or(&p.comm)) " " span.muted { "pid " (p.pid) } } }
                            td { @if let Some(p) = &l.process { (p.user.clone().unwrap_or_else(|| p.uid.to_string())) } }
                            td.mono { @if let Some(p) = &l.process { (p.cmdline.as_deref().unwrap_or("")) } }
                        } } }
                    }
                } @else {
                    p.muted { "No inventory has arrived from this host yet." }
                }
            },
        ))
    }
    .await;
    or_error(&s, r)
}

/// `GET /console/hosts/{id}/isolate` and `/release`: the confirmation form.
pub async fn confirm(
    State(state): State<ApiState>,
    s: Session,
    Path((id, action)): Path<(String, String)>,
) -> Response {
    if let Err(r) = s.require_admin() {
        return r.into_response();
    }
    let r = async {
        let (h, _, _) = load(&state, id).await?;
        let r = &h.row;
        let isolate = match action.as_str() {
            "isolate" => true,
            "release" => false,
            _ => return Err(ApiError::not_found("no such action")),
        };
        Ok(page(
            &s,
            if isolate { "Isolate" } else { "Release" },
            "hosts",
            html! {
                h1 { @if isolate { "Isolate " } @else { "Release " } (r.host_name) "?" }
                div.panel {
                    @if isolate {
                        p { "The agent on " b { (r.host_name) } " will cut the host off the network, except the management channel to the collectors and its configured allow-list." }
                    } @else {
                        p { "The agent on " b { (r.host_name) } " will lift the isolation." }
                    }
                    form #confirm method="post" action={ "/console/hosts/" (r.id) "/" (action) } {
                        (csrf(&s))
                        p { label { "Reason " input type="text" name="reason" required maxlength="256" size="60"
                            value=[(!isolate).then_some("released from the console")]; } }
                        @if isolate {
                            p { label { "Duration "
                                select name="duration" {
                                    option value="" { "until released" }
                                    option value="15m" { "15 minutes" }
                                    option value="1h" { "1 hour" }
                                    option value="4h" { "4 hours" }
                                    option value="24h" { "24 hours" }
                                }
                            } }
                        }
                        button type="submit" class=(if isolate { "danger" } else { "primary" }) #do {
                            @if isolate { "Isolate " (r.host_name) } @else { "Release " (r.host_name) }
                        }
                        " " a href={ "/console/hosts/" (r.id) } { "Cancel" }
                    }
                }
            },
        ))
    }
    .await;
    or_error(&s, r)
}

#[derive(Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    duration: String,
}

/// `POST /console/hosts/{id}/isolate|release`.
pub async fn act(
    State(state): State<ApiState>,
    s: Session,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    Form(f): Form<ActionForm>,
) -> Response {
    if let Err(r) = s.check_csrf(&headers, &f.csrf).and(s.require_admin()) {
        return r.into_response();
    }
    let by = s.token.name.clone();
    let cmd = match action.as_str() {
        "isolate" => isolate_command(
            &IsolateRequest {
                reason: f.reason,
                expires_in: Some(f.duration).filter(|d| !d.is_empty()),
                allow: Vec::new(),
            },
            by,
        ),
        "release" => release_command(Some(f.reason), by),
        _ => Err(ApiError::not_found("no such action")),
    };
    match async { queue(&state, id, cmd?).await }.await {
        Ok(row) => Redirect::to(&format!("/console/hosts/{}", row.host)).into_response(),
        Err(e) => super::layout::error_page(&s, &e),
    }
}
