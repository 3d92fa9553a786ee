//! Policy: every version (the published one marked) with a diff between any two, one
//! version's document, and for a learned draft its review — groups with their members and
//! confidence, rules with their statistics — where an admin approves items (kept as they
//! are by later learning runs) and publishes.
use axum::{
    body::Bytes,
    extract::{Path, Query, State},
    http::HeaderMap,
    response::{IntoResponse, Redirect, Response},
};
use maud::{Markup, html};
use serde::Deserialize;

use super::{
    alerts::CsrfForm,
    layout::{badge, csrf, error_page, or_error, page, time},
    session::{Refused, Session},
};
use crate::{
    api::{
        ApiError, ApiState,
        learn::{ApproveRequest, approve_items},
        policies::{diff_versions, publish_version},
        reject::reject_items,
    },
    learn::LearnReport,
};

fn state_badge(s: &str) -> Markup {
    match s {
        "published" => badge("ok", "published"),
        "draft" => badge("warn", "draft"),
        other => badge("off", other),
    }
}

#[derive(Deserialize, Default)]
pub struct DiffForm {
    from: Option<String>,
    to: Option<String>,
}

/// `GET /console/policy`: the versions, and the diff asked for.
pub async fn versions(
    State(state): State<ApiState>,
    s: Session,
    Query(q): Query<DiffForm>,
) -> Response {
    let r = async {
        let rows = state.store(|st| st.policies()).await?;
        let diff = match (&q.from, &q.to) {
            (Some(a), Some(b)) if !a.is_empty() && !b.is_empty() => {
                Some((a.clone(), b.clone(), diff_versions(&state, a, b).await?))
            }
            _ => None,
        };
        let newest = rows.first().map(|r| r.version.to_string()).unwrap_or_default();
        let published = rows
            .iter()
            .find(|r| r.state == "published")
            .map(|r| r.version.to_string())
            .unwrap_or_default();
        let pick = |name: &str, chosen: &str| {
            html! {
                select name=(name) {
                    @for r in &rows {
                        option value=(r.version) selected[r.version.to_string() == chosen] {
                            "v" (r.version) " " (r.name) " (" (r.state) ")"
                        }
                    }
                }
            }
        };
        Ok::<_, ApiError>(page(
            &s,
            "Policy",
            "policy",
            html! {
                h1 { "Policy versions" }
                table #versions {
                    thead { tr { th { "Version" } th { "Name" } th { "State" } th { "Created" } th { "By" } th { "Published" } } }
                    tbody { @for r in &rows { tr data-version=(r.version) {
                        td { a href={ "/console/policy/" (r.version) } { "v" (r.version) } }
                        td { (r.name) }
                        td { (state_badge(&r.state)) }
                        td { (time(r.created_ns)) }
                        td { (r.created_by) }
                        td { @if let Some(p) = r.published_ns { (time(p)) " by " (r.published_by.as_deref().unwrap_or("")) } }
                    } } }
                }
                @if rows.len() > 1 {
                    h2 { "Compare two versions" }
                    form.filters #diff method="get" action="/console/policy" {
                        label { "From" (pick("from", q.from.as_deref().unwrap_or(if published.is_empty() { &newest } else { &published }))) }
                        label { "To" (pick("to", q.to.as_deref().unwrap_or(&newest))) }
                        button.primary type="submit" { "Diff" }
                    }
                    @if let Some((a, b, changes)) = &diff {
                        div.panel #changes {
                            h2 { "v" (a) " → v" (b) }
                            @if changes.is_empty() { p.muted { "No differences." } }
                            @for c in changes {
                                div.mono class=(if c.starts_with('+') { "add" } else if c.starts_with('-') { "del" } else { "" }) { (c) }
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

/// `GET /console/policy/{v}`: the document; for a learned version, the review.
pub async fn version(State(state): State<ApiState>, s: Session, Path(v): Path<i64>) -> Response {
    let r = async {
        let (row, report, approvals) = state
            .store(move |st| {
                Ok(st
                    .policy(Some(v))?
                    .map(|r| (r, st.learning_report(v), st.policy_approvals(v))))
            })
            .await?
            .ok_or_else(|| ApiError::not_found("no such policy version"))?;
        let report: Option<LearnReport> = report?
            .map(|t| serde_json::from_str(&t))
            .transpose()
            .map_err(|e| ApiError::internal(format!("stored report: {e}")))?;
        let approvals = approvals?;
        let group_ok = |g: &str| approvals.groups.iter().any(|(n, _)| n == g);
        let rule_ok = |g: &str| approvals.rules.iter().any(|(n, _)| n == g);
        Ok::<_, ApiError>(page(
            &s,
            &format!("Policy v{v}"),
            "policy",
            html! {
                h1 { "Policy v" (row.version) " · " (row.name) " " (state_badge(&row.state)) }
                p { a #map-link href={ "/console/policy/" (v) "/map" } { "Service map of v" (v) } }
                h2 { "What would v" (v) " say about a flow?" }
                (super::check::form(v, &Default::default()))
                @if s.can_act() && row.state == "draft" {
                    div.panel {
                        form.inline #publish method="post" action={ "/console/policy/" (v) "/publish" } {
                            (csrf(&s))
                            button.danger type="submit" { "Publish v" (v) }
                            span.muted { " from now on every flow is judged against it" }
                        }
                    }
                }
                @if let Some(rep) = &report {
                    h2 { "Learned from " (rep.records) " flow records of " (rep.hosts) " hosts, " (time(rep.since_ns)) " to " (time(rep.until_ns)) }
                    form #review method="post" action={ "/console/policy/" (v) "/approve" } {
                        (csrf(&s))
                        h2 { "Groups" }
                        table #groups {
                            thead { tr { @if s.can_act() { th { "Approve" } } th { "Group" } th.num { "Confidence" } th { "Members (confidence)" } } }
                            tbody { @for c in &rep.clusters { tr data-group=(c.group) {
                                @if s.can_act() { td {
                                    @if group_ok(&c.group) { (badge("ok", "approved")) }
                                    @else { input type="checkbox" name="group" value=(c.group); }
                                } }
                                td { b { (c.group) } @if c.replaced_by_approved { " " (badge("off", "kept approved")) } }
                                td.num { (format!("{:.2}", c.confidence)) }
                                td { @for h in &c.hosts { (h.name) " " span.muted { "(" (format!("{:.2}", h.confidence)) ")" } " " } }
                            } } }
                        }
                        h2 { "Rules" }
                        table #rules {
                            thead { tr {
                                @if s.can_act() { th { "Approve" } }
                                th { "Rule" } th { "Consumer → provider" } th { "Ports" } th { "Process" }
                                th.num { "Conversations" } th.num { "Consumers used" } th { "Last seen" } th { "Flags" }
                            } }
                            tbody { @for r in &rep.rules { tr data-rule=(r.name) {
                                @if s.can_act() { td {
                                    @if rule_ok(&r.name) || r.approved { (badge("ok", "approved")) }
                                    @else { input type="checkbox" name="rule" value=(r.name); }
                                } }
                                td { (r.name) }
                                td { (r.consumer) " → " (r.provider) }
                                td.mono { (r.ports.join(", ")) }
                                td.mono { (r.process.as_deref().unwrap_or("any")) }
                                td.num { (r.flows) }
                                td.num { (r.consumers_used) @if let Some(m) = r.consumer_members { " of " (m) } }
                                td { (time(r.last_seen_ns.unwrap_or(0))) }
                                td { @if r.broad { (badge("warn", "broad")) " " } @if r.unused { (badge("warn", "unused")) } }
                            } } }
                        }
                        @if s.can_act() { p {
                            button.primary type="submit" #approve { "Approve the checked items" } " "
                            @if row.state == "draft" {
                                button.danger type="submit" #reject formaction={ "/console/policy/" (v) "/reject" } { "Reject the checked items" }
                                span.muted { " (a new draft without them; a group takes its rules along)" }
                            }
                        } }
                    }
                }
                h2 { "Document" }
                pre.panel.mono #yaml { (row.body) }
            },
        ))
    }
    .await;
    or_error(&s, r)
}

/// `POST /console/policy/{v}/publish`.
pub async fn publish(
    State(state): State<ApiState>,
    s: Session,
    headers: HeaderMap,
    Path(v): Path<i64>,
    axum::Form(f): axum::Form<CsrfForm>,
) -> Response {
    if let Err(r) = s.check_csrf(&headers, &f.csrf).and(s.require_admin()) {
        return r.into_response();
    }
    match publish_version(&state, v, s.token.name.clone()).await {
        Ok(()) => Redirect::to(&format!("/console/policy/{v}")).into_response(),
        Err(e) => error_page(&s, &e),
    }
}

/// The checked `group` and `rule` boxes of the review form (repeated fields, so the body
/// is parsed here rather than by serde), once its CSRF token and the scope are checked.
fn checked(s: &Session, headers: &HeaderMap, body: &Bytes) -> Result<ApproveRequest, Refused> {
    let mut req = ApproveRequest::default();
    let mut token = String::new();
    for (k, val) in form_urlencoded::parse(body) {
        match &*k {
            "csrf" => token = val.into_owned(),
            "group" => req.groups.push(val.into_owned()),
            "rule" => req.rules.push(val.into_owned()),
            _ => {}
        }
    }
    s.check_csrf(headers, &token).and(s.require_admin())?;
    Ok(req)
}

/// `POST /console/policy/{v}/approve`: the checked items.
pub async fn approve(
    State(state): State<ApiState>,
    s: Session,
    headers: HeaderMap,
    Path(v): Path<i64>,
    body: Bytes,
) -> Response {
    let req = match checked(&s, &headers, &body) {
        Ok(r) => r,
        Err(r) => return r.into_response(),
    };
    match approve_items(&state, v, req, s.token.name.clone()).await {
        Ok(_) => Redirect::to(&format!("/console/policy/{v}")).into_response(),
        Err(e) => error_page(&s, &e),
    }
}

/// `POST /console/policy/{v}/reject`: a new draft without the checked items; shown next.
pub async fn reject(
    State(state): State<ApiState>,
    s: Session,
    headers: HeaderMap,
    Path(v): Path<i64>,
    body: Bytes,
) -> Response {
    let req = match checked(&s, &headers, &body) {
        Ok(r) => r,
        Err(r) => return r.into_response(),
    };
    match reject_items(&state, v, req, s.token.name.clone()).await {
        Ok(r) => Redirect::to(&format!("/console/policy/{}", r.version)).into_response(),
        Err(e) => error_page(&s, &e),
    }
}
