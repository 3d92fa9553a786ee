//! `GET /api/v1/alerts`, and snooze / mute.
use std::time::SystemTime;

use axum::{
    Json,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
};
use serde::Deserialize;

use super::{ApiError, ApiState, error::ErrorBody, flows::parse_time};
use crate::{
    ingest::now_ns,
    policy::Severity,
    store::{AlertFilter, AlertRow, Scope},
};

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AlertQuery {
    /// Agent id or host name.
    pub host: Option<String>,
    /// At least this severity: LOW, MEDIUM, HIGH, CRITICAL, IMMEDIATE_ACTION.
    pub severity: Option<String>,
    /// Alerts seen at or after (RFC 3339, a duration before now, or Unix ns).
    pub since: Option<String>,
    /// At most this many (default 100).
    pub limit: Option<usize>,
}

/// Alerts, most recently seen first.
#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerts", security(("token" = [])),
    params(AlertQuery), responses((status = 200, body = [AlertRow]), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(state): State<ApiState>,
    headers: HeaderMap,
    q: Result<Query<AlertQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<AlertRow>>, ApiError> {
    state.authorize(&headers, Scope::Read).await?;
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let filter = AlertFilter {
        host: q.host,
        min_severity: q
            .severity
            .as_deref()
            .map(|s| {
                Severity::parse(s).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "`severity`: `{s}`: LOW, MEDIUM, HIGH, CRITICAL or IMMEDIATE_ACTION"
                    ))
                })
            })
            .transpose()?,
        since_ns: q
            .since
            .as_deref()
            .map(|v| parse_time("since", v, SystemTime::now()))
            .transpose()?,
        limit: q.limit.unwrap_or(0),
    };
    Ok(Json(state.store(move |s| s.alerts(&filter)).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Snooze {
    /// How long, e.g. `1h`; `0s` ends a snooze.
    #[serde(rename = "for")]
    pub duration: String,
}

/// Snoozes an alert: it keeps counting but is not published until then.
#[utoipa::path(post, path = "/api/v1/alerts/{key}/snooze", tag = "alerts", security(("token" = [])),
    request_body = Snooze, params(("key" = String, Path, description = "key_id")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn snooze(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(key): Path<String>,
    body: Result<Json<Snooze>, axum::extract::rejection::JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let by = state.authorize(&headers, Scope::Admin).await?;
    let Json(req) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let d = humantime::parse_duration(&req.duration)
        .map_err(|e| ApiError::bad_request(format!("`for`: `{}`: {e}", req.duration)))?;
    let until = if d.is_zero() {
        0
    } else {
        now_ns().saturating_add(d.as_nanos() as u64)
    };
    let k = key.clone();
    if state.store(move |s| s.snooze_alert(&k, until)).await? {
        tracing::info!(key = %key, until, by = %by.name, "alert snoozed");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("no such alert"))
    }
}

async fn set_mute(
    state: ApiState,
    headers: HeaderMap,
    key: String,
    muted: bool,
) -> Result<StatusCode, ApiError> {
    let by = state.authorize(&headers, Scope::Admin).await?;
    let k = key.clone();
    if state.store(move |s| s.mute_alert(&k, muted)).await? {
        tracing::info!(key = %key, muted, by = %by.name, "alert mute changed");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("no such alert"))
    }
}

/// Mutes an alert: it keeps counting but is never published.
#[utoipa::path(post, path = "/api/v1/alerts/{key}/mute", tag = "alerts", security(("token" = [])),
    params(("key" = String, Path, description = "key_id")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn mute(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Result<StatusCode, ApiError> {
    set_mute(state, headers, key, true).await
}

/// Unmutes an alert.
#[utoipa::path(post, path = "/api/v1/alerts/{key}/unmute", tag = "alerts", security(("token" = [])),
    params(("key" = String, Path, description = "key_id")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn unmute(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Result<StatusCode, ApiError> {
    set_mute(state, headers, key, false).await
}
