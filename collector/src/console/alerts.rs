//! Alerts: the list with dedup counts, severity, first and last seen, the offending
//! process; muting (close) and unmuting (reopen) for admin tokens.
use axum::{
    Form,
    extract::{Path, Query, State},
    http::HeaderMap,
    response::{IntoResponse, Redirect, Response},
};
use maud::html;
use serde::Deserialize;

use super::{
    layout::{badge, csrf, error_page, or_error, page, time},
    session::Session,
};
use crate::{
    api::{ApiError, ApiState},
    store::AlertFilter,
};

#[derive(Deserialize, Default)]
pub struct AlertQuery {
    host: Option<String>,
}

fn severity(s: &str) -> maud::Markup {
    let class = match s {
        "CRITICAL" | "HIGH" => "bad",
        "MEDIUM" => "warn",
        _ => "off",
    };
    badge(class, s)
}

/// `GET /console/alerts`.
pub async fn list(
    State(state): State<ApiState>,
    s: Session,
    Query(q): Query<AlertQuery>,
) -> Response {
    let host = q.host.filter(|h| !h.is_empty());
    let r = async {
        let f = AlertFilter {
            host: host.clone(),
            limit: 500,
            ..AlertFilter::default()
        };
        let rows = state.store(move |st| st.alerts(&f)).await?;
        Ok::<_, ApiError>(page(
            &s,
            "Alerts",
            "alerts",
            html! {
                h1 { "Alerts " span.muted { (rows.len()) } }
                @if let Some(h) = &host { p { "Host " b { (h) } " · " a href="/console/alerts" { "all hosts" } } }
                table #alerts {
                    thead { tr {
                        th { "Severity" } th { "Host" } th { "Rule" } th { "Process" } th { "Flow" }
                        th.num { "Count" } th { "First seen" } th { "Last seen" } th { "State" }
                        @if s.can_act() { th {} }
                    } }
                    tbody { @for a in &rows {
                        @let d = &a.alert["alert_details_json"];
                        tr data-key=(a.key_id) {
                            td { (severity(&a.severity)) }
                            td { a href={ "/console/alerts?host=" (a.host) } { (a.host) } }
                            td { (a.rule) br; span.muted { "policy v" (a.policy_version) } }
                            td.mono { (d["process"]["exe"].as_str().unwrap_or("unknown process")) }
                            td.mono { (d["flow"]["remote_ip"].as_str().unwrap_or("")) ":" (d["flow"]["remote_port"].as_u64().map(|p| p.to_string()).unwrap_or_default()) }
                            td.num { (a.count) }
                            td { (time(a.first_ns)) }
                            td { (time(a.last_ns)) }
                            td { @if a.muted { (badge("off", "closed")) } @else { (badge("warn", "open")) } }
                            @if s.can_act() { td {
                                form.inline method="post" action={ "/console/alerts/" (a.key_id) (if a.muted { "/reopen" } else { "/close" }) } {
                                    (csrf(&s))
                                    button type="submit" { @if a.muted { "Reopen" } @else { "Close" } }
                                }
                            } }
                        }
                    } }
                }
            },
        ))
    }
    .await;
    or_error(&s, r)
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

/// `POST /console/alerts/{key}/close|reopen`: mutes or unmutes the alert.
pub async fn act(
    State(state): State<ApiState>,
    s: Session,
    headers: HeaderMap,
    Path((key, action)): Path<(String, String)>,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Err(r) = s.check_csrf(&headers, &f.csrf).and(s.require_admin()) {
        return r.into_response();
    }
    let muted = match action.as_str() {
        "close" => true,
        "reopen" => false,
        _ => return error_page(&s, &ApiError::not_found("no such action")),
    };
    let by = s.token.name.clone();
    let k = key.clone();
    let r = state
        .store(move |st| {
            let found = st.mute_alert(&k, muted)?;
            if found {
                st.audit(
                    &by,
                    if muted { "alert.close" } else { "alert.reopen" },
                    &k,
                    &serde_json::json!({"via": "console"}),
                    crate::ingest::now_ns(),
                )?;
            }
            Ok(found)
        })
        .await;
    match r {
        Ok(true) => Redirect::to("/console/alerts").into_response(),
        Ok(false) => error_page(&s, &ApiError::not_found("no such alert")),
        Err(e) => error_page(&s, &e),
    }
}
