//! Policy learning: learn a draft from a window of flows, its statistics, approving items.
use axum::{
    Json,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
};
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiState, error::ErrorBody, flows::parse_time};
use crate::{
    ingest::now_ns,
    learn::{self, ClusterParams, GroupMode, LearnError, LearnParams, LearnReport, Partition},
    store::Scope,
};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LearnRequest {
    /// Start of the window: RFC 3339, a duration before now (24h), or Unix ns.
    pub since: String,
    /// End of the window (default now); same forms.
    pub until: Option<String>,
    /// `label:KEY` or `cidr:NET[,NET...]`: clusters never cross it.
    pub partition: Option<String>,
    /// Similarity (0 to 1) at which hosts are clustered together; default 0.6.
    pub threshold: Option<f64>,
    /// `clusters` (host name lists, default) or `labels`.
    pub groups: Option<String>,
    /// The draft's name (default `learned`).
    pub name: Option<String>,
}

/// The learned draft: its report and YAML.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Learned {
    #[serde(flatten)]
    pub report: LearnReport,
    pub yaml: String,
}

/// Learns a draft policy from the flows of a window and stores it as a new draft version
/// (approved items of the newest version with approvals are kept as they were).
#[utoipa::path(post, path = "/api/v1/learn", tag = "policy", security(("token" = [])),
    request_body = LearnRequest,
    responses((status = 201, body = Learned), (status = 400, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn learn(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Result<Json<LearnRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Learned>), ApiError> {
    let by = state.authorize(&headers, Scope::Admin).await?;
    let Json(req) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let now = std::time::SystemTime::now();
    let since_ns = parse_time("since", &req.since, now)?;
    let until_ns = match &req.until {
        Some(u) => parse_time("until", u, now)?,
        None => now_ns(),
    };
    if until_ns <= since_ns {
        return Err(ApiError::bad_request("`until` must be after `since`"));
    }
    let threshold = req.threshold.unwrap_or(0.6);
    if !(threshold > 0.0 && threshold <= 1.0) {
        return Err(ApiError::bad_request(
            "`threshold`: a number above 0, at most 1",
        ));
    }
    let partition = Partition::parse(req.partition.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::bad_request(format!("`partition`: {e}")))?;
    let groups = GroupMode::parse(req.groups.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::bad_request(format!("`groups`: {e}")))?;
    let name = req.name.unwrap_or_else(|| "learned".into());
    if name.is_empty() || name.len() > 128 {
        return Err(ApiError::bad_request("`name`: 1 to 128 characters"));
    }
    let params = LearnParams {
        since_ns,
        until_ns,
        cluster: ClusterParams {
            threshold,
            partition,
            ..ClusterParams::default()
        },
        groups,
        name,
    };
    let who = by.name.clone();
    let res = state
        .store(move |s| Ok(learn::learn_and_store(s, &params, &who, now_ns())))
        .await?;
    match res {
        Ok((report, yaml)) => {
            tracing::info!(version = report.version, records = report.records,
                clusters = report.clusters.len(), rules = report.rules.len(),
                elapsed_ms = report.elapsed_ms, by = %by.name, "policy learned (draft)");
            Ok((StatusCode::CREATED, Json(Learned { report, yaml })))
        }
        Err(LearnError::NoFlows) => Err(ApiError::unprocessable(
            "no flows were recorded in the window; learn from a longer or later one",
        )),
        Err(LearnError::Store(e)) => Err(e.into()),
        // Sparse windows can cluster poorly and give a draft beyond the parser's limits.
        Err(LearnError::Draft(e)) => Err(ApiError::unprocessable(format!(
            "the learned draft does not check ({e}); learn from a longer window or with a lower threshold"
        ))),
        Err(e) => Err(ApiError::internal(e.to_string())),
    }
}

/// The learning report stored with a learned draft: clusters, confidences, per-rule
/// statistics and flags.
#[utoipa::path(get, path = "/api/v1/policies/{version}/stats", tag = "policy", security(("token" = [])),
    params(("version" = i64, Path, description = "a learned version")),
    responses((status = 200, body = LearnReport), (status = 404, body = ErrorBody)))]
pub async fn stats(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(v): Path<i64>,
) -> Result<Json<serde_json::Value>, ApiError> {
    state.authorize(&headers, Scope::Read).await?;
    let text = state
        .store(move |s| s.learning_report(v))
        .await?
        .ok_or_else(|| ApiError::not_found("no learning report for this version"))?;
    serde_json::from_str(&text)
        .map(Json)
        .map_err(|e| ApiError::internal(format!("stored report: {e}")))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveRequest {
    /// Group names.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Rule names.
    #[serde(default)]
    pub rules: Vec<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ApprovedItems {
    pub version: i64,
    /// Every approved group and rule of the version now.
    pub groups: Vec<String>,
    pub rules: Vec<String>,
}

/// Approves groups and rules of a version by name: a later learning run copies them as
/// they are and never rewrites them.
#[utoipa::path(post, path = "/api/v1/policies/{version}/approve", tag = "policy", security(("token" = [])),
    params(("version" = i64, Path, description = "a policy version")),
    request_body = ApproveRequest,
    responses((status = 200, body = ApprovedItems), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn approve(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(v): Path<i64>,
    body: Result<Json<ApproveRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<ApprovedItems>, ApiError> {
    let by = state.authorize(&headers, Scope::Admin).await?;
    let Json(req) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    approve_items(&state, v, req, by.name).await.map(Json)
}

/// Approves the named groups and rules of version `v` as `who` (each must exist): the
/// API's and the console's path.
pub(crate) async fn approve_items(
    state: &ApiState,
    v: i64,
    req: ApproveRequest,
    who: String,
) -> Result<ApprovedItems, ApiError> {
    if req.groups.is_empty() && req.rules.is_empty() {
        return Err(ApiError::bad_request("name at least one group or rule"));
    }
    let row = state
        .store(move |s| s.policy(Some(v)))
        .await?
        .ok_or_else(|| ApiError::not_found("no such policy version"))?;
    let (_, compiled) = crate::policy::load(&row.body)
        .map_err(|e| ApiError::internal(format!("stored policy: {e}")))?;
    for g in &req.groups {
        if !compiled.groups.iter().skip(1).any(|x| &x.name == g) {
            return Err(ApiError::bad_request(format!(
                "`groups`: version {v} has no group `{g}`"
            )));
        }
    }
    for r in &req.rules {
        if !compiled.rules.iter().any(|x| &x.name == r) {
            return Err(ApiError::bad_request(format!(
                "`rules`: version {v} has no rule `{r}`"
            )));
        }
    }
    let by = who.clone();
    let a = state
        .store(move |s| {
            s.approve_items(v, &req.groups, &req.rules, &by, now_ns())?;
            s.policy_approvals(v)
        })
        .await?;
    tracing::info!(version = v, by = %who, "policy items approved");
    Ok(ApprovedItems {
        version: v,
        groups: a.groups.into_iter().map(|x| x.0).collect(),
        rules: a.rules.into_iter().map(|x| x.0).collect(),
    })
}
