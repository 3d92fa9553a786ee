//! `GET /api/v1/cluster`: the collector nodes, their agents and their figures, as the
//! store knows them (so any node answers for all); `POST /api/v1/cluster/nodes/{name}/forget`
//! removes a node that was taken out of the cluster.
use axum::{
    Json,
    extract::{Path, State},
    http::HeaderMap,
};
use serde::Serialize;

use super::{ApiError, ApiState, error::ErrorBody};
use crate::{
    cluster::membership::NODE_DEAD_AFTER,
    store::{NodeRow, Scope},
};

#[derive(Serialize, utoipa::ToSchema)]
pub struct NodeStatus {
    #[serde(flatten)]
    pub node: NodeRow,
    /// Whether its heartbeat is recent.
    pub up: bool,
    /// How long ago it last beat, in milliseconds.
    pub heartbeat_age_ms: u64,
    /// Host names of the agents connected to it.
    pub agents: Vec<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ClusterStatus {
    /// "cluster" (PostgreSQL and Kafka) or "single" (the embedded store).
    pub mode: String,
    /// The node that answered.
    pub answered_by: String,
    pub nodes: Vec<NodeStatus>,
    /// Agents the store records on no node that is up.
    pub agents_disconnected: Vec<String>,
}

/// Whether a node that last beat at `heartbeat_ns` counts as up at `now_ns`.
pub fn is_up(heartbeat_ns: u64, now_ns: u64) -> bool {
    now_ns.saturating_sub(heartbeat_ns) < NODE_DEAD_AFTER.as_nanos() as u64
}

/// The cluster's nodes, their agents, consumer lag and last heartbeats.
#[utoipa::path(get, path = "/api/v1/cluster", tag = "collector", security(("token" = [])),
    responses((status = 200, body = ClusterStatus), (status = 401, body = ErrorBody)))]
pub async fn status(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<Json<ClusterStatus>, ApiError> {
    state.authorize(&headers, Scope::Read).await?;
    let (nodes, hosts) = state.store(|s| Ok((s.nodes()?, s.hosts()?))).await?;
    let now = crate::ingest::now_ns();
    let mut disconnected = Vec::new();
    let mut out: Vec<NodeStatus> = nodes
        .into_iter()
        .map(|n| NodeStatus {
            up: is_up(n.heartbeat_ns, now),
            heartbeat_age_ms: now.saturating_sub(n.heartbeat_ns) / 1_000_000,
            agents: Vec::new(),
            node: n,
        })
        .collect();
    for h in hosts {
        match out
            .iter_mut()
            .find(|n| n.up && h.node.as_deref() == Some(n.node.name.as_str()))
        {
            Some(n) => n.agents.push(h.host_name),
            None => disconnected.push(h.host_name),
        }
    }
    Ok(Json(ClusterStatus {
        mode: if state.clustered { "cluster" } else { "single" }.into(),
        answered_by: state.node.clone(),
        nodes: out,
        agents_disconnected: disconnected,
    }))
}

/// Forgets a node taken out of the cluster (refused while it still beats).
#[utoipa::path(post, path = "/api/v1/cluster/nodes/{name}/forget", tag = "collector",
    security(("token" = [])), params(("name" = String, Path, description = "node name")),
    responses((status = 200, body = NodeRow), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn forget(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<NodeRow>, ApiError> {
    let token = state.authorize(&headers, Scope::Admin).await?;
    let now = crate::ingest::now_ns();
    let found = state
        .store(move |s| {
            let Some(n) = s.nodes()?.into_iter().find(|n| n.name == name) else {
                return Ok(Err(None));
            };
            if is_up(n.heartbeat_ns, now) {
                return Ok(Err(Some(n)));
            }
            s.forget_node(&n.name)?;
            s.audit(
                &token.name,
                "cluster.node_forgotten",
                &n.name,
                &serde_json::json!({"last_heartbeat_ns": n.heartbeat_ns}),
                now,
            )?;
            Ok(Ok(n))
        })
        .await?;
    match found {
        Ok(n) => Ok(Json(n)),
        Err(None) => Err(ApiError::not_found("no such node")),
        Err(Some(n)) => Err(ApiError::conflict(format!(
            "node {} is up (it beat {} ms ago): stop it first",
            n.name,
            now.saturating_sub(n.heartbeat_ns) / 1_000_000
        ))),
    }
}
