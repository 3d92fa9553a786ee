//! The OpenAPI document (`GET /api/v1/openapi.json`), generated from the handlers.
use axum::Json;
use utoipa::{
    Modify, OpenApi,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};

use super::{
    alerts, cluster, commands, error::ErrorBody, flows, hosts, learn, policies, reject, runs,
    tokens,
};

struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        if let Some(c) = doc.components.as_mut() {
            c.add_security_scheme(
                "token",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Cordon collector API", description = "Hosts, flows and tokens of a Cordon collector. Times are Unix nanoseconds."),
    paths(super::health, hosts::list, hosts::show, hosts::revoke, hosts::labels, flows::query, flows::one,
        tokens::create, tokens::list, tokens::revoke, policies::apply, policies::list,
        policies::show, policies::diff, policies::publish, alerts::list, alerts::snooze,
        alerts::mute, alerts::unmute, commands::isolate, commands::release, commands::list,
        commands::audit, runs::list, runs::show, runs::approvals, runs::approve, runs::deny,
        runs::link, learn::learn, learn::stats, learn::approve, reject::reject, cluster::status,
        cluster::forget),
    components(schemas(ErrorBody)),
    modifiers(&BearerToken)
)]
pub struct ApiDoc;

pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
