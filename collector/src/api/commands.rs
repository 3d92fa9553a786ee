//! Isolation and release (`POST /api/v1/hosts/{id}/isolate|release`), the commands sent
//! to agents, and the audit log.
use std::time::SystemTime;

use axum::{
    Json,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, ApiState, error::ErrorBody, flows::parse_time};
use crate::{
    ingest::now_ns,
    store::{AuditRow, CommandRow, NewCommand, Scope},
};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IsolateRequest {
    /// Why (shown on the host and in the audit log).
    pub reason: String,
    /// Lift by itself after this long, e.g. `2h`; absent: until released.
    pub expires_in: Option<String>,
    /// Extra addresses to keep reachable (`IP:port`), on top of the agent's own
    /// allow-list; the management channel to the collector is always kept.
    #[serde(default)]
    pub allow: Vec<String>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    pub reason: Option<String>,
}

fn check_reason(r: &str) -> Result<(), ApiError> {
    if r.trim().is_empty() || r.len() > 256 {
        return Err(ApiError::bad_request("`reason`: 1 to 256 characters"));
    }
    Ok(())
}

/// Queues `cmd` for host `id` (agent id or name) and pokes its agent.
pub(crate) async fn queue(
    state: &ApiState,
    id: String,
    cmd: NewCommand,
) -> Result<CommandRow, ApiError> {
    let row = state
        .store(move |s| {
            let Some(host) = s.host(&id)? else {
                return Ok(None);
            };
            s.create_command(&host.id, &cmd, now_ns())
        })
        .await?
        .ok_or_else(|| ApiError::not_found("no such host"))?;
    let online = state.live.poke(&row.host);
    tracing::info!(host = %row.host, id = row.id, kind = %row.kind, by = %row.created_by, online, "command queued");
    Ok(row)
}

/// Isolates a host: its agent cuts it off the network except the management channel and
/// its allow-list. Delivered now, or when the agent next connects; the result shows in
/// the command and the host.
#[utoipa::path(post, path = "/api/v1/hosts/{id}/isolate", tag = "response", security(("token" = [])),
    params(("id" = String, Path, description = "agent id or host name")),
    request_body = IsolateRequest,
    responses((status = 202, body = CommandRow), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn isolate(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<IsolateRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<CommandRow>), ApiError> {
    let by = state.authorize(&headers, Scope::Admin).await?;
    let Json(req) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let cmd = isolate_command(&req, by.name)?;
    queue(&state, id, cmd)
        .await
        .map(|r| (StatusCode::ACCEPTED, Json(r)))
}

/// The isolate command for `req`, checked (reason, duration, allow-list): the API's and
/// the console's path.
pub(crate) fn isolate_command(req: &IsolateRequest, by: String) -> Result<NewCommand, ApiError> {
    check_reason(&req.reason)?;
    let expires_at = match &req.expires_in {
        Some(v) => {
            let d = humantime::parse_duration(v)
                .map_err(|e| ApiError::bad_request(format!("`expires_in`: `{v}`: {e}")))?;
            if d.is_zero() {
                return Err(ApiError::bad_request("`expires_in`: must be more than 0"));
            }
            now_ns() / 1_000_000_000 + d.as_secs().max(1)
        }
        None => 0,
    };
    if req.allow.len() > 64 {
        return Err(ApiError::bad_request("`allow`: at most 64 addresses"));
    }
    for a in &req.allow {
        a.parse::<std::net::SocketAddr>()
            .map_err(|_| ApiError::bad_request(format!("`allow`: `{a}` is not IP:port")))?;
    }
    Ok(NewCommand {
        kind: "isolate",
        body: json!({"reason": req.reason, "expires_at": expires_at, "allow": req.allow}),
        by,
    })
}

/// The release command, checked.
pub(crate) fn release_command(reason: Option<String>, by: String) -> Result<NewCommand, ApiError> {
    let reason = reason.unwrap_or_else(|| "released".into());
    check_reason(&reason)?;
    Ok(NewCommand {
        kind: "release",
        body: json!({"reason": reason}),
        by,
    })
}

/// Releases an isolated host.
#[utoipa::path(post, path = "/api/v1/hosts/{id}/release", tag = "response", security(("token" = [])),
    params(("id" = String, Path, description = "agent id or host name")),
    request_body = ReleaseRequest,
    responses((status = 202, body = CommandRow), (status = 404, body = ErrorBody)))]
pub async fn release(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Option<Json<ReleaseRequest>>,
) -> Result<(StatusCode, Json<CommandRow>), ApiError> {
    let by = state.authorize(&headers, Scope::Admin).await?;
    let req = body.map(|Json(b)| b).unwrap_or_default();
    let cmd = release_command(req.reason, by.name)?;
    queue(&state, id, cmd)
        .await
        .map(|r| (StatusCode::ACCEPTED, Json(r)))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Agent id (commands only).
    pub host: Option<String>,
    /// Entries at or after (audit only): RFC 3339, a duration before now, or Unix ns.
    pub since: Option<String>,
    pub limit: Option<usize>,
}

/// Commands sent to agents, newest first.
#[utoipa::path(get, path = "/api/v1/commands", tag = "response", security(("token" = [])),
    params(ListQuery), responses((status = 200, body = [CommandRow])))]
pub async fn list(
    State(state): State<ApiState>,
    headers: HeaderMap,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<CommandRow>>, ApiError> {
    state.authorize(&headers, Scope::Read).await?;
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = q.limit.unwrap_or(100);
    Ok(Json(
        state
            .store(move |s| s.commands(q.host.as_deref(), limit))
            .await?,
    ))
}

/// The audit log: every isolation request, result and state change, newest first.
#[utoipa::path(get, path = "/api/v1/audit", tag = "response", security(("token" = [])),
    params(ListQuery), responses((status = 200, body = [AuditRow])))]
pub async fn audit(
    State(state): State<ApiState>,
    headers: HeaderMap,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<AuditRow>>, ApiError> {
    state.authorize(&headers, Scope::Read).await?;
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let since = q
        .since
        .as_deref()
        .map(|v| parse_time("since", v, SystemTime::now()))
        .transpose()?
        .unwrap_or(0);
    let limit = q.limit.unwrap_or(100);
    Ok(Json(state.store(move |s| s.audit_log(since, limit)).await?))
}
