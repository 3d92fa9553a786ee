//! Signing in with an API token (read or admin; join tokens are refused) and out.
use axum::{
    Form,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
};
use maud::html;
use serde::Deserialize;

use super::{
    alerts::CsrfForm,
    layout::bare,
    session::{self, COOKIE, LIFETIME_SECS, PRE_COOKIE, Session},
};
use crate::{api::ApiState, store::Scope, tokens as secrets};

fn form(state: &ApiState, error: Option<&str>) -> Response {
    let (nonce, cookie) = session::signin_nonce(&state.console_key);
    let body = bare(
        "Sign in",
        html! {
            div.signin.panel {
                h1 { "Cordon console" }
                @if let Some(e) = error { div.error #error { (e) } }
                form #signin method="post" action="/console/signin" {
                    input type="hidden" name="nonce" value=(nonce);
                    p { label { "API token" br;
                        input type="password" name="token" autocomplete="off" required autofocus placeholder="cdn_…"; } }
                    p { button.primary type="submit" { "Sign in" } }
                }
                p.muted { "Make one with " code { "cordon token create --name you --scope read" } " (or admin to act)." }
            }
        },
    );
    let status = if error.is_some() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    (
        status,
        [(
            header::SET_COOKIE,
            session::set_cookie(PRE_COOKIE, Some(&cookie), 600),
        )],
        body,
    )
        .into_response()
}

/// `GET /console/signin`.
pub async fn page(State(state): State<ApiState>) -> Response {
    form(&state, None)
}

#[derive(Deserialize)]
pub struct SignIn {
    #[serde(default)]
    token: String,
    #[serde(default)]
    nonce: String,
}

/// `POST /console/signin`: checks the token, sets the session cookie.
pub async fn submit(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Form(f): Form<SignIn>,
) -> Response {
    if !session::signin_nonce_ok(&state.console_key, &headers, &f.nonce) {
        return form(&state, Some("The sign-in form expired; try again."));
    }
    let presented = f.token.trim().to_string();
    if !secrets::well_formed(&presented) {
        return form(
            &state,
            Some("That is not a Cordon token (cdn_ and 64 hex digits)."),
        );
    }
    let hash = secrets::hash(&presented);
    let h = hash.clone();
    let now = crate::ingest::now_ns();
    let checked = state
        .store(move |s| {
            let r = s.use_token(&h, Scope::Read, now)?;
            if let Ok(t) = &r {
                s.audit(
                    &t.name,
                    "console.signin",
                    &t.name,
                    &serde_json::json!({"scope": t.scope.as_str()}),
                    now,
                )?;
            }
            Ok(r)
        })
        .await;
    match checked {
        Ok(Ok(t)) => {
            tracing::info!(token = %t.name, scope = t.scope.as_str(), "console sign-in");
            let value = session::issue(&state.console_key, &hash, now / 1_000_000_000);
            let mut r = Redirect::to("/console/hosts").into_response();
            let h = r.headers_mut();
            for c in [
                session::set_cookie(COOKIE, Some(&value), LIFETIME_SECS),
                session::set_cookie(PRE_COOKIE, None, 0),
            ] {
                if let Ok(v) = c.parse() {
                    h.append(header::SET_COOKIE, v);
                }
            }
            r
        }
        Ok(Err(refusal)) => {
            tracing::info!(reason = %refusal, "console sign-in refused");
            form(
                &state,
                Some(
                    "This token is not valid for the console (unknown, expired, revoked or a join token).",
                ),
            )
        }
        Err(e) => form(&state, Some(e.message())),
    }
}

/// `POST /console/signout`: deletes the cookie. (The cookie is stateless: one copied
/// before sign-out stays valid until it expires or the token is revoked.)
pub async fn signout(s: Session, headers: HeaderMap, Form(f): Form<CsrfForm>) -> Response {
    if let Err(r) = s.check_csrf(&headers, &f.csrf) {
        return r.into_response();
    }
    tracing::info!(token = %s.token.name, "console sign-out");
    (
        [(header::SET_COOKIE, session::set_cookie(COOKIE, None, 0))],
        Redirect::to("/console/signin"),
    )
        .into_response()
}
