//! The page shell (head, navigation, who is signed in) and small shared pieces: times,
//! badges, the hidden CSRF field, error pages.
use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use maud::{DOCTYPE, Markup, html};

use super::{assets, session::Session};
use crate::api::ApiError;

/// The Content-Security-Policy of every console response: scripts, styles, images and
/// connections from the console's own origin only; no inline code, no framing, forms post
/// only back to it.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const NAV: &[(&str, &str)] = &[
    ("hosts", "Hosts"),
    ("flows", "Flows"),
    ("alerts", "Alerts"),
    ("policy", "Policy"),
    ("response", "Response"),
    ("audit", "Audit"),
];

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            // htmx would add an inline <style>; the CSP forbids it, the stylesheet has it.
            meta name="htmx-config" content=r#"{"includeIndicatorStyles":false,"allowEval":false,"allowScriptTags":false}"#;
            title { (title) " · Cordon" }
            link rel="icon" href="data:,";
            link rel="stylesheet" href=(assets::path("console.css"));
            script src=(assets::path("htmx.min.js")) defer {}
            script src=(assets::path("console.js")) defer {}
        }
    }
}

/// A full page for a signed-in user; `active` is the navigation entry it belongs to.
pub fn page(s: &Session, title: &str, active: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header.top {
                    a.brand href="/console/hosts" { "CORDON" }
                    nav {
                        @for (id, label) in NAV {
                            a href={ "/console/" (id) } class=[(*id == active).then_some("active")] { (label) } " "
                        }
                    }
                    div.who {
                        span #who { (s.token.name) " · " (s.token.scope.as_str()) }
                        form.inline method="post" action="/console/signout" {
                            (csrf(s))
                            button type="submit" #signout { "Sign out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// A page without the navigation (sign-in).
pub fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body { main { (body) } }
        }
    }
}

/// The hidden field every state-changing form carries.
pub fn csrf(s: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(s.csrf); }
}

/// Unix ns as UTC `YYYY-MM-DD HH:MM:SS` (empty for 0).
pub fn time(ns: u64) -> String {
    if ns == 0 {
        return String::new();
    }
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns);
    let s = humantime::format_rfc3339_seconds(t).to_string();
    s.trim_end_matches('Z').replace('T', " ")
}

/// How long ago `ns` was, roughly ("12 s", "5 min", "3 h", "2 d").
pub fn ago(ns: u64) -> String {
    let now = crate::ingest::now_ns();
    if ns == 0 || ns > now {
        return String::new();
    }
    let s = (now - ns) / 1_000_000_000;
    match s {
        0..=59 => format!("{s} s ago"),
        60..=3599 => format!("{} min ago", s / 60),
        3600..=86_399 => format!("{} h ago", s / 3600),
        _ => format!("{} d ago", s / 86_400),
    }
}

pub fn badge(class: &str, text: &str) -> Markup {
    html! { span class={ "badge " (class) } { (text) } }
}

/// Adds the console's security headers to a response.
pub fn secure(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // same-origin, not no-referrer: under no-referrer Chromium sends `Origin: null` with
    // the console's own form posts, which the CSRF check refuses.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

/// An error page for a signed-in user (the API's error, its status kept).
pub fn error_page(s: &Session, e: &ApiError) -> Response {
    (
        e.status(),
        page(
            s,
            "Error",
            "",
            html! {
                h1 { "Could not do that" }
                div.error #error { (e.message()) }
                p { a href="/console/hosts" { "Back to the hosts" } }
            },
        ),
    )
        .into_response()
}

/// A page, or the API error as a page.
pub fn or_error(s: &Session, r: Result<Markup, ApiError>) -> Response {
    match r {
        Ok(m) => (StatusCode::OK, m).into_response(),
        Err(e) => error_page(s, &e),
    }
}
