//! `[outputs.hec]`: where the Splunk HTTP Event Collector is and how to talk to it.
use std::{fmt, path::PathBuf, time::Duration};

use serde::Deserialize;

use super::protocol;

/// Configuration of the Splunk HEC output. Every field has a default except `url` and
/// `token`; [`HecConfig::validate`] names the offending field (`outputs.hec.<field>: ...`).
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HecConfig {
    /// Base URL of HEC, e.g. `https://splunk.example.net:8088` (no `/services/...` path:
    /// the sink appends the endpoints itself).
    pub url: String,
    /// The HEC token, sent as `Authorization: Splunk <token>`. A secret: redacted in
    /// `Debug`, never logged, never part of an error message.
    pub token: String,
    /// The Splunk index alerts go to. The alert code writes it into each envelope (the
    /// sink passes envelopes through untouched); without it the token's default index is
    /// used.
    pub index: Option<String>,
    /// Compress request bodies (`Content-Encoding: gzip`).
    pub gzip: bool,
    /// Use indexer acknowledgement: the token must have it enabled. A request only counts
    /// as delivered once `/services/collector/ack` reports its `ackId` as indexed.
    pub use_ack: bool,
    /// How long to wait for an ack before resending that request, in seconds.
    pub ack_timeout_secs: u64,
    /// How often to poll `/services/collector/ack`, in milliseconds.
    pub ack_poll_ms: u64,
    /// Upper bound of one request body before compression, in bytes: a batch is split
    /// into as many requests as needed. An event larger than this goes alone.
    pub max_batch_bytes: usize,
    /// With `use_ack`: how many sent requests may await their ack before the sink stops
    /// sending and waits for acks.
    pub max_in_flight: usize,
    /// Timeout of one HTTP request (connect, send, response), in seconds.
    pub timeout_secs: u64,
    /// How many times one request is retried inside one `deliver` (after 429, 500, 503,
    /// a connection error or a timeout; after an ack timeout, how many times a request
    /// is resent) before the batch is handed back to the dispatcher as retryable.
    pub retries: u32,
    /// First backoff delay, in milliseconds; it doubles on each retry (with jitter).
    pub backoff_initial_ms: u64,
    /// Largest backoff delay, in milliseconds.
    pub backoff_max_ms: u64,
    /// A `Retry-After` (429, 503) is honoured up to this many seconds.
    pub retry_after_max_secs: u64,
    /// PEM file of the CA(s) that signed a private Splunk's certificate. When set, these
    /// CAs are trusted *instead of* the public (Mozilla) roots.
    pub ca_file: Option<PathBuf>,
    /// Do not verify the server's certificate at all. For labs only: anyone on the path
    /// can then read the token and the alerts.
    pub insecure_skip_verify: bool,
}

impl Default for HecConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            token: String::new(),
            index: None,
            gzip: true,
            use_ack: false,
            ack_timeout_secs: 60,
            ack_poll_ms: 500,
            max_batch_bytes: 1024 * 1024,
            max_in_flight: 4,
            timeout_secs: 30,
            retries: 3,
            backoff_initial_ms: 500,
            backoff_max_ms: 30_000,
            retry_after_max_secs: 300,
            ca_file: None,
            insecure_skip_verify: false,
        }
    }
}

impl fmt::Debug for HecConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HecConfig")
            .field("url", &self.url)
            .field("token", &"<redacted>")
            .field("index", &self.index)
            .field("gzip", &self.gzip)
            .field("use_ack", &self.use_ack)
            .field("ack_timeout_secs", &self.ack_timeout_secs)
            .field("ack_poll_ms", &self.ack_poll_ms)
            .field("max_batch_bytes", &self.max_batch_bytes)
            .field("max_in_flight", &self.max_in_flight)
            .field("timeout_secs", &self.timeout_secs)
            .field("retries", &self.retries)
            .field("backoff_initial_ms", &self.backoff_initial_ms)
            .field("backoff_max_ms", &self.backoff_max_ms)
            .field("retry_after_max_secs", &self.retry_after_max_secs)
            .field("ca_file", &self.ca_file)
            .field("insecure_skip_verify", &self.insecure_skip_verify)
            .finish()
    }
}

fn bad(field: &str, msg: impl fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("outputs.hec.{field}: {msg}")
}

impl HecConfig {
    /// Checks every field; the error names the first bad one (`outputs.hec.url: ...`).
    pub fn validate(&self) -> anyhow::Result<()> {
        self.base_url()?;
        if self.token.is_empty() {
            return Err(bad("token", "required (the HEC token)"));
        }
        // The token goes into a header: no whitespace or control characters.
        if self.token.len() > 256 || !self.token.chars().all(|c| c.is_ascii_graphic()) {
            return Err(bad(
                "token",
                "must be 1 to 256 printable ASCII characters without spaces",
            ));
        }
        if let Some(index) = &self.index {
            // Splunk index names: lowercase letters, digits, '_' and '-', not starting
            // with '-' (indexes.conf).
            let ok = !index.is_empty()
                && index.len() <= 80
                && !index.starts_with('-')
                && index
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
            if !ok {
                return Err(bad(
                    "index",
                    "1 to 80 of a-z, 0-9, '_' and '-', not starting with '-'",
                ));
            }
        }
        let range = |field: &str, v: u64, lo: u64, hi: u64| -> anyhow::Result<()> {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(bad(field, format!("must be {lo} to {hi}, not {v}")))
            }
        };
        range("ack_timeout_secs", self.ack_timeout_secs, 1, 3600)?;
        range("ack_poll_ms", self.ack_poll_ms, 10, 60_000)?;
        range(
            "max_batch_bytes",
            self.max_batch_bytes as u64,
            1024,
            512 * 1024 * 1024,
        )?;
        range("max_in_flight", self.max_in_flight as u64, 1, 1024)?;
        range("timeout_secs", self.timeout_secs, 1, 600)?;
        range("retries", u64::from(self.retries), 0, 100)?;
        range("backoff_initial_ms", self.backoff_initial_ms, 1, 600_000)?;
        range(
            "backoff_max_ms",
            self.backoff_max_ms,
            self.backoff_initial_ms,
            3_600_000,
        )?;
        range("retry_after_max_secs", self.retry_after_max_secs, 0, 3600)?;
        if self.insecure_skip_verify && self.ca_file.is_some() {
            return Err(bad(
                "insecure_skip_verify",
                "cannot be combined with ca_file (pick one)",
            ));
        }
        if let Some(path) = &self.ca_file
            && !path.is_absolute()
        {
            return Err(bad("ca_file", "must be an absolute path"));
        }
        Ok(())
    }

    /// `url` without a trailing '/', checked.
    pub(crate) fn base_url(&self) -> anyhow::Result<String> {
        let url = self.url.trim_end_matches('/');
        if url.is_empty() {
            return Err(bad("url", "required, e.g. https://splunk:8088"));
        }
        let uri: ureq::http::Uri = url
            .parse()
            .map_err(|e| bad("url", format!("not a URL: {e}")))?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            _ => return Err(bad("url", "must start with https:// (or http://)")),
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(bad("url", "has no host"));
        }
        if uri.query().is_some() || url.contains('#') {
            return Err(bad("url", "must not have a query or fragment"));
        }
        if uri.path().contains(protocol::COLLECTOR_PREFIX) {
            return Err(bad(
                "url",
                "give the base URL (e.g. https://splunk:8088): the sink appends \
                 /services/collector/event itself",
            ));
        }
        Ok(url.to_string())
    }

    pub(crate) fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }
}
