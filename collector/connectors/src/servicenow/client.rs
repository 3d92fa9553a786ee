//! The blocking Table API client.
use std::{
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::{
    Incident, IncidentFields, IncidentRecord, SnowAuth, SnowConfig, SnowError,
    wire::{check_correlation_id, check_fields, error_text, ids, protocol},
};
use crate::notify::http::{self, NoReply, Reply, Sleep};

const JSON: &str = "application/json";
/// A token is renewed this long before ServiceNow says it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug)]
enum Method {
    Get,
    Post,
    Patch,
}

/// The outcome of one try.
enum Step<T> {
    Done(T),
    Retry {
        why: String,
        after: Option<Duration>,
    },
    Fail(SnowError),
}

struct Token {
    value: String,
    expires: Instant,
}

/// A blocking ServiceNow client; share it between threads (it is `Sync`).
pub struct SnowClient {
    cfg: SnowConfig,
    base: String,
    agent: ureq::Agent,
    token: Mutex<Option<Token>>,
    sleep: Sleep,
}

impl std::fmt::Debug for SnowClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnowClient")
            .field("cfg", &self.cfg)
            .finish()
    }
}

impl SnowClient {
    /// Validates `cfg` and builds the client (no request is made yet).
    pub fn new(cfg: SnowConfig) -> Result<Self, SnowError> {
        cfg.validate()?;
        let base = http::base_url(&cfg.instance_url)
            .map_err(|e| SnowError::Config(format!("servicenow.instance_url: {e}")))?;
        Ok(Self {
            agent: http::agent(cfg.timeout(), true),
            base,
            cfg,
            token: Mutex::new(None),
            sleep: http::thread_sleep(),
        })
    }

    /// Replaces how the client waits between retries (tests record instead of sleeping).
    pub fn with_sleep(mut self, sleep: Sleep) -> Self {
        self.sleep = sleep;
        self
    }

    /// The incident whose `correlation_id` is `correlation_id`, created from `f` if there
    /// is none. The query always comes first, also before each retry of the create, so
    /// that a create whose answer was lost never opens a second incident.
    pub fn ensure_incident(
        &self,
        correlation_id: &str,
        f: &IncidentFields,
    ) -> Result<Incident, SnowError> {
        check_correlation_id(correlation_id)?;
        check_fields(f)?;
        let mut body = Map::new();
        body.insert(
            "short_description".into(),
            f.short_description.clone().into(),
        );
        body.insert("description".into(), f.description.clone().into());
        body.insert("urgency".into(), f.urgency.to_string().into());
        body.insert("impact".into(), f.impact.to_string().into());
        body.insert("correlation_id".into(), correlation_id.into());
        let optional = [
            ("assignment_group", &self.cfg.assignment_group),
            ("cmdb_ci", &f.cmdb_ci),
            ("caller_id", &self.cfg.caller_id),
        ];
        for (k, v) in optional {
            if let Some(v) = v {
                body.insert(k.into(), v.clone().into());
            }
        }
        let body = Value::Object(body);
        let mut attempt = 0;
        loop {
            if let Some(found) = self.find_by_correlation_id(correlation_id)? {
                return Ok(found);
            }
            let path = self.table_path(None)?;
            let step = self.attempt("create incident", Method::Post, &path, &[], Some(&body));
            let (why, after) = match step {
                Step::Done(v) => {
                    let (sys_id, number) = ids("create incident", &v)?;
                    tracing::info!(%number, correlation_id, "servicenow: incident created");
                    return Ok(Incident {
                        sys_id,
                        number,
                        created: true,
                    });
                }
                Step::Fail(e) => return Err(e),
                Step::Retry { why, after } => (why, after),
            };
            if attempt >= self.cfg.max_retries {
                return Err(SnowError::Unavailable {
                    op: "create incident",
                    attempts: attempt + 1,
                    last: why,
                    retry_after: after,
                });
            }
            self.wait("create incident", attempt, &why, after);
            attempt += 1;
        }
    }

    /// The incident with this `correlation_id`, if any (`created` is false).
    pub fn find_by_correlation_id(
        &self,
        correlation_id: &str,
    ) -> Result<Option<Incident>, SnowError> {
        check_correlation_id(correlation_id)?;
        // Encoded query: '^' separates conditions, so a literal '^' is written '^^'.
        let q = format!("correlation_id={}", correlation_id.replace('^', "^^"));
        let path = self.table_path(None)?;
        let query = [("sysparm_query", q.as_str()), ("sysparm_limit", "1")];
        let v = self.call("query incident", Method::Get, &path, &query, None)?;
        let Some(list) = v.as_array() else {
            return Err(protocol("query incident", "result is not a list"));
        };
        match list.first() {
            None => Ok(None),
            Some(rec) => {
                let (sys_id, number) = ids("query incident", rec)?;
                Ok(Some(Incident {
                    sys_id,
                    number,
                    created: false,
                }))
            }
        }
    }

