//! Console sessions: signing in with an API token gives a cookie that names the token (by
//! the hash the store keeps, never the secret) and an expiry, signed with HMAC-SHA256
//! under the console key. The cookie is stateless, so it is valid on every node of a
//! cluster (the key derives from the CA key they share), and the token is checked again
//! on every request: revoking or expiring the token ends its sessions at once.
//!
//! CSRF: every state-changing form carries a token that is the HMAC of the session
//! cookie, checked in constant time; the cookie is `SameSite=Strict` as well, and a
//! cross-origin `Origin` header is refused. The sign-in form, before any session,
//! uses a double-submitted signed nonce.
use axum::{
    extract::FromRequestParts,
    http::{HeaderMap, StatusCode, header, request::Parts},
    response::{IntoResponse, Redirect, Response},
};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::{
    api::ApiState,
    store::{Scope, TokenInfo},
    tokens::{hex, same},
};

pub const COOKIE: &str = "cordon_session";
/// The sign-in form's nonce cookie.
pub const PRE_COOKIE: &str = "cordon_signin";
/// How long a session lasts (the token's own expiry ends it sooner).
pub const LIFETIME_SECS: u64 = 8 * 3600;

/// The console key: HMAC key for session cookies and CSRF tokens, derived from the CA's
/// private key (so every node of a cluster derives the same one, and a new CA ends every
/// session).
pub fn key_from_ca(ca_key_pem: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"cordon console session key v1\0");
    h.update(ca_key_pem.as_bytes());
    h.finalize().into()
}

fn mac(key: &[u8; 32], parts: &[&str]) -> String {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        m.update(p.as_bytes());
        m.update(b"\0");
    }
    hex(&m.finalize().into_bytes())
}

/// The cookie value for a session of the token with hash `token_hash`, from `now_s`.
pub fn issue(key: &[u8; 32], token_hash: &str, now_s: u64) -> String {
    let exp = (now_s + LIFETIME_SECS).to_string();
    let m = mac(key, &["session", token_hash, &exp]);
    format!("{token_hash}.{exp}.{m}")
}

/// The token hash a cookie value names, if its signature holds and it has not expired.
pub fn verify(key: &[u8; 32], value: &str, now_s: u64) -> Option<String> {
    let mut it = value.split('.');
    let (hash, exp, m) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() || hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let exp_n: u64 = exp.parse().ok()?;
    if !same(m, &mac(key, &["session", hash, exp])) || exp_n <= now_s {
        return None;
    }
    Some(hash.to_string())
}

/// The CSRF token of a session cookie.
pub fn csrf_for(key: &[u8; 32], cookie: &str) -> String {
    mac(key, &["csrf", cookie])
}

/// A fresh nonce for the sign-in form, and its signed cookie value.
pub fn signin_nonce(key: &[u8; 32]) -> (String, String) {
    let mut b = [0u8; 16];
    // Without randomness the nonce is still signed; only its unpredictability suffers.
    let _ = getrandom::fill(&mut b);
    let n = hex(&b);
    let cookie = format!("{n}.{}", mac(key, &["signin", &n]));
    (n, cookie)
}

/// Whether the sign-in form's `nonce` matches its cookie.
pub fn signin_nonce_ok(key: &[u8; 32], headers: &HeaderMap, nonce: &str) -> bool {
    cookie(headers, PRE_COOKIE)
        .and_then(|c| {
            let (n, m) = c.split_once('.')?;
            Some(same(n, nonce) && same(m, &mac(key, &["signin", n])))
        })
        .unwrap_or(false)
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// `Set-Cookie` for a session (or, with `None`, one that deletes it).
pub fn set_cookie(name: &str, value: Option<&str>, max_age: u64) -> String {
    match value {
        Some(v) => format!(
            "{name}={v}; Path=/console; Max-Age={max_age}; HttpOnly; Secure; SameSite=Strict"
        ),
        None => format!("{name}=; Path=/console; Max-Age=0; HttpOnly; Secure; SameSite=Strict"),
    }
}

/// A signed-in user: the token and the CSRF token its forms carry.
pub struct Session {
    pub token: TokenInfo,
    pub csrf: String,
}

impl Session {
    /// Whether this user may act (isolate, release, approve, publish): admin tokens only.
    pub fn can_act(&self) -> bool {
        self.token.scope.allows(Scope::Admin)
    }

    /// Refuses a state-changing request whose form token is not this session's, or that
    /// comes from another origin.
    pub fn check_csrf(&self, headers: &HeaderMap, presented: &str) -> Result<(), Refused> {
        if !same_origin(headers) {
            return Err(Refused::Csrf);
        }
        if same(presented, &self.csrf) {
            Ok(())
        } else {
            Err(Refused::Csrf)
        }
    }

    /// Refuses unless the token may act.
    pub fn require_admin(&self) -> Result<(), Refused> {
        if self.can_act() {
            Ok(())
        } else {
            Err(Refused::Scope)
        }
    }
}

/// No `Origin` (same-origin form posts from older browsers) or one whose host is the
/// request's `Host`.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    matches!((origin_host, host), (Some(o), Some(h)) if o == h)
}

