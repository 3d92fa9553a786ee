//! Policy versions: apply (draft), list, show, diff, publish.
use axum::{
    Json,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
};
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiState, error::ErrorBody};
use crate::{
    ingest::now_ns,
    policy,
    store::{PolicyRow, PublishRefusal, Scope},
};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyPolicy {
    /// The policy document (YAML, see docs/policy.md).
    pub yaml: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Applied {
    pub version: i64,
    pub name: String,
    pub state: String,
}

/// A policy file's error, with where it is.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PolicyErrorBody {
    pub error: String,
    pub line: u64,
    pub column: u64,
}

/// Checks a policy and stores it as a new draft version.
#[utoipa::path(post, path = "/api/v1/policies", tag = "policy", security(("token" = [])),
    request_body = ApplyPolicy,
    responses((status = 201, body = Applied), (status = 400, body = PolicyErrorBody)))]
pub async fn apply(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Result<Json<ApplyPolicy>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Applied>), axum::response::Response> {
    use axum::response::IntoResponse;
    let by = state
        .authorize(&headers, Scope::Admin)
        .await
        .map_err(IntoResponse::into_response)?;
    let Json(req) = body.map_err(|e| ApiError::bad_request(e.body_text()).into_response())?;
    if req.yaml.len() > 4 << 20 {
        return Err(ApiError::bad_request("`yaml`: at most 4 MiB").into_response());
    }
    let (doc, _) = policy::load(&req.yaml).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            Json(PolicyErrorBody {
                error: e.to_string(),
                line: e.line,
                column: e.column,
            }),
        )
            .into_response()
    })?;
    let name = doc.name.value.clone();
    let (n, who) = (name.clone(), by.name.clone());
    let version = state
        .store(move |s| s.apply_policy(&n, &req.yaml, &who, now_ns()))
        .await
        .map_err(IntoResponse::into_response)?;
    tracing::info!(version, name = %name, by = %by.name, "policy applied (draft)");
    Ok((
        StatusCode::CREATED,
        Json(Applied {
            version,
            name,
            state: "draft".into(),
        }),
    ))
}

/// Every version, newest first.
#[utoipa::path(get, path = "/api/v1/policies", tag = "policy", security(("token" = [])),
    responses((status = 200, body = [PolicyRow])))]
pub async fn list(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<Json<Vec<PolicyRow>>, ApiError> {
    state.authorize(&headers, Scope::Read).await?;
    Ok(Json(state.store(|s| s.policies()).await?))
}

fn version(v: &str) -> Result<Option<i64>, ApiError> {
    if v == "published" {
        return Ok(None);
    }
    v.parse()
        .map(Some)
        .map_err(|_| ApiError::bad_request(format!("`{v}`: a version number or `published`")))
}

/// One version (or `published`), with its YAML.
#[utoipa::path(get, path = "/api/v1/policies/{version}", tag = "policy", security(("token" = [])),
    params(("version" = String, Path, description = "a version number, or `published`")),
    responses((status = 200, body = PolicyRow), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(v): Path<String>,
) -> Result<Json<PolicyRow>, ApiError> {
    state.authorize(&headers, Scope::Read).await?;
    let v = version(&v)?;
    state
        .store(move |s| s.policy(v))
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("no such policy version"))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DiffQuery {
    /// A version number, or `published`.
    pub from: String,
    pub to: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PolicyDiff {
    /// `- old` / `+ new` lines, item by item.
    pub changes: Vec<String>,
}

/// What changed between two versions.
#[utoipa::path(get, path = "/api/v1/policies/diff", tag = "policy", security(("token" = [])),
    params(DiffQuery), responses((status = 200, body = PolicyDiff), (status = 404, body = ErrorBody)))]
pub async fn diff(
    State(state): State<ApiState>,
    headers: HeaderMap,
    q: Result<Query<DiffQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<PolicyDiff>, ApiError> {
    state.authorize(&headers, Scope::Read).await?;
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    Ok(Json(PolicyDiff {
        changes: diff_versions(&state, &q.from, &q.to).await?,
    }))
}

/// The changes from version `from` to `to` (numbers or `published`).
pub(crate) async fn diff_versions(
    state: &ApiState,
    from: &str,
    to: &str,
) -> Result<Vec<String>, ApiError> {
    let (a, b) = (version(from)?, version(to)?);
    let (a, b) = state
        .store(move |s| Ok((s.policy(a)?, s.policy(b)?)))
        .await?;
    let load = |row: Option<PolicyRow>, which: &str| {
        let row = row.ok_or_else(|| ApiError::not_found(format!("`{which}`: no such version")))?;
        policy::parse(&row.body).map_err(|e| ApiError::internal(format!("stored policy: {e}")))
    };
    let (a, b) = (load(a, "from")?, load(b, "to")?);
    Ok(policy::diff::diff(&a, &b))
}

/// Publishes a draft: from now on every flow is judged against it.
#[utoipa::path(post, path = "/api/v1/policies/{version}/publish", tag = "policy", security(("token" = [])),
    params(("version" = i64, Path, description = "a draft version")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn publish(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(v): Path<i64>,
) -> Result<StatusCode, ApiError> {
    let by = state.authorize(&headers, Scope::Admin).await?;
    publish_version(&state, v, by.name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Publishes draft `v` as `who` and reloads the policy in force: the API's and the
/// console's path.
pub(crate) async fn publish_version(state: &ApiState, v: i64, who: String) -> Result<(), ApiError> {
    let policy = state.policy.clone();
    let by = who.clone();
    let res = state
        .store(move |s| {
            let r = s.publish_policy(v, &by, now_ns())?;
            if r.is_ok() {
                policy.reload(&**s)?;
            }
            Ok(r)
        })
        .await?;
    match res {
        Ok(()) => {
            tracing::info!(version = v, by = %who, "policy published");
            Ok(())
        }
        Err(PublishRefusal::NoSuchVersion) => Err(ApiError::not_found("no such policy version")),
        Err(PublishRefusal::NotDraft(s)) => Err(ApiError::conflict(format!(
            "version {v} is {s}; only a draft can be published"
        ))),
    }
}
