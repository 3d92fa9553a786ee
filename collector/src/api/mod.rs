//! The REST API: JSON under `/api/v1`, described by the OpenAPI document at
//! `/api/v1/openapi.json`, and Prometheus text at `/metrics`. Every route except the health
//! check (and `/metrics`, unless configured otherwise) needs `Authorization: Bearer
//! <token>` with a token whose scope allows it (`read` or `admin`; join tokens are refused).
//! The API reads the store through its own SQLite connection, so queries do not wait for
//! ingest's writes (WAL).
mod alerts;
mod cluster;
pub(crate) mod commands;
mod error;
pub(crate) mod flows;
pub(crate) mod hosts;
pub(crate) mod learn;
mod openapi;
pub(crate) mod policies;
pub(crate) mod reject;
pub(crate) mod runs;
mod tokens;

use std::sync::{Arc, Mutex};

use axum::{
    Json, Router,
    extract::{Request, State},
    http::{HeaderMap, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Serialize;

pub use error::ApiError;
pub use tokens::{CreatedToken, NewToken, create_token};

use crate::{
    ingest::Live,
    metrics::{Metrics, Outcome},
    store::{Scope, Store, StoreError, TokenInfo},
    tokens as secrets,
};

#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<Mutex<Store>>,
    pub live: Arc<Live>,
    pub metrics: Arc<Metrics>,
    pub metrics_need_token: bool,
    /// The policy in force: reloaded after a publish or a label change.
    pub policy: Arc<crate::policy::state::PolicyState>,
    /// This collector's node name.
    pub node: String,
    /// Whether it is a node of a cluster (state in PostgreSQL).
    pub clustered: bool,
    /// The web console's key for session cookies and CSRF tokens
    /// (`console::session::key_from_ca`).
    pub console_key: Arc<[u8; 32]>,
}

impl ApiState {
    /// Runs `f` on the store off the async threads.
    pub(crate) async fn store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            let mut s = store
                .lock()
                .map_err(|_| ApiError::internal("store lock poisoned"))?;
            f(&mut s).map_err(ApiError::from)
        })
        .await
        .map_err(|e| ApiError::internal(format!("store task: {e}")))?
    }

    /// The token presented with the request, if it allows `needed`.
    async fn authorize(&self, headers: &HeaderMap, needed: Scope) -> Result<TokenInfo, ApiError> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                ApiError::unauthorized("an `Authorization: Bearer <token>` header is required")
            })?;
        if !secrets::well_formed(presented) {
            return Err(ApiError::unauthorized("invalid token"));
        }
        let hash = secrets::hash(presented);
        let now = crate::ingest::now_ns();
        match self.store(move |s| s.use_token(&hash, needed, now)).await? {
            Ok(info) => Ok(info),
            Err(crate::store::TokenRefusal::Scope) => Err(ApiError::forbidden(format!(
                "this token's scope does not allow this (needs {})",
                needed.as_str()
            ))),
            Err(refusal) => {
                tracing::info!(reason = %refusal, "API token refused");
                Err(ApiError::unauthorized("invalid token"))
            }
        }
    }
}

#[cfg(test)]
impl ApiState {
    /// A single collector's state over `store`, for the API's and the console's tests.
    pub(crate) fn for_tests(store: Arc<Mutex<Store>>) -> Self {
        ApiState {
            store,
            live: Arc::new(Live::default()),
            metrics: Arc::new(Metrics::new()),
            metrics_need_token: false,
            policy: crate::policy::state::PolicyState::new(),
            node: "test-node".into(),
            clustered: false,
            console_key: Arc::new(crate::console::session::key_from_ca("test CA key")),
        }
    }
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/api/v1/health", get(health))
        .route("/api/v1/openapi.json", get(openapi::document))
        .route("/api/v1/hosts", get(hosts::list))
        .route("/api/v1/hosts/{id}", get(hosts::show))
        .route("/api/v1/hosts/{id}/revoke", post(hosts::revoke))
        .route("/api/v1/hosts/{id}/labels", post(hosts::labels))
        .route("/api/v1/hosts/{id}/isolate", post(commands::isolate))
        .route("/api/v1/hosts/{id}/release", post(commands::release))
        .route("/api/v1/commands", get(commands::list))
        .route("/api/v1/audit", get(commands::audit))
        .route(
            "/api/v1/policies",
            get(policies::list).post(policies::apply),
        )
        .route("/api/v1/policies/diff", get(policies::diff))
        .route("/api/v1/policies/{version}", get(policies::show))
        .route(
            "/api/v1/policies/{version}/publish",
            post(policies::publish),
        )
        .route("/api/v1/policies/{version}/stats", get(learn::stats))
        .route("/api/v1/policies/{version}/approve", post(learn::approve))
        .route("/api/v1/policies/{version}/reject", post(reject::reject))
        .route("/api/v1/learn", post(learn::learn))
        .route("/api/v1/alerts", get(alerts::list))
        .route("/api/v1/alerts/{key}/snooze", post(alerts::snooze))
        .route("/api/v1/alerts/{key}/mute", post(alerts::mute))
        .route("/api/v1/alerts/{key}/unmute", post(alerts::unmute))
        .route("/api/v1/flows", get(flows::query))
        .route("/api/v1/flows/{id}", get(flows::one))
        .route("/api/v1/runs", get(runs::list))
        .route("/api/v1/runs/{id}", get(runs::show))
        .route("/api/v1/approvals", get(runs::approvals))
        .route("/api/v1/approvals/{id}/approve", post(runs::approve))
        .route("/api/v1/approvals/{id}/deny", post(runs::deny))
        .route("/api/v1/approvals/{id}/link", get(runs::link))
        .route("/api/v1/cluster", get(cluster::status))
        .route("/api/v1/cluster/nodes/{name}/forget", post(cluster::forget))
        .route("/api/v1/tokens", get(tokens::list).post(tokens::create))
        .route("/api/v1/tokens/{id}/revoke", post(tokens::revoke))
        .route("/metrics", get(metrics))
        .merge(crate::console::routes())
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(middleware::from_fn_with_state(state.clone(), count))
        .with_state(state)
}

/// Counts requests by outcome.
async fn count(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    let s = res.status();
    let outcome = if s.is_success() {
        "ok"
    } else if s == StatusCode::UNAUTHORIZED || s == StatusCode::FORBIDDEN {
        "unauthorized"
    } else if s.is_client_error() {
        "client_error"
    } else {
        "server_error"
    };
    state
        .metrics
        .api_requests
        .get_or_create(&Outcome { outcome })
        .inc();
    res
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    /// "ok" when the store answers.
    pub status: String,
    pub version: String,
    /// Agents connected now.
    pub agents_connected: i64,
}

/// Liveness and readiness; needs no token.
#[utoipa::path(get, path = "/api/v1/health", tag = "collector",
    responses((status = 200, body = Health), (status = 503, body = error::ErrorBody)))]
async fn health(State(state): State<ApiState>) -> Result<Json<Health>, ApiError> {
    state
        .store(|s| s.hosts().map(|_| ()))
        .await
        .map_err(|e| ApiError::unavailable(format!("store: {}", e.message())))?;
    Ok(Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        agents_connected: state.metrics.agents_connected.get(),
    }))
}

/// Prometheus text exposition of the collector's counters.
async fn metrics(State(state): State<ApiState>, headers: HeaderMap) -> Result<Response, ApiError> {
    if state.metrics_need_token {
        state.authorize(&headers, Scope::Read).await?;
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response())
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests;