/// Why a console request was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// No session, or no longer valid: to the sign-in page.
    SignIn,
    /// A state-changing request without this session's CSRF token.
    Csrf,
    /// The token's scope does not allow it.
    Scope,
    /// The store did not answer.
    Unavailable,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::SignIn => Redirect::to("/console/signin").into_response(),
            Refused::Csrf => (
                StatusCode::FORBIDDEN,
                "refused: the form's CSRF token is missing or wrong (reload the page)",
            )
                .into_response(),
            Refused::Scope => (
                StatusCode::FORBIDDEN,
                "refused: your token's scope does not allow this (needs admin)",
            )
                .into_response(),
            Refused::Unavailable => {
                (StatusCode::SERVICE_UNAVAILABLE, "the store does not answer").into_response()
            }
        }
    }
}

fn now_s() -> u64 {
    crate::ingest::now_ns() / 1_000_000_000
}

impl FromRequestParts<ApiState> for Session {
    type Rejection = Refused;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Refused> {
        let value = cookie(&parts.headers, COOKIE).ok_or(Refused::SignIn)?;
        let hash = verify(&state.console_key, value, now_s()).ok_or(Refused::SignIn)?;
        let csrf = csrf_for(&state.console_key, value);
        let now = crate::ingest::now_ns();
        let checked = state
            .store(move |s| s.use_token(&hash, Scope::Read, now))
            .await
            .map_err(|_| Refused::Unavailable)?;
        match checked {
            Ok(token) => Ok(Session { token, csrf }),
            Err(refusal) => {
                tracing::info!(reason = %refusal, "console session refused");
                Err(Refused::SignIn)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];
    const HASH: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    #[test]
    fn a_cookie_verifies_until_it_expires_and_not_under_another_key() {
        let c = issue(&KEY, HASH, 1000);
        assert_eq!(verify(&KEY, &c, 1000).as_deref(), Some(HASH));
        assert_eq!(
            verify(&KEY, &c, 1000 + LIFETIME_SECS - 1).as_deref(),
            Some(HASH)
        );
        assert_eq!(verify(&KEY, &c, 1000 + LIFETIME_SECS), None);
        assert_eq!(verify(&[8; 32], &c, 1000), None);
    }

    #[test]
    fn a_tampered_cookie_is_refused() {
        let c = issue(&KEY, HASH, 1000);
        let (h, rest) = c.split_once('.').expect("dots");
        let (exp, m) = rest.split_once('.').expect("dots");
        // A later expiry with the old signature.
        let later = format!("{h}.{}.{m}", exp.parse::<u64>().expect("n") + 3600);
        assert_eq!(verify(&KEY, &later, 1000), None);
        // Another token's hash.
        let other = format!("{}.{exp}.{m}", "b".repeat(64));
        assert_eq!(verify(&KEY, &other, 1000), None);
        for junk in [
            "",
            "x",
            "a.b.c",
            &format!("{c}.extra"),
            &format!("{h}.{exp}"),
        ] {
            assert_eq!(verify(&KEY, junk, 1000), None, "{junk}");
        }
    }

    #[test]
    fn csrf_tokens_differ_per_session() {
        let a = issue(&KEY, HASH, 1000);
        let b = issue(&KEY, HASH, 1001);
        assert_ne!(csrf_for(&KEY, &a), csrf_for(&KEY, &b));
        assert_eq!(csrf_for(&KEY, &a), csrf_for(&KEY, &a));
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; cordon_session=xyz; b=2".parse().expect("hv"),
        );
        assert_eq!(cookie(&h, COOKIE), Some("xyz"));
        assert_eq!(cookie(&h, "c"), None);
    }

    #[test]
    fn the_signin_nonce_must_match_its_signed_cookie() {
        let (n, c) = signin_nonce(&KEY);
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            format!("{PRE_COOKIE}={c}").parse().expect("hv"),
        );
        assert!(signin_nonce_ok(&KEY, &h, &n));
        assert!(!signin_nonce_ok(&KEY, &h, "00"));
        assert!(!signin_nonce_ok(&[1; 32], &h, &n));
        assert!(!signin_nonce_ok(&KEY, &HeaderMap::new(), &n));
    }

    #[test]
    fn cross_origin_posts_are_refused() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "127.0.0.1:7480".parse().expect("hv"));
        assert!(same_origin(&h));
        h.insert(header::ORIGIN, "http://127.0.0.1:7480".parse().expect("hv"));
        assert!(same_origin(&h));
        h.insert(header::ORIGIN, "http://evil.example".parse().expect("hv"));
        assert!(!same_origin(&h));
        h.insert(header::ORIGIN, "null".parse().expect("hv"));
        assert!(!same_origin(&h));
    }
}