    /// Appends `text` to the incident's work notes (a journal field: each PATCH adds an
    /// entry). A retried PATCH whose first answer was lost may add the note twice.
    pub fn add_work_note(&self, sys_id: &str, text: &str) -> Result<(), SnowError> {
        if text.trim().is_empty() {
            return Err(SnowError::Config("work note: empty".into()));
        }
        let path = self.table_path(Some(sys_id))?;
        let body = json!({ "work_notes": text });
        self.call("add work note", Method::Patch, &path, &[], Some(&body))
            .map(drop)
    }

    /// Resolves the incident: `state` = `resolved_state` (6 unless configured),
    /// `close_code` = `close_code` or the configured default, and `close_notes`.
    pub fn resolve(
        &self,
        sys_id: &str,
        close_code: Option<&str>,
        close_notes: &str,
    ) -> Result<(), SnowError> {
        if close_notes.trim().is_empty() {
            return Err(SnowError::Config(
                "resolve: close_notes are required by ServiceNow".into(),
            ));
        }
        let code = close_code.unwrap_or(&self.cfg.close_code);
        if code.trim().is_empty() {
            return Err(SnowError::Config("resolve: close_code is empty".into()));
        }
        let path = self.table_path(Some(sys_id))?;
        let body = json!({
            "state": self.cfg.resolved_state,
            "close_code": code,
            "close_notes": close_notes,
        });
        self.call("resolve incident", Method::Patch, &path, &[], Some(&body))
            .map(drop)
    }

    /// Reads the incident back.
    pub fn get(&self, sys_id: &str) -> Result<IncidentRecord, SnowError> {
        let path = self.table_path(Some(sys_id))?;
        let v = self.call("get incident", Method::Get, &path, &[], None)?;
        let Value::Object(fields) = v else {
            return Err(protocol("get incident", "result is not an object"));
        };
        let s = |k: &str| {
            fields
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        let (sys_id, number) = ids("get incident", &Value::Object(fields.clone()))?;
        Ok(IncidentRecord {
            sys_id,
            number,
            state: s("state"),
            correlation_id: s("correlation_id"),
            short_description: s("short_description"),
            close_code: s("close_code"),
            close_notes: s("close_notes"),
            fields,
        })
    }

    /// `/api/now/table/<table>[/<sys_id>]`, with the sys_id checked.
    fn table_path(&self, sys_id: Option<&str>) -> Result<String, SnowError> {
        let mut p = format!("/api/now/table/{}", self.cfg.table);
        if let Some(id) = sys_id {
            if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(SnowError::Config(format!(
                    "sys_id: not a ServiceNow sys_id: {:?}",
                    http::excerpt(id, 70)
                )));
            }
            p.push('/');
            p.push_str(id);
        }
        Ok(p)
    }

    /// One call with retries (429, 5xx, connection errors), returning `result`.
    fn call(
        &self,
        op: &'static str,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value, SnowError> {
        let mut attempt = 0;
        loop {
            let (why, after) = match self.attempt(op, method, path, query, body) {
                Step::Done(v) => return Ok(v),
                Step::Fail(e) => return Err(e),
                Step::Retry { why, after } => (why, after),
            };
            if attempt >= self.cfg.max_retries {
                return Err(SnowError::Unavailable {
                    op,
                    attempts: attempt + 1,
                    last: why,
                    retry_after: after,
                });
            }
            self.wait(op, attempt, &why, after);
            attempt += 1;
        }
    }

    fn wait(&self, op: &str, attempt: u32, why: &str, after: Option<Duration>) {
        let delay = after.unwrap_or_else(|| {
            http::backoff(
                attempt,
                Duration::from_millis(self.cfg.backoff_initial_ms),
                Duration::from_millis(self.cfg.backoff_max_ms),
            )
        });
        tracing::warn!(op, attempt, ?delay, why, "servicenow: retrying");
        (self.sleep)(delay);
    }

    /// One try; with OAuth, a 401 on a cached token fetches a new one and tries again
    /// once.
    fn attempt(
        &self,
        op: &'static str,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Step<Value> {
        let mut fresh_token = false;
        loop {
            let auth = match self.authorization(&mut fresh_token) {
                Step::Done(a) => a,
                Step::Retry { why, after } => return Step::Retry { why, after },
                Step::Fail(e) => return Step::Fail(e),
            };
            let reply = match self.send(method, path, query, body, &auth) {
                Ok(r) => r,
                Err(NoReply::Retryable(why)) => return Step::Retry { why, after: None },
                Err(NoReply::Permanent(why)) => return Step::Fail(protocol(op, why)),
            };
            tracing::debug!(op, status = reply.status, "servicenow: answer");
            let oauth = matches!(self.cfg.auth, SnowAuth::OAuth { .. });
            if reply.status == 401 && oauth && !fresh_token {
                // The cached token may have been revoked or expired early.
                *self.token.lock().unwrap_or_else(PoisonError::into_inner) = None;
                continue;
            }
            return self.classify(op, reply);
        }
    }

