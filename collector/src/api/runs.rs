//! Playbook runs and approvals: `GET /api/v1/runs`, `GET /api/v1/runs/{id}`,
//! `GET /api/v1/approvals`, approve and deny on the console or the CLI, and the one-time
//! approval link (its token is the credential, so it takes no API token).
use axum::{
    Json,
    extract::{Path, Query, State},
    http::HeaderMap,
};
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiState, error::ErrorBody};
use crate::{
    ingest::now_ns,
    response::approval_link,
    store::{ApprovalRow, RunRow, RunStepRow, Scope},
};

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StateQuery {
    /// Only this state (runs: running, waiting, done, failed; approvals: pending,
    /// approved, denied, timed_out).
    pub state: Option<String>,
    /// At most this many (default 100).
    pub limit: Option<usize>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunDetail {
    pub run: RunRow,
    pub steps: Vec<RunStepRow>,
    pub approvals: Vec<ApprovalRow>,
}

fn check_state(s: &Option<String>, allowed: &[&str]) -> Result<(), ApiError> {
    match s {
        Some(v) if !allowed.contains(&v.as_str()) => Err(ApiError::bad_request(format!(
            "`state`: `{v}`: one of {}",
            allowed.join(", ")
        ))),
        _ => Ok(()),
    }
}

/// Playbook runs, newest first.
#[utoipa::path(get, path = "/api/v1/runs", tag = "response", security(("token" = [])),
    params(StateQuery), responses((status = 200, body = [RunRow]), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(state): State<ApiState>,
    headers: HeaderMap,
    q: Result<Query<StateQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<RunRow>>, ApiError> {
    state.authorize(&headers, Scope::Read).await?;
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    check_state(&q.state, &["running", "waiting", "done", "failed"])?;
    let rows = state
        .store(move |s| s.runs(q.state.as_deref(), q.limit.unwrap_or(100)))
        .await?;
    Ok(Json(rows))
}

/// One run with its steps and approvals.
#[utoipa::path(get, path = "/api/v1/runs/{id}", tag = "response", security(("token" = [])),
    params(("id" = i64, Path, description = "run id")),
    responses((status = 200, body = RunDetail), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Json<RunDetail>, ApiError> {
    state.authorize(&headers, Scope::Read).await?;
    let detail = state
        .store(move |s| {
            let Some(run) = s.run(id)? else {
                return Ok(None);
            };
            let steps = s.run_steps(id)?;
            let approvals = s
                .approvals(None, 10_000)?
                .into_iter()
                .filter(|a| a.run_id == id)
                .collect();
            Ok(Some(RunDetail {
                run,
                steps,
                approvals,
            }))
        })
        .await?
        .ok_or_else(|| ApiError::not_found("no such run"))?;
    Ok(Json(detail))
}

/// Approvals, newest first.
#[utoipa::path(get, path = "/api/v1/approvals", tag = "response", security(("token" = [])),
    params(StateQuery), responses((status = 200, body = [ApprovalRow]), (status = 400, body = ErrorBody)))]
pub async fn approvals(
    State(state): State<ApiState>,
    headers: HeaderMap,
    q: Result<Query<StateQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<ApprovalRow>>, ApiError> {
    state.authorize(&headers, Scope::Read).await?;
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    check_state(&q.state, &["pending", "approved", "denied", "timed_out"])?;
    let rows = state
        .store(move |s| s.approvals(q.state.as_deref(), q.limit.unwrap_or(100)))
        .await?;
    Ok(Json(rows))
}

/// Decides approval `id` (`approved` or `denied`) as `by`: the API's and the console's
/// path.
pub(crate) async fn decide(
    state: &ApiState,
    id: i64,
    decision: &'static str,
    by: String,
) -> Result<ApprovalRow, ApiError> {
    let row = state
        .store(move |s| {
            let Some(a) = s.approval(id)? else {
                return Ok(Err(ApiError::not_found("no such approval")));
            };
            match s.decide_approval(id, decision, &by, now_ns())? {
                Some(row) => Ok(Ok(row)),
                None => Ok(Err(ApiError::conflict(format!(
                    "approval {id} is already {}",
                    a.state
                )))),
            }
        })
        .await??;
    tracing::info!(approval = id, decision, by = ?row.decided_by, "approval decided");
    Ok(row)
}

/// Approves a pending approval (its run goes on at once).
#[utoipa::path(post, path = "/api/v1/approvals/{id}/approve", tag = "response", security(("token" = [])),
    params(("id" = i64, Path, description = "approval id")),
    responses((status = 200, body = ApprovalRow), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn approve(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Json<ApprovalRow>, ApiError> {
    let by = state.authorize(&headers, Scope::Admin).await?;
    decide(&state, id, "approved", by.name).await.map(Json)
}

/// Denies a pending approval.
#[utoipa::path(post, path = "/api/v1/approvals/{id}/deny", tag = "response", security(("token" = [])),
    params(("id" = i64, Path, description = "approval id")),
    responses((status = 200, body = ApprovalRow), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn deny(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Json<ApprovalRow>, ApiError> {
    let by = state.authorize(&headers, Scope::Admin).await?;
    decide(&state, id, "denied", by.name).await.map(Json)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LinkQuery {
    /// The one-time token from the link.
    pub token: String,
    /// approve or deny.
    pub decision: String,
}

/// The one-time approval link: decides the approval if the token matches and it is
/// still pending. No API token: the link's token is the credential.
#[utoipa::path(get, path = "/api/v1/approvals/{id}/link", tag = "response",
    params(("id" = i64, Path, description = "approval id"), LinkQuery),
    responses((status = 200, body = ApprovalRow), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn link(
    State(state): State<ApiState>,
    Path(id): Path<i64>,
    q: Result<Query<LinkQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ApprovalRow>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let decision = match q.decision.as_str() {
        "approve" => "approved",
        "deny" => "denied",
        other => {
            return Err(ApiError::bad_request(format!(
                "`decision`: `{other}`: approve or deny"
            )));
        }
    };
    if q.token.len() > 128 {
        return Err(ApiError::forbidden("this link is not valid"));
    }
    let a = state
        .store(move |s| s.approval(id))
        .await?
        .ok_or_else(|| ApiError::forbidden("this link is not valid"))?;
    let valid = a.via == "link"
        && a.link_hash
            .as_deref()
            .is_some_and(|h| approval_link::matches(&q.token, h));
    if !valid {
        tracing::warn!(approval = id, "approval link with a wrong token");
        return Err(ApiError::forbidden("this link is not valid"));
    }
    decide(&state, id, decision, format!("link:{}", a.username))
        .await
        .map(Json)
}
