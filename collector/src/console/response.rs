//! Response: pending approvals (approve or deny from the console, the analyst's path of
//! the reference scenario), playbook runs with each step's timeline and the incident
//! numbers they opened, and the audit log.
use axum::{
    Form,
    extract::{Path, State},
    http::HeaderMap,
    response::{IntoResponse, Redirect, Response},
};
use maud::{Markup, html};

use super::{
    alerts::CsrfForm,
    layout::{ago, badge, csrf, error_page, or_error, page, time},
    session::Session,
};
use crate::{
    api::{ApiError, ApiState, runs::decide},
    store::RunStepRow,
};

fn run_state(s: &str) -> Markup {
    let class = match s {
        "done" | "approved" => "ok",
        "failed" | "denied" | "timed_out" => "bad",
        "waiting" | "pending" | "retry" => "warn",
        _ => "off",
    };
    badge(class, s)
}

/// What a step left behind worth showing: an incident number, a command, a decision.
fn step_detail(st: &RunStepRow) -> Markup {
    let d = &st.detail;
    html! {
        @for key in ["outcome", "decided_by", "result", "incident", "command", "approval", "error", "text"] {
            @if let Some(v) = d.get(key).filter(|v| !v.is_null()) {
                span.muted { (key) ": " } code { (v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())) } " "
            }
        }
    }
}

/// `GET /console/response`: pending approvals first, then recent runs.
pub async fn overview(State(state): State<ApiState>, s: Session) -> Response {
    let r = async {
        let (pending, runs) = state
            .store(|st| Ok((st.approvals(Some("pending"), 100)?, st.runs(None, 100)?)))
            .await?;
        Ok::<_, ApiError>(page(
            &s,
            "Response",
            "response",
            html! {
                h1 { "Response" }
                h2 { "Pending approvals " span.muted { (pending.len()) } }
                @if pending.is_empty() { p.muted #no-approvals { "Nothing waits for a decision." } }
                @else {
                    table #approvals {
                        thead { tr { th { "#" } th { "Run" } th { "Step" } th { "Question" } th { "Asked" } th { "Deadline" } @if s.can_act() { th {} } } }
                        tbody { @for a in &pending { tr data-approval=(a.id) {
                            td { (a.id) }
                            td { a href={ "/console/runs/" (a.run_id) } { "run " (a.run_id) } }
                            td { (a.step) }
                            td { (a.question) }
                            td { (ago(a.requested_ns)) }
                            td { (time(a.deadline_ns)) }
                            @if s.can_act() { td {
                                form.inline method="post" action={ "/console/approvals/" (a.id) "/approve" } {
                                    (csrf(&s)) button.primary type="submit" { "Approve" }
                                }
                                " "
                                form.inline method="post" action={ "/console/approvals/" (a.id) "/deny" } {
                                    (csrf(&s)) button.danger type="submit" { "Deny" }
                                }
                            } }
                        } } }
                    }
                }
                h2 { "Playbook runs" }
                table #runs {
                    thead { tr { th { "Run" } th { "Playbook" } th { "Host" } th { "State" } th { "Step" } th { "Started" } th { "Updated" } } }
                    tbody { @for r in &runs { tr {
                        td { a href={ "/console/runs/" (r.id) } { (r.id) } }
                        td { (r.playbook) }
                        td { (r.host_name) }
                        td { (run_state(&r.state)) }
                        td { (r.step.as_deref().unwrap_or("")) }
                        td { (time(r.created_ns)) }
                        td { (ago(r.updated_ns)) }
                    } } }
                }
            },
        ))
    }
    .await;
    or_error(&s, r)
}

/// `GET /console/runs/{id}`: the run and its steps as a timeline.
pub async fn run(State(state): State<ApiState>, s: Session, Path(id): Path<i64>) -> Response {
    let r = async {
        let (run, steps) = state
            .store(move |st| Ok(st.run(id)?.map(|r| (r, st.run_steps(id)))))
            .await?
            .ok_or_else(|| ApiError::not_found("no such run"))?;
        let steps = steps?;
        Ok::<_, ApiError>(page(
            &s,
            &format!("Run {id}"),
            "response",
            html! {
                h1 { "Run " (run.id) " · " (run.playbook) " " (run_state(&run.state)) }
                div.panel { dl.kv {
                    dt { "Host" } dd { a href={ "/console/hosts/" (run.agent_id) } { (run.host_name) } }
                    dt { "Alert" } dd.mono { (run.alert_key) }
                    dt { "Started" } dd { (time(run.created_ns)) }
                    dt { "Step now" } dd { (run.step.as_deref().unwrap_or("—")) }
                    @if let Some(e) = &run.error { dt { "Error" } dd { (e) } }
                } }
                h2 { "Timeline" }
                table #steps {
                    thead { tr { th { "Started" } th { "Finished" } th { "Step" } th { "Kind" } th { "State" } th { "Detail" } } }
                    tbody { @for st in &steps { tr {
                        td { (time(st.started_ns)) }
                        td { (time(st.finished_ns)) }
                        td { (st.step) }
                        td { (st.kind) }
                        td { (run_state(&st.state)) }
                        td { (step_detail(st)) }
                    } } }
                }
            },
        ))
    }
    .await;
    or_error(&s, r)
}

/// `POST /console/approvals/{id}/approve|deny`.
pub async fn decide_approval(
    State(state): State<ApiState>,
    s: Session,
    headers: HeaderMap,
    Path((id, action)): Path<(i64, String)>,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Err(r) = s.check_csrf(&headers, &f.csrf).and(s.require_admin()) {
        return r.into_response();
    }
    let decision = match action.as_str() {
        "approve" => "approved",
        "deny" => "denied",
        _ => return error_page(&s, &ApiError::not_found("no such action")),
    };
    match decide(&state, id, decision, format!("console:{}", s.token.name)).await {
        Ok(_) => Redirect::to("/console/response").into_response(),
        Err(e) => error_page(&s, &e),
    }
}

/// `GET /console/audit`: who did what, newest first.
pub async fn audit(State(state): State<ApiState>, s: Session) -> Response {
    let r = async {
        let rows = state.store(|st| st.audit_log(0, 500)).await?;
        Ok::<_, ApiError>(page(
            &s,
            "Audit",
            "audit",
            html! {
                h1 { "Audit log" }
                table #audit {
                    thead { tr { th { "Time (UTC)" } th { "Actor" } th { "Action" } th { "Target" } th { "Detail" } } }
                    tbody { @for a in &rows { tr {
                        td.mono { (time(a.ts_ns)) }
                        td { (a.actor) }
                        td { code { (a.action) } }
                        td { (a.target) }
                        td.mono { (a.detail.to_string()) }
                    } } }
                }
            },
        ))
    }
    .await;
    or_error(&s, r)
}
