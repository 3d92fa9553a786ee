//! `GET/POST /api/v1/tokens` and `POST /api/v1/tokens/{id}/revoke` (admin scope).
use std::time::Duration;

use axum::{
    Json,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
};
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiState, error::ErrorBody};
use crate::{
    ingest::now_ns,
    store::{Scope, Store, TokenInfo},
    tokens as secrets,
};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// What it is for (shown in listings and logs).
    pub name: String,
    /// read, admin or enroll (a join token for agents).
    pub scope: String,
    /// Lifetime, e.g. `24h` or `90d`; default: 24h for join tokens, none for API tokens.
    pub expires_in: Option<String>,
    /// Join tokens: how many agents may enroll with it (default 1).
    pub uses: Option<u64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub info: TokenInfo,
    /// The secret, shown this once; the collector keeps only its hash.
    pub token: String,
}

/// Makes an API token or a join token.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", security(("token" = [])),
    request_body = NewToken,
    responses((status = 201, body = CreatedToken), (status = 400, body = ErrorBody)))]
pub async fn create(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Result<Json<NewToken>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let by = state.authorize(&headers, Scope::Admin).await?;
    let Json(req) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let created = state.store(move |s| Ok(create_token(s, &req))).await??;
    tracing::info!(id = created.info.id, name = %created.info.name, scope = created.info.scope.as_str(), by = %by.name, "token created");
    Ok((StatusCode::CREATED, Json(created)))
}

/// Checks a request for a token and makes it (also used by `cordon-collector token
/// create`, which works on the store directly to make the first admin token).
pub fn create_token(store: &mut Store, req: &NewToken) -> Result<CreatedToken, ApiError> {
    let name = req.name.trim().to_string();
    if name.is_empty() || name.len() > 128 {
        return Err(ApiError::bad_request("`name`: 1 to 128 characters"));
    }
    let scope = Scope::parse(&req.scope)
        .ok_or_else(|| ApiError::bad_request("`scope`: read, admin or enroll"))?;
    let default_life = (scope == Scope::Enroll).then_some(Duration::from_secs(24 * 3600));
    let life = match &req.expires_in {
        Some(v) => Some(
            humantime::parse_duration(v)
                .map_err(|e| ApiError::bad_request(format!("`expires_in`: `{v}`: {e}")))?,
        ),
        None => default_life,
    };
    let uses = match (scope, req.uses) {
        (Scope::Enroll, None) => Some(1),
        (Scope::Enroll, Some(0)) => return Err(ApiError::bad_request("`uses`: at least 1")),
        (Scope::Enroll, Some(n)) => Some(n),
        (_, Some(_)) => return Err(ApiError::bad_request("`uses`: only for enroll tokens")),
        (_, None) => None,
    };
    let secret = secrets::generate().map_err(|e| ApiError::internal(e.to_string()))?;
    let now = now_ns();
    let expires = life.map(|d| now.saturating_add(d.as_nanos() as u64));
    let id = store.create_token(&name, scope, &secrets::hash(&secret), now, expires, uses)?;
    let info = store
        .tokens()?
        .into_iter()
        .find(|t| t.id == id)
        .ok_or_else(|| ApiError::internal("the new token vanished"))?;
    Ok(CreatedToken {
        info,
        token: secret,
    })
}

/// Every token (never the secrets).
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens", security(("token" = [])),
    responses((status = 200, body = [TokenInfo]), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<Json<Vec<TokenInfo>>, ApiError> {
    state.authorize(&headers, Scope::Admin).await?;
    Ok(Json(state.store(|s| s.tokens()).await?))
}

/// Revokes a token: it is refused from now on.
#[utoipa::path(post, path = "/api/v1/tokens/{id}/revoke", tag = "tokens", security(("token" = [])),
    params(("id" = i64, Path, description = "token id")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn revoke(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    let by = state.authorize(&headers, Scope::Admin).await?;
    if state.store(move |s| s.revoke_token(id)).await? {
        tracing::info!(id, by = %by.name, "token revoked");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("no such token"))
    }
}
