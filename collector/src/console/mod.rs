//! The web console: the analyst's and operator's screens, served by the collector under
//! `/console` on the API's listener. Server-rendered HTML (maud), htmx and one small
//! script of our own, all embedded in the binary; no outside network, no CDN. Sign-in
//! with an API token gives a signed session cookie (see `session`); every response
//! carries a strict Content-Security-Policy.
mod alerts;
mod assets;
mod check;
mod flows;
mod hosts;
mod layout;
mod map;
mod policy;
mod response;
pub mod session;
mod signin;
mod summary;

use axum::{
    Router,
    extract::Request,
    middleware::{self, Next},
    response::{Redirect, Response},
    routing::{get, post},
};

use crate::api::ApiState;

/// The console's routes (merged into the API's router).
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/hosts") }))
        .route("/console", get(|| async { Redirect::to("/console/hosts") }))
        .route(
            "/console/",
            get(|| async { Redirect::to("/console/hosts") }),
        )
        .route("/console/assets/{version}/{name}", get(assets::serve))
        .route("/console/signin", get(signin::page).post(signin::submit))
        .route("/console/signout", post(signin::signout))
        .route("/console/hosts", get(hosts::list))
        .route("/console/hosts/{id}", get(hosts::show))
        .route(
            "/console/hosts/{id}/{action}",
            get(hosts::confirm).post(hosts::act),
        )
        .route("/console/flows", get(flows::search))
        .route("/console/flows/live", get(flows::live))
        .route("/console/flows/{id}", get(flows::detail))
        .route("/console/alerts", get(alerts::list))
        .route("/console/alerts/{key}/{action}", post(alerts::act))
        .route("/console/response", get(response::overview))
        .route("/console/runs/{id}", get(response::run))
        .route(
            "/console/approvals/{id}/{action}",
            post(response::decide_approval),
        )
        .route("/console/audit", get(response::audit))
        .route("/console/policy", get(policy::versions))
        .route("/console/policy/{v}", get(policy::version))
        .route("/console/policy/{v}/publish", post(policy::publish))
        .route("/console/policy/{v}/check", get(check::check))
        .route("/console/policy/{v}/map", get(map::show))
        .route("/console/policy/{v}/map.json", get(map::json))
        .route("/console/policy/{v}/approve", post(policy::approve))
        .route("/console/policy/{v}/reject", post(policy::reject))
        .layer(middleware::from_fn(headers))
}

async fn headers(req: Request, next: Next) -> Response {
    layout::secure(next.run(req).await)
}

#[cfg(test)]
mod tests;