    fn classify(&self, op: &'static str, reply: Reply) -> Step<Value> {
        let max = Duration::from_secs(self.cfg.retry_after_max_secs);
        match reply.status {
            200..=299 => match serde_json::from_str::<Value>(&reply.body) {
                Ok(mut v) => match v.get_mut("result").map(Value::take) {
                    Some(r) => Step::Done(r),
                    None => Step::Fail(protocol(op, "no \"result\" in the answer")),
                },
                Err(e) => Step::Fail(protocol(op, format!("not JSON: {e}"))),
            },
            429 | 503 => Step::Retry {
                why: format!("HTTP {}: {}", reply.status, error_text(&reply.body).0),
                after: http::retry_after(reply.retry_after.as_deref(), max),
            },
            408 | 500..=599 => Step::Retry {
                why: format!("HTTP {}: {}", reply.status, error_text(&reply.body).0),
                after: None,
            },
            status => {
                let (message, detail) = error_text(&reply.body);
                Step::Fail(SnowError::Rejected {
                    op,
                    status,
                    message,
                    detail,
                })
            }
        }
    }

    fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        auth: &str,
    ) -> Result<Reply, NoReply> {
        let url = format!("{}{path}", self.base);
        let mut pairs = query.to_vec();
        pairs.push(("sysparm_exclude_reference_link", "true"));
        let res = match method {
            Method::Get => self
                .agent
                .get(&url)
                .header("Accept", JSON)
                .header("Authorization", auth)
                .query_pairs(pairs)
                .call(),
            Method::Post | Method::Patch => {
                let bytes = body.map(Value::to_string).unwrap_or_default();
                let req = match method {
                    Method::Post => self.agent.post(&url),
                    _ => self.agent.patch(&url),
                };
                req.header("Accept", JSON)
                    .header("Content-Type", JSON)
                    .header("Authorization", auth)
                    .query_pairs(pairs)
                    .send(bytes.as_bytes())
            }
        };
        http::read(res)
    }

    /// The `Authorization` header value. `fresh` is set when a new token was fetched.
    fn authorization(&self, fresh: &mut bool) -> Step<String> {
        let (client_id, client_secret, username, password) = match &self.cfg.auth {
            SnowAuth::Basic { username, password } => {
                let raw = format!("{username}:{password}");
                let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
                return Step::Done(format!("Basic {b64}"));
            }
            SnowAuth::OAuth {
                client_id,
                client_secret,
                username,
                password,
            } => (client_id, client_secret, username, password),
        };
        let mut cached = self.token.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(t) = cached.as_ref()
            && Instant::now() < t.expires
        {
            return Step::Done(format!("Bearer {}", t.value));
        }
        let op = "oauth token";
        let url = format!("{}/oauth_token.do", self.base);
        let form = [
            ("grant_type", "password"),
            ("client_id", client_id.as_str()),
            ("client_secret", client_secret.as_str()),
            ("username", username.as_str()),
            ("password", password.as_str()),
        ];
        let res = self.agent.post(&url).header("Accept", JSON).send_form(form);
        let reply = match http::read(res) {
            Ok(r) => r,
            Err(NoReply::Retryable(why)) => return Step::Retry { why, after: None },
            Err(NoReply::Permanent(why)) => return Step::Fail(protocol(op, why)),
        };
        if reply.status != 200 {
            return match self.classify(op, reply) {
                Step::Done(_) => Step::Fail(protocol(op, "unexpected success status")),
                other => other.map_never(),
            };
        }
        let v: Value = match serde_json::from_str(&reply.body) {
            Ok(v) => v,
            Err(e) => return Step::Fail(protocol(op, format!("not JSON: {e}"))),
        };
        let Some(token) = v.get("access_token").and_then(Value::as_str) else {
            return Step::Fail(protocol(op, "no access_token in the answer"));
        };
        let lifetime = v
            .get("expires_in")
            .and_then(|e| e.as_u64().or_else(|| e.as_str()?.parse().ok()))
            .unwrap_or(1800);
        let lifetime = Duration::from_secs(lifetime).saturating_sub(TOKEN_MARGIN);
        *cached = Some(Token {
            value: token.to_owned(),
            expires: Instant::now() + lifetime,
        });
        *fresh = true;
        tracing::debug!(?lifetime, "servicenow: oauth token fetched");
        Step::Done(format!("Bearer {token}"))
    }
}

impl<T> Step<T> {
    /// A non-`Done` step as a step of another type.
    fn map_never<U>(self) -> Step<U> {
        match self {
            Step::Done(_) => Step::Fail(SnowError::Protocol {
                op: "internal",
                why: "unexpected success".into(),
            }),
            Step::Retry { why, after } => Step::Retry { why, after },
            Step::Fail(e) => Step::Fail(e),
        }
    }
}
