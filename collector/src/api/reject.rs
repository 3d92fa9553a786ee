//! Rejecting items of a learned draft: a new draft without them. A rejected group takes
//! every rule that names it along; the review (the learning report) and the approvals of
//! what remains carry over, so the new draft is reviewed and published as the old one
//! would have been. Stored versions never change: the old draft stays, for the diff.
use std::collections::BTreeSet;

use super::{ApiError, ApiState, learn::ApproveRequest};
use crate::{
    ingest::now_ns,
    learn::{
        LearnReport,
        yaml::{DocOut, GroupOut, RuleOut, emit},
    },
    policy::{Action, load, parse},
    store::Approvals,
};

/// What a rejection made.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Rejected {
    /// The new draft.
    pub version: i64,
    pub from: i64,
    pub groups: Vec<String>,
    /// The rules left out: those rejected and those of rejected groups.
    pub rules: Vec<String>,
}

/// A new draft: learned draft `v` without `req`'s groups and rules.
pub(crate) async fn reject_items(
    state: &ApiState,
    v: i64,
    req: ApproveRequest,
    who: String,
) -> Result<Rejected, ApiError> {
    if req.groups.is_empty() && req.rules.is_empty() {
        return Err(ApiError::bad_request("name at least one group or rule"));
    }
    let (row, report, approvals) = state
        .store(move |s| {
            Ok(s.policy(Some(v))?
                .map(|r| (r, s.learning_report(v), s.policy_approvals(v))))
        })
        .await?
        .ok_or_else(|| ApiError::not_found("no such policy version"))?;
    if row.state != "draft" {
        return Err(ApiError::bad_request(format!(
            "version {v} is {}: only a draft's items can be rejected",
            row.state
        )));
    }
    let mut report: LearnReport = report?
        .map(|t| serde_json::from_str(&t))
        .transpose()
        .map_err(|e| ApiError::internal(format!("stored report: {e}")))?
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "version {v} was not learned: edit its YAML and apply it instead"
            ))
        })?;
    let approvals = approvals?;
    let doc = parse(&row.body).map_err(|e| ApiError::internal(format!("stored policy: {e}")))?;
    // A learned draft ends with one catch-all that denies; anything else was edited by
    // hand and is not rewritten here.
    let plain_catch_all = doc.catch_all.len() == 1
        && doc.catch_all[0].value.scope.is_none()
        && doc.catch_all[0].value.severity.is_none()
        && doc.catch_all[0].value.action.value == Action::Deny;
    if !plain_catch_all {
        return Err(ApiError::bad_request(format!(
            "version {v} has a catch-all a learned draft does not have: edit its YAML and apply it instead"
        )));
    }
    let rule_name = |i: usize, r: &crate::policy::document::RuleDef| {
        r.name
            .as_ref()
            .map(|n| n.value.clone())
            .unwrap_or_else(|| format!("rule {}", i + 1))
    };
    let groups: BTreeSet<String> = req.groups.iter().cloned().collect();
    for g in &groups {
        if !doc.groups.contains_key(g) {
            return Err(ApiError::bad_request(format!(
                "`groups`: version {v} has no group `{g}`"
            )));
        }
        if approvals.groups.iter().any(|(n, _)| n == g) {
            return Err(ApiError::bad_request(format!(
                "`groups`: `{g}` is approved; it is not rejected"
            )));
        }
    }
    let names: Vec<String> = doc
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| rule_name(i, &r.value))
        .collect();
    for r in &req.rules {
        if !names.contains(r) {
            return Err(ApiError::bad_request(format!(
                "`rules`: version {v} has no rule `{r}`"
            )));
        }
        if approvals.rules.iter().any(|(n, _)| n == r) {
            return Err(ApiError::bad_request(format!(
                "`rules`: `{r}` is approved; it is not rejected"
            )));
        }
    }
    let mut dropped = Vec::new();
    let mut rules = Vec::new();
    for (r, name) in doc.rules.iter().zip(&names) {
        let r = &r.value;
        if req.rules.contains(name)
            || groups.contains(&r.consumer.value)
            || groups.contains(&r.provider.value)
        {
            dropped.push(name.clone());
        } else {
            rules.push(RuleOut {
                comment: None,
                ..RuleOut::from(r)
            });
        }
    }
    let out = DocOut {
        name: doc.name.value.clone(),
        header: vec![format!(
            "Learned draft v{v} without rejected items (by {who}): groups [{}], rules [{}]",
            groups.iter().cloned().collect::<Vec<_>>().join(", "),
            dropped.join(", ")
        )],
        groups: doc
            .groups
            .iter()
            .filter(|(n, _)| !groups.contains(*n))
            .map(|(n, g)| {
                (
                    n.clone(),
                    GroupOut {
                        comment: None,
                        ..GroupOut::from(&g.value)
                    },
                )
            })
            .collect(),
        rules,
    };
    let yaml = emit(&out);
    load(&yaml).map_err(|e| ApiError::internal(format!("the new draft does not compile: {e}")))?;
    report.clusters.retain(|c| !groups.contains(&c.group));
    report
        .external_groups
        .retain(|c| !groups.contains(&c.group));
    report.rules.retain(|r| !dropped.contains(&r.name));
    report.carried_from = Some(v);
    let carried = Approvals {
        version: v,
        groups: approvals.groups,
        rules: approvals.rules,
    };
    let (name, by, window) = (
        out.name.clone(),
        who.clone(),
        (report.since_ns, report.until_ns),
    );
    let json = serde_json::to_string(&report).map_err(|e| ApiError::internal(e.to_string()))?;
    let version = state
        .store(move |s| {
            s.apply_learned_policy(&name, &yaml, &by, now_ns(), window, &json, &carried)
        })
        .await?;
    // Stored again with its version, as a learning run does.
    report.version = version;
    let json = serde_json::to_string(&report).map_err(|e| ApiError::internal(e.to_string()))?;
    state
        .store(move |s| s.set_learning_report(version, &json))
        .await?;
    tracing::info!(from = v, version, by = %who, groups = ?groups, rules = ?dropped, "draft items rejected");
    Ok(Rejected {
        version,
        from: v,
        groups: groups.into_iter().collect(),
        rules: dropped,
    })
}

/// Rejects groups and rules of a learned draft by name: a new draft without them (and
/// without the rules of rejected groups), its review and approvals carried over.
#[utoipa::path(post, path = "/api/v1/policies/{version}/reject", tag = "policy", security(("token" = [])),
    params(("version" = i64, Path, description = "a learned draft's version")),
    request_body = ApproveRequest,
    responses((status = 200, body = Rejected), (status = 400, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody)))]
pub async fn reject(
    axum::extract::State(state): axum::extract::State<ApiState>,
    headers: axum::http::HeaderMap,
    axum::extract::Path(v): axum::extract::Path<i64>,
    body: Result<axum::Json<ApproveRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<axum::Json<Rejected>, ApiError> {
    let by = state
        .authorize(&headers, crate::store::Scope::Admin)
        .await?;
    let axum::Json(req) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    reject_items(&state, v, req, by.name).await.map(axum::Json)
}
