//! The HEC wire protocol: endpoints, replies, and what each status means for us.
//!
//! Relied on (Splunk docs): "Format events for HTTP Event Collector" (the
//! `Authorization: Splunk <token>` header; several JSON event objects simply concatenated
//! in one request), "HTTP Event Collector REST API endpoints" (`/services/collector/event`,
//! `/services/collector/ack`, `/services/collector/health`), "About HTTP Event Collector
//! Indexer Acknowledgment" (the `X-Splunk-Request-Channel` GUID header, `ackId` in the
//! reply, `POST /services/collector/ack` with `{"acks":[0,1]}` answered by
//! `{"acks":{"0":true,"1":false}}`), and "Troubleshoot HTTP Event Collector" (the table
//! of status codes below, each with its HTTP status).
use std::{collections::HashMap, time::Duration};

use serde::Deserialize;

pub const COLLECTOR_PREFIX: &str = "/services/collector";
pub const EVENT_PATH: &str = "/services/collector/event";
pub const ACK_PATH: &str = "/services/collector/ack";
pub const HEALTH_PATH: &str = "/services/collector/health";
pub const CHANNEL_HEADER: &str = "X-Splunk-Request-Channel";

/// HEC status codes (`code` in every JSON reply) and their HTTP status.
pub const CODES: &[(i64, u16, &str)] = &[
    (0, 200, "Success"),
    (1, 403, "Token disabled"),
    (2, 401, "Token is required"),
    (3, 401, "Invalid authorization"),
    (4, 403, "Invalid token"),
    (5, 400, "No data"),
    (6, 400, "Invalid data format"),
    (7, 400, "Incorrect index"),
    (8, 500, "Internal server error"),
    (9, 503, "Server is busy"),
    (10, 400, "Data channel is missing"),
    (11, 400, "Invalid data channel"),
    (12, 400, "Event field is required"),
    (13, 400, "Event field cannot be blank"),
    (14, 400, "ACK is disabled"),
    (15, 400, "Error in handling indexed fields"),
    (16, 400, "Query string authorization is not enabled"),
    (17, 200, "HEC is healthy"),
];

/// What HEC answers, on success and on error (fields it did not send are `None`).
#[derive(Debug, Default, Deserialize)]
pub struct Reply {
    pub text: Option<String>,
    pub code: Option<i64>,
    #[serde(rename = "ackId")]
    pub ack_id: Option<u64>,
    /// The ack endpoint's answer: ack id (as a string) -> indexed yet.
    pub acks: Option<HashMap<String, bool>>,
    #[serde(rename = "invalid-event-number")]
    pub invalid_event_number: Option<u64>,
}

impl Reply {
    /// A reply body that is not HEC JSON (a proxy's page, nothing) reads as empty.
    pub fn parse(body: &str) -> Self {
        serde_json::from_str(body).unwrap_or_default()
    }
}

/// What to do about one HTTP answer.
#[derive(Debug)]
pub enum Verdict {
    Ok(Reply),
    /// Worth retrying, after `after` if the server said so (`Retry-After`).
    Retry {
        why: String,
        after: Option<Duration>,
    },
    Fatal(String),
}

/// "HTTP 403: Invalid token (code 4)"; falls back to the code table, then to the start
/// of a non-JSON body. Never contains the request's headers (the token).
pub fn describe(status: u16, reply: &Reply, body: &str) -> String {
    let known = reply
        .code
        .and_then(|c| CODES.iter().find(|(code, _, _)| *code == c))
        .map(|(_, _, text)| *text);
    let mut s = format!("HTTP {status}");
    match (&reply.text, reply.code) {
        (Some(text), Some(code)) => s.push_str(&format!(": {text} (code {code})")),
        (None, Some(code)) => s.push_str(&format!(": {} (code {code})", known.unwrap_or("?"))),
        (Some(text), None) => s.push_str(&format!(": {text}")),
        (None, None) => {
            let snippet: String = body.trim().chars().take(200).collect();
            if !snippet.is_empty() {
                s.push_str(&format!(": {snippet}"));
            }
        }
    }
    if let Some(n) = reply.invalid_event_number {
        s.push_str(&format!(", invalid event number {n}"));
    }
    s
}

/// Retries happen on 429, 500 and 503 only (HEC's "server is busy" and internal
/// errors, and rate limiting in front of it); any other status but 2xx is permanent:
/// 400 (bad data, codes 5-7 and 10-16), 401/403 (token, codes 1-4), 413 (too large), ...
pub fn classify(status: u16, body: &str, retry_after: Option<&str>) -> Verdict {
    let reply = Reply::parse(body);
    match status {
        200..=299 => Verdict::Ok(reply),
        429 | 503 => Verdict::Retry {
            why: describe(status, &reply, body),
            after: retry_after.and_then(parse_retry_after),
        },
        500 => Verdict::Retry {
            why: describe(status, &reply, body),
            after: None,
        },
        300..=399 => Verdict::Fatal(format!(
            "{}: HEC redirected the request; set outputs.hec.url to the final address",
            describe(status, &reply, body)
        )),
        _ => Verdict::Fatal(describe(status, &reply, body)),
    }
}

/// `Retry-After` as delay-seconds (an HTTP date is not honoured: backoff applies).
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}
