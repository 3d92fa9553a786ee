//! One signed request to the Auth API, retried as Duo recommends, and its answer decoded
//! from Duo's envelope (`{"stat": "OK", "response": ...}` or `{"stat": "FAIL", "code": ...,
//! "message": ..., "message_detail": ...}`).
use std::{thread, time::Duration};

use serde::{Deserialize, de::DeserializeOwned};
use ureq::tls::{TlsConfig, TlsProvider};

use super::{
    DuoClient, DuoConfig, DuoError,
    sign::{self, Canonical, SigVersion},
};

/// Answers larger than this are not the Auth API's: read no further.
pub(crate) const MAX_ANSWER_BYTES: u64 = 1024 * 1024;

/// Which failures a call may retry.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// 429, 5xx and transport errors: the call has no effect at Duo (or the same one twice).
    All,
    /// Only what Duo cannot have acted on: 429 and connections never made (a push).
    Unsent,
}

/// The blocking HTTP agent: rustls (ring), no redirects, statuses returned as answers.
pub(crate) fn agent(cfg: &DuoConfig) -> ureq::Agent {
    let tls = TlsConfig::builder().provider(TlsProvider::Rustls).build();
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .timeout_global(Some(cfg.timeout()))
        .user_agent(concat!("cordon-connectors/", env!("CARGO_PKG_VERSION")))
        .tls_config(tls)
        .build()
        .into()
}

#[derive(Deserialize)]
struct Envelope {
    stat: String,
    #[serde(default)]
    response: Option<serde_json::Value>,
    #[serde(default)]
    code: Option<u32>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    message_detail: Option<String>,
}

/// How one attempt went.
enum Attempt<T> {
    Done(Result<T, DuoError>),
    /// Worth another attempt (if the policy and the budget allow), with the error to
    /// return if not.
    Again {
        err: DuoError,
        unsent: bool,
    },
}

impl DuoClient {
    /// Sends `method path` with `params`, signed, retrying per `retry`; decodes `response`.
    pub(crate) fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        params: &[(String, String)],
        retry: Retry,
    ) -> Result<T, DuoError> {
        let mut attempt: u32 = 0;
        loop {
            let err = match self.attempt::<T>(method, path, params) {
                Attempt::Done(r) => return r,
                Attempt::Again { err, unsent } => {
                    let allowed = retry == Retry::All || unsent;
                    if !allowed || attempt >= self.cfg.max_retries {
                        return Err(match err {
                            DuoError::RateLimited { code, message, .. } => DuoError::RateLimited {
                                attempts: attempt + 1,
                                code,
                                message,
                            },
                            e => e,
                        });
                    }
                    err
                }
            };
            let delay = self.backoff(attempt);
            tracing::warn!(path, attempt = attempt + 1, delay_ms = delay.as_millis() as u64, error = %err, "duo: retrying");
            thread::sleep(delay);
            attempt += 1;
        }
    }

    /// Delay before retry `attempt` (0-based): `retry_initial_ms * 2^attempt` capped at
    /// `retry_max_ms`, plus a uniform jitter in [0, retry_initial_ms).
    fn backoff(&self, attempt: u32) -> Duration {
        let initial = Duration::from_millis(self.cfg.retry_initial_ms);
        let max = Duration::from_millis(self.cfg.retry_max_ms);
        let exp = initial.saturating_mul(1u32 << attempt.min(20)).min(max);
        exp + initial.mul_f64(random_fraction())
    }

    fn attempt<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        params: &[(String, String)],
    ) -> Attempt<T> {
        let date = super::date::rfc2822((self.clock)());
        let is_post = method == "POST";
        let (body, signed_params, content_type): (String, &[(String, String)], &str) =
            match (is_post, self.version) {
                (false, _) => (String::new(), params, ""),
                (true, SigVersion::V2) => (
                    sign::canon_params(params),
                    params,
                    "application/x-www-form-urlencoded",
                ),
                (true, SigVersion::V5) => (sign::canon_json(params), &[], "application/json"),
            };
        let auth = sign::sign(
            &self.cfg.ikey,
            &self.cfg.skey,
            self.version,
            &Canonical {
                method,
                host: &self.cfg.api_host,
                path,
                date: &date,
                params: signed_params,
                body: if self.version == SigVersion::V5 {
                    &body
                } else {
                    ""
                },
                x_duo_headers: &[],
            },
        );
        let mut url = format!("{}{path}", self.endpoint);
        let res = if is_post {
            self.agent
                .post(&url)
                .header("Date", &date)
                .header("Authorization", &auth)
                .header("Content-Type", content_type)
                .send(body.as_str())
        } else {
            if !params.is_empty() {
                url.push('?');
                url.push_str(&sign::canon_params(params));
            }
            self.agent
                .get(&url)
                .header("Date", &date)
                .header("Authorization", &auth)
                .call()
        };
        let mut resp = match res {
            Ok(r) => r,
            Err(e) => return transport(e),
        };
        let status = resp.status().as_u16();
        let text = match resp
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER_BYTES)
            .read_to_string()
        {
            Ok(t) => t,
            Err(e) if status >= 500 || status == 429 => {
                tracing::debug!(status, error = %e, "duo: unreadable error answer");
                String::new()
            }
            Err(e) => {
                return Attempt::Done(Err(DuoError::BadResponse {
                    status,
                    why: format!("reading the answer: {e}"),
                }));
            }
        };
        classify(status, &text)
    }
}

