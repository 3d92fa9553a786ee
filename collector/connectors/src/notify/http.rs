//! The blocking HTTP plumbing shared by the ServiceNow, SOAR and webhook clients: one
//! `ureq` agent per client (rustls with the ring provider), bounded reads of every reply,
//! the split of failures into "retry can help" and "it cannot", backoff with jitter and
//! `Retry-After`, and a sleep that tests can replace.
//!
//! It lives under `notify` only because the crate's module list (`lib.rs`) is shared with
//! another connector; it is `pub(crate)` and used by [`crate::servicenow`] and
//! [`crate::soar`] as well.
use std::{sync::Arc, time::Duration};

use ureq::tls::{TlsConfig, TlsProvider};

/// No product we talk to answers with more than this: read no further.
pub(crate) const MAX_REPLY_BYTES: u64 = 256 * 1024;

/// How a client waits before a retry. Real clients sleep; tests record the delay instead.
pub type Sleep = Arc<dyn Fn(Duration) + Send + Sync>;

/// The real [`Sleep`]: `std::thread::sleep`.
pub fn thread_sleep() -> Sleep {
    Arc::new(std::thread::sleep)
}

/// A blocking agent: 4xx and 5xx come back as answers (not errors), no redirects (a
/// redirected POST would lose its body), one global timeout per request.
pub(crate) fn agent(timeout: Duration, verify_tls: bool) -> ureq::Agent {
    let mut tls = TlsConfig::builder().provider(TlsProvider::Rustls);
    if !verify_tls {
        tls = tls.disable_verification(true);
    }
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .timeout_global(Some(timeout))
        .user_agent(concat!("cordon-connectors/", env!("CARGO_PKG_VERSION")))
        .tls_config(tls.build())
        .build();
    config.into()
}

/// An HTTP answer, whatever its status, with its body read up to [`MAX_REPLY_BYTES`].
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    /// The `Retry-After` header as sent, if any.
    pub retry_after: Option<String>,
    /// The body as text (lossy), empty if it could not be read.
    pub body: String,
}

/// No HTTP answer at all.
#[derive(Debug)]
pub(crate) enum NoReply {
    /// Connection refused, reset, timed out, DNS failure...: a retry may help.
    Retryable(String),
    /// A malformed URL or request: no retry can help.
    Permanent(String),
}

/// Turns ureq's result into a [`Reply`] or a classified [`NoReply`].
pub(crate) fn read(
    res: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<Reply, NoReply> {
    let mut resp = match res {
        Ok(r) => r,
        Err(
            e @ (ureq::Error::BadUri(_)
            | ureq::Error::Http(_)
            | ureq::Error::RequireHttpsOnly(_)
            | ureq::Error::InvalidProxyUrl),
        ) => return Err(NoReply::Permanent(format!("request: {e}"))),
        Err(e) => return Err(NoReply::Retryable(format!("transport: {e}"))),
    };
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = match resp
        .body_mut()
        .with_config()
        .limit(MAX_REPLY_BYTES)
        .read_to_vec()
    {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        // A success we could not read is not a success we can trust.
        Err(e) if (200..300).contains(&status) => {
            return Err(NoReply::Retryable(format!(
                "HTTP {status}, reading the reply: {e}"
            )));
        }
        Err(_) => String::new(),
    };
    Ok(Reply {
        status,
        retry_after,
        body,
    })
}

/// `Retry-After` in seconds (the HTTP-date form is not used by these products), capped.
pub(crate) fn retry_after(header: Option<&str>, max: Duration) -> Option<Duration> {
    let secs: u64 = header?.trim().parse().ok()?;
    Some(Duration::from_secs(secs).min(max))
}

/// Exponential backoff for retry number `attempt` (0-based): `initial * 2^attempt`,
/// capped at `max`, of which a random half is dropped ("equal jitter").
pub(crate) fn backoff(attempt: u32, initial: Duration, max: Duration) -> Duration {
    let exp = initial.saturating_mul(1u32 << attempt.min(20)).min(max);
    let half = exp / 2;
    half + half.mul_f64(random_fraction())
}

/// Uniform in [0, 1); 0.5 if the OS has no randomness to give.
fn random_fraction() -> f64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

/// Checks a base URL (`http(s)://host[:port][/path]`, no query) and returns it without
/// a trailing '/'. The error says what is wrong, for the caller to prefix with the field.
pub(crate) fn base_url(url: &str) -> Result<String, String> {
    let url = url.trim_end_matches('/');
    if url.is_empty() {
        return Err("required".into());
    }
    let uri: ureq::http::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err("must start with https:// (or http://)".into()),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("has no host".into());
    }
    if uri.query().is_some() || url.contains('#') {
        return Err("must not have a query or fragment".into());
    }
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err("must not carry credentials (use the auth fields)".into());
    }
    Ok(url.to_owned())
}

/// Checks an endpoint URL (`http(s)://host[:port][/path][?query]`, no credentials, no
/// fragment).
pub(crate) fn endpoint_url(url: &str) -> Result<String, String> {
    let (head, query) = url.split_once('?').unwrap_or((url, ""));
    if query.contains('#') {
        return Err("must not have a fragment".into());
    }
    let head = base_url(head)?;
    Ok(if query.is_empty() {
        head
    } else {
        format!("{head}?{query}")
    })
}

/// The first `max` characters of a reply, on one line, for error messages.
pub(crate) fn excerpt(body: &str, max: usize) -> String {
    let one_line: String = body
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect();
    one_line.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_seconds_and_capped() {
        let max = Duration::from_secs(30);
        assert_eq!(retry_after(Some("2"), max), Some(Duration::from_secs(2)));
        assert_eq!(retry_after(Some(" 600 "), max), Some(max));
        assert_eq!(
            retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT"), max),
            None
        );
        assert_eq!(retry_after(None, max), None);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let (i, m) = (Duration::from_millis(100), Duration::from_millis(1000));
        for attempt in 0..30 {
            let d = backoff(attempt, i, m);
            let exp = i.saturating_mul(1 << attempt.min(20)).min(m);
            assert!(d >= exp / 2 && d <= exp, "attempt {attempt}: {d:?}");
        }
    }

    #[test]
    fn base_url_rules() {
        assert_eq!(
            base_url("https://x.example/").as_deref(),
            Ok("https://x.example")
        );
        assert!(base_url("").is_err());
        assert!(base_url("ftp://x").is_err());
        assert!(base_url("https://x/?a=b").is_err());
        assert!(base_url("https://u:p@x").is_err());
    }
}
