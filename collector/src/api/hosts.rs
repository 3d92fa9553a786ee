//! `GET /api/v1/hosts` and `GET /api/v1/hosts/{id}`.
use axum::{
    Json,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
};
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiState, error::ErrorBody};
use crate::store::{HostRow, Scope};

#[derive(Serialize, utoipa::ToSchema)]
pub struct Host {
    #[serde(flatten)]
    pub row: HostRow,
    /// Whether the agent is connected now.
    pub connected: bool,
    /// Its address as the collector sees it, while connected.
    pub remote: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct HostDetail {
    #[serde(flatten)]
    pub host: Host,
    /// The latest inventory: OS, kernel, CPUs, memory, interfaces and addresses,
    /// listening sockets with their processes.
    #[schema(value_type = Option<Object>)]
    pub inventory: Option<serde_json::Value>,
    /// Labels policy groups match on.
    pub labels: std::collections::BTreeMap<String, String>,
}

/// Nodes whose heartbeat is recent (in a cluster an agent may be on any of them).
pub(crate) fn nodes_up(s: &crate::store::Store) -> Result<Vec<String>, crate::store::StoreError> {
    let now = crate::ingest::now_ns();
    Ok(s.nodes()?
        .into_iter()
        .filter(|n| super::cluster::is_up(n.heartbeat_ns, now))
        .map(|n| n.name)
        .collect())
}

pub(crate) fn with_live(state: &ApiState, row: HostRow, up: &[String]) -> Host {
    let live = state.live.get(&row.id);
    let elsewhere = row
        .node
        .as_ref()
        .is_some_and(|n| *n != state.node && up.contains(n));
    Host {
        connected: live.is_some() || elsewhere,
        remote: live.map(|c| c.remote.to_string()),
        row,
    }
}

/// Every host that has connected at least once.
#[utoipa::path(get, path = "/api/v1/hosts", tag = "hosts", security(("token" = [])),
    responses((status = 200, body = [Host]), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<Json<Vec<Host>>, ApiError> {
    state.authorize(&headers, Scope::Read).await?;
    let (rows, up) = state.store(|s| Ok((s.hosts()?, nodes_up(s)?))).await?;
    Ok(Json(
        rows.into_iter()
            .map(|r| with_live(&state, r, &up))
            .collect(),
    ))
}

/// One host, by agent id (or by host name when only one host has it), with its inventory.
#[utoipa::path(get, path = "/api/v1/hosts/{id}", tag = "hosts", security(("token" = [])),
    params(("id" = String, Path, description = "agent id or host name")),
    responses((status = 200, body = HostDetail), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<HostDetail>, ApiError> {
    state.authorize(&headers, Scope::Read).await?;
    let (row, inventory) = state
        .store(move |s| {
            let Some(row) = s.host(&id)? else {
                return Ok(None);
            };
            let inv = s.inventory(&row.id)?;
            let labels = s.labels(&row.id)?;
            Ok(Some((row, (inv, labels, nodes_up(s)?))))
        })
        .await?
        .ok_or_else(|| ApiError::not_found("no such host"))?;
    let (inventory, labels, up) = inventory;
    let inventory = inventory
        .map(serde_json::to_value)
        .transpose()
        .map_err(|e| ApiError::internal(format!("inventory: {e}")))?;
    Ok(Json(HostDetail {
        host: with_live(&state, row, &up),
        inventory,
        labels,
    }))
}

/// Revokes a host's agent certificate: its connection is closed and refused from now on.
#[utoipa::path(post, path = "/api/v1/hosts/{id}/revoke", tag = "hosts", security(("token" = [])),
    params(("id" = String, Path, description = "agent id or host name")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn revoke(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let by = state.authorize(&headers, Scope::Admin).await?;
    let agent = state
        .store(move |s| {
            let Some(row) = s.host(&id)? else {
                return Ok(None);
            };
            s.revoke(&row.id)?;
            Ok(Some(row.id))
        })
        .await?
        .ok_or_else(|| ApiError::not_found("no such host"))?;
    let was_connected = state.live.disconnect(&agent, "revoked");
    tracing::warn!(agent = %agent, by = %by.name, was_connected, "agent revoked");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LabelChange {
    /// Labels to set (key → value).
    #[serde(default)]
    pub set: std::collections::BTreeMap<String, String>,
    /// Label keys to remove.
    #[serde(default)]
    pub remove: Vec<String>,
}

fn valid_label(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/' | ':'))
}

/// Sets or removes a host's labels; the policy in force sees them at once.
#[utoipa::path(post, path = "/api/v1/hosts/{id}/labels", tag = "hosts", security(("token" = [])),
    params(("id" = String, Path, description = "agent id or host name")),
    request_body = LabelChange,
    responses((status = 200, body = Object), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn labels(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<LabelChange>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<std::collections::BTreeMap<String, String>>, ApiError> {
    let by = state.authorize(&headers, Scope::Admin).await?;
    let Json(change) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    for (k, v) in &change.set {
        if !valid_label(k) || !valid_label(v) {
            return Err(ApiError::bad_request(format!(
                "`set`: `{k}={v}`: keys and values are 1 to 128 of a-z A-Z 0-9 . - _ / :"
            )));
        }
    }
    let policy = state.policy.clone();
    let labels = state
        .store(move |s| {
            let Some(row) = s.host(&id)? else {
                return Ok(None);
            };
            for (k, v) in &change.set {
                s.set_label(&row.id, k, Some(v))?;
            }
            for k in &change.remove {
                s.set_label(&row.id, k, None)?;
            }
            policy.reload(&**s)?;
            Ok(Some((row.id.clone(), s.labels(&row.id)?)))
        })
        .await?
        .ok_or_else(|| ApiError::not_found("no such host"))?;
    tracing::info!(host = %labels.0, labels = ?labels.1, by = %by.name, "labels changed");
    Ok(Json(labels.1))
}