/// A transport error: retryable, except what no retry can fix.
fn transport<T>(e: ureq::Error) -> Attempt<T> {
    let unsent = match &e {
        ureq::Error::BadUri(_) | ureq::Error::Http(_) | ureq::Error::RequireHttpsOnly(_) => {
            return Attempt::Done(Err(DuoError::Invalid(format!("request: {e}"))));
        }
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => true,
        ureq::Error::Io(io) => io.kind() == std::io::ErrorKind::ConnectionRefused,
        _ => false,
    };
    Attempt::Again {
        err: DuoError::Transport(e.to_string()),
        unsent,
    }
}

/// Turns an answer into a result, or into a reason to try again.
fn classify<T: DeserializeOwned>(status: u16, text: &str) -> Attempt<T> {
    let env: Option<Envelope> = serde_json::from_str(text).ok();
    let (code, message, detail) = match &env {
        Some(e) => (
            e.code,
            e.message.clone().unwrap_or_default(),
            e.message_detail.clone(),
        ),
        None => (None, snippet(text), None),
    };
    if status == 429 {
        return Attempt::Again {
            err: DuoError::RateLimited {
                attempts: 1,
                code,
                message,
            },
            unsent: true,
        };
    }
    if status >= 500 {
        return Attempt::Again {
            err: DuoError::Unavailable {
                status,
                code,
                message,
            },
            unsent: false,
        };
    }
    let env = match env {
        Some(e) if e.stat == "OK" && status == 200 => e,
        Some(e) if e.stat == "FAIL" || status != 200 => {
            return Attempt::Done(Err(DuoError::Rejected {
                status,
                code,
                message,
                detail,
            }));
        }
        Some(e) => {
            return Attempt::Done(Err(DuoError::BadResponse {
                status,
                why: format!("stat is {:?}", e.stat),
            }));
        }
        None if status != 200 => {
            return Attempt::Done(Err(DuoError::Rejected {
                status,
                code,
                message,
                detail,
            }));
        }
        None => {
            return Attempt::Done(Err(DuoError::BadResponse {
                status,
                why: format!("not Duo's JSON envelope: {}", snippet(text)),
            }));
        }
    };
    let Some(response) = env.response else {
        return Attempt::Done(Err(DuoError::BadResponse {
            status,
            why: "stat OK without a response".to_string(),
        }));
    };
    Attempt::Done(
        serde_json::from_value(response).map_err(|e| DuoError::BadResponse {
            status,
            why: format!("response: {e}"),
        }),
    )
}

/// The start of a body, for an error message.
fn snippet(text: &str) -> String {
    let t: String = text.chars().take(200).collect();
    t.trim().to_string()
}

/// Uniform in [0, 1); 0.5 if the OS has no randomness to give.
fn random_fraction() -> f64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::duo::{AuthStatus, Preauth};

    fn err<T: std::fmt::Debug>(a: Attempt<T>) -> (DuoError, bool) {
        match a {
            Attempt::Again { err, .. } => (err, true),
            Attempt::Done(Err(e)) => (e, false),
            Attempt::Done(Ok(v)) => panic!("unexpected success {v:?}"),
        }
    }

    #[test]
    fn envelopes() {
        let ok =
            r#"{"stat":"OK","response":{"result":"waiting","status":"pushed","status_msg":"x"}}"#;
        assert!(matches!(
            classify::<AuthStatus>(200, ok),
            Attempt::Done(Ok(_))
        ));
        let fail =
            r#"{"stat":"FAIL","code":40103,"message":"Invalid signature in request credentials"}"#;
        let (e, again) = err(classify::<AuthStatus>(401, fail));
        assert!(!again && !e.is_retryable());
        assert_eq!(e.duo_code(), Some(40103));
        let (e, again) = err(classify::<AuthStatus>(
            429,
            r#"{"stat":"FAIL","code":42901,"message":"Too Many Requests"}"#,
        ));
        assert!(again && e.is_retryable());
        let (e, again) = err(classify::<AuthStatus>(502, "<html>bad gateway</html>"));
        assert!(again && e.is_retryable());
        for garbage in [
            "",
            "{",
            "null",
            "[1]",
            r#"{"stat":"OK"}"#,
            r#"{"stat":"OK","response":{"result":7}}"#,
            r#"{"stat":"MAYBE","response":{}}"#,
        ] {
            let (e, again) = err(classify::<Preauth>(200, garbage));
            assert!(
                !again && matches!(e, DuoError::BadResponse { .. }),
                "{garbage}: {e}"
            );
        }
        let (e, _) = err(classify::<Preauth>(400, "not json"));
        assert!(matches!(
            e,
            DuoError::Rejected {
                status: 400,
                code: None,
                ..
            }
        ));
    }
}
