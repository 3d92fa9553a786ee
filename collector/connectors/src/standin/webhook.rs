//! A webhook receiver that checks Cordon's signature scheme: `X-Cordon-Timestamp` within
//! five minutes of its clock and `X-Cordon-Signature` = `sha256=<hex HMAC-SHA256(secret,
//! "<timestamp>.<body>")>` (401 otherwise), and a JSON body (400 otherwise). Accepted
//! events are recorded and answered 204.
use std::{
    io,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use serde_json::Value;

use super::http::{Faults, Request, Response, Server, lock};
use crate::notify::{MAX_SKEW_SECS, verify_signature};

/// One accepted event.
#[derive(Clone, Debug, PartialEq)]
pub struct ReceivedEvent {
    /// The `X-Cordon-Timestamp` it came with.
    pub timestamp: u64,
    pub event: Value,
}

#[derive(Default)]
struct State {
    secret: String,
    events: Mutex<Vec<ReceivedEvent>>,
    rejected: Mutex<Vec<String>>,
    faults: Faults,
}

/// The running receiver; stops on drop.
pub struct WebhookReceiver {
    server: Server,
    state: Arc<State>,
}

impl WebhookReceiver {
    /// Starts on 127.0.0.1:0 verifying signatures made with `secret`.
    pub fn start(secret: &str) -> io::Result<Self> {
        let state = Arc::new(State {
            secret: secret.into(),
            ..State::default()
        });
        let s = state.clone();
        let server = Server::start(move |req| handle(&s, req))?;
        Ok(Self { server, state })
    }

    /// Answer the next `n` requests with `status`.
    pub fn fail_next(&self, status: u16, n: u32) {
        self.state.faults.fail_next(status, n);
    }

    /// Send `Retry-After: secs` with injected failures.
    pub fn retry_after(&self, secs: Option<u64>) {
        self.state.faults.retry_after(secs);
    }

    /// The events accepted, in order.
    pub fn events(&self) -> Vec<ReceivedEvent> {
        lock(&self.state.events).clone()
    }

    /// Why each refused request was refused.
    pub fn rejected(&self) -> Vec<String> {
        lock(&self.state.rejected).clone()
    }

    /// Every request received.
    pub fn requests(&self) -> Vec<Request> {
        self.server.requests()
    }

    /// The URL to POST to (`http://127.0.0.1:PORT/hook`).
    pub fn url(&self) -> String {
        format!("{}/hook", self.server.url())
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }
}

fn handle(state: &State, req: &Request) -> Response {
    if let Some((status, ra)) = state.faults.take() {
        let r = Response::text(status, "injected failure");
        return match ra {
            Some(s) => r.with_header("Retry-After", &s.to_string()),
            None => r,
        };
    }
    match check(state, req) {
        Ok(ev) => {
            lock(&state.events).push(ev);
            Response {
                status: 204,
                headers: Vec::new(),
                body: Vec::new(),
            }
        }
        Err((status, why)) => {
            lock(&state.rejected).push(why.clone());
            Response::text(status, &why)
        }
    }
}

fn check(state: &State, req: &Request) -> Result<ReceivedEvent, (u16, String)> {
    if req.method != "POST" {
        return Err((405, "POST only".into()));
    }
    let ts_raw = req
        .header("x-cordon-timestamp")
        .ok_or((401, "no X-Cordon-Timestamp".to_string()))?;
    let ts: u64 = ts_raw
        .parse()
        .map_err(|_| (401, "X-Cordon-Timestamp is not a number".to_string()))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    if now.abs_diff(ts) > MAX_SKEW_SECS {
        return Err((
            401,
            format!("timestamp {ts} is more than 5 minutes from {now}"),
        ));
    }
    let sig = req
        .header("x-cordon-signature")
        .ok_or((401, "no X-Cordon-Signature".to_string()))?;
    if !verify_signature(&state.secret, ts_raw, &req.body, sig) {
        return Err((401, "bad signature".into()));
    }
    if !req
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/json"))
    {
        return Err((400, "Content-Type is not application/json".into()));
    }
    let event = req.json().ok_or((400, "body is not JSON".to_string()))?;
    Ok(ReceivedEvent {
        timestamp: ts,
        event,
    })
}
