//! HTTP to the collector's API: the token on every request, and the API's `{"error"}`
//! turned into a readable error with the status.
use std::path::Path;

use anyhow::{Context, bail};
use serde_json::Value;

pub struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    pub fn new(
        api: &str,
        token: Option<String>,
        token_file: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let token = match (token, token_file) {
            (Some(t), _) => Some(t),
            (None, Some(f)) => Some(
                std::fs::read_to_string(f)
                    .with_context(|| format!("reading the token file {}", f.display()))?
                    .trim()
                    .to_string(),
            ),
            (None, None) => None,
        };
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(30)))
            .build()
            .into();
        Ok(Self {
            base: api.trim_end_matches('/').to_string(),
            token,
            agent,
        })
    }

    fn auth(&self) -> Option<String> {
        self.token.as_ref().map(|t| format!("Bearer {t}"))
    }

    /// GET `path` (with its query); the JSON body of a 2xx answer.
    pub fn get(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
        let mut req = self.agent.get(format!("{}{path}", self.base));
        for (k, v) in query {
            req = req.query(k, v);
        }
        if let Some(a) = self.auth() {
            req = req.header("Authorization", a);
        }
        Self::answer(req.call(), path)
    }

    /// POST `body` as JSON to `path`.
    pub fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let mut req = self.agent.post(format!("{}{path}", self.base));
        if let Some(a) = self.auth() {
            req = req.header("Authorization", a);
        }
        Self::answer(req.send_json(body), path)
    }

    /// POST `body` as JSON to `path`, waiting up to `timeout` for the answer (long
    /// synchronous operations such as learning).
    pub fn post_slow(
        &self,
        path: &str,
        body: &Value,
        timeout: std::time::Duration,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .agent
            .post(format!("{}{path}", self.base))
            .config()
            .timeout_global(Some(timeout))
            .build();
        if let Some(a) = self.auth() {
            req = req.header("Authorization", a);
        }
        Self::answer(req.send_json(body), path)
    }

    fn answer(
        res: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
        path: &str,
    ) -> anyhow::Result<Value> {
        let mut res = res.with_context(|| format!("calling the collector API ({path})"))?;
        let status = res.status();
        let text = res.body_mut().read_to_string().unwrap_or_default();
        let body: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if !status.is_success() {
            let msg = body["error"]
                .as_str()
                .map_or_else(|| body.to_string(), str::to_string);
            let hint = if status.as_u16() == 401 {
                " (give a token with --token-file, CORDON_TOKEN_FILE or CORDON_TOKEN)"
            } else {
                ""
            };
            bail!("{path}: {status}: {msg}{hint}");
        }
        Ok(body)
    }
}
