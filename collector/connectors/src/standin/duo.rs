//! A local stand-in for the Duo Auth API (plain HTTP on 127.0.0.1), for tests and the demo.
//!
//! It verifies what Duo verifies — HTTP Basic with the integration key, the request
//! signature (v2 with HMAC-SHA1 or -SHA512, v5) recomputed for the configured API host,
//! and a `Date` within five minutes — then answers `/auth/v2/ping`, `check`, `preauth`,
//! `auth` (push, sync or `async=1`) and `auth_status` from a per-user script
//! ([`Behaviour`]). It can be told to fail the next requests ([`DuoStandin::fail_next`])
//! and records every request with its decoded parameters and `pushinfo`.
use std::{
    collections::HashMap,
    io,
    net::{SocketAddr, TcpListener},
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
};

use serde_json::{Value, json};

use crate::duo::PreauthResult;

mod api;
mod server;
mod verify;

pub use api::DEVICE_ID;

/// What a user does, scripted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Preauth `auth` with one push-capable phone ([`DEVICE_ID`]); the push is approved:
    /// the first `n` status polls answer `waiting`, the next `allow`.
    ApproveAfter(u32),
    /// Preauth `auth`; the push is denied (the first status poll answers `deny`).
    Deny,
    /// Preauth `auth`; the push is never answered (`waiting` forever).
    Timeout,
    /// Preauth answers this result without devices: `Allow` (bypass: an auth is allowed at
    /// once), `Deny` (auth denied), `Enroll` (auth refused as an invalid user). Users not
    /// set are `Preauth(Enroll)`, like unknown users at Duo.
    Preauth(PreauthResult),
}

/// One request as the stand-in saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRequest {
    /// `GET`, `POST`.
    pub method: String,
    /// The path, e.g. `/auth/v2/auth`.
    pub path: String,
    /// Every parameter (query, form or JSON body), decoded, in the order received.
    pub params: Vec<(String, String)>,
    /// The `pushinfo` parameter decoded into its key/value pairs, if there was one.
    pub pushinfo: Option<Vec<(String, String)>>,
    /// The signature version that verified (`2` or `5`), if one did.
    pub signature_version: Option<u8>,
    /// The HTTP status answered.
    pub status: u16,
    /// Duo's error code answered, if it failed.
    pub code: Option<u32>,
}

impl RecordedRequest {
    /// The first parameter named `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A failure answered in Duo's envelope.
pub(super) struct Failure {
    status: u16,
    code: u32,
    body: String,
}

impl Failure {
    fn new(status: u16, code: u32, message: &str, detail: Option<&str>) -> Self {
        Self {
            status,
            code,
            body: fail_body(code, message, detail),
        }
    }
}

/// `{"stat": "FAIL", "code": ..., "message": ..., "message_detail": ...}`.
fn fail_body(code: u32, message: &str, detail: Option<&str>) -> String {
    let mut v = json!({"stat": "FAIL", "code": code, "message": message});
    if let Some(d) = detail {
        v["message_detail"] = Value::from(d);
    }
    v.to_string()
}

/// The stand-in's mutable state.
struct State {
    keys: verify::Keys,
    users: HashMap<String, Behaviour>,
    /// Answer the next `.1` requests with status `.0`.
    fail: Option<(u16, u32)>,
    requests: Vec<RecordedRequest>,
    txns: HashMap<String, (Behaviour, u32)>,
    next_txid: u64,
}

/// A running stand-in; stops when dropped.
pub struct DuoStandin {
    addr: SocketAddr,
    api_host: String,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl DuoStandin {
    /// Starts a stand-in on `127.0.0.1:0` that accepts requests signed with `ikey` and
    /// `skey` for the API host `api_host`.
    ///
    /// # Panics
    /// If no loopback port can be bound (use [`DuoStandin::try_start`] to handle that).
    pub fn start(ikey: &str, skey: &str, api_host: &str) -> DuoStandin {
        match Self::try_start(ikey, skey, api_host) {
            Ok(s) => s,
            Err(e) => panic!("duo stand-in: binding 127.0.0.1:0: {e}"),
        }
    }

    /// [`DuoStandin::start`], with the bind error returned.
    pub fn try_start(ikey: &str, skey: &str, api_host: &str) -> io::Result<DuoStandin> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State {
            keys: verify::Keys {
                ikey: ikey.to_string(),
                skey: skey.to_string(),
                api_host: api_host.to_string(),
            },
            users: HashMap::new(),
            fail: None,
            requests: Vec::new(),
            txns: HashMap::new(),
            next_txid: 0,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let handler_state = Arc::clone(&state);
        let thread = server::serve(
            listener,
            Arc::clone(&stop),
            Arc::new(move |req| handle(&handler_state, req)),
        );
        Ok(DuoStandin {
            addr,
            api_host: api_host.to_string(),
            state,
            stop,
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT`, for `DuoConfig::base_url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The API host requests must be signed for.
    pub fn api_host(&self) -> &str {
        &self.api_host
    }

    /// Scripts what `username` does from now on (pushes already sent keep their script).
    pub fn set_user(&self, username: &str, behaviour: Behaviour) {
        lock(&self.state)
            .users
            .insert(username.to_string(), behaviour);
    }

    /// The user answers every push still unanswered now (as if tapping their phone):
    /// approve or deny. Returns how many pushes that answered.
    pub fn answer_pending(&self, approve: bool) -> usize {
        let mut st = lock(&self.state);
        let mut n = 0;
        for (b, _) in st.txns.values_mut() {
            if *b == Behaviour::Timeout {
                *b = if approve {
                    Behaviour::ApproveAfter(0)
                } else {
                    Behaviour::Deny
                };
                n += 1;
            }
        }
        n
    }

    /// Answers the next `n` requests (whatever they are, before any check) with `status`
    /// in Duo's failure envelope: 429 with code 42901, others with code `status * 100 + 1`.
    pub fn fail_next(&self, status: u16, n: u32) {
        lock(&self.state).fail = (n > 0).then_some((status, n));
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state).requests.clone()
    }
}

impl Drop for DuoStandin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Answers one request and records it.
fn handle(state: &Mutex<State>, req: server::Request) -> server::Response {
    let mut st = lock(state);
    let (params, outcome) = answer(&mut st, &req);
    let (status, body, code, version) = match outcome {
        Ok((value, version)) => (
            200,
            json!({"stat": "OK", "response": value}).to_string(),
            None,
            version,
        ),
        Err(f) => (f.status, f.body, Some(f.code), None),
    };
    let pushinfo = params
        .iter()
        .find(|(k, _)| k == "pushinfo")
        .and_then(|(_, v)| server::decode_form(v));
    st.requests.push(RecordedRequest {
        method: req.method.clone(),
        path: req.path.clone(),
        params,
        pushinfo,
        signature_version: version,
        status,
        code,
    });
    server::Response { status, body }
}

type Answer = Result<(Value, Option<u8>), Failure>;

/// The parameters of the request (decoded) and the answer.
fn answer(st: &mut State, req: &server::Request) -> (Vec<(String, String)>, Answer) {
    let query = server::decode_form(&req.query);
    let content_type = req.header("content-type").unwrap_or_default();
    let body_text = std::str::from_utf8(&req.body).ok();
    // Parameters of the body: a form (v2) or a JSON object of strings (v5).
    let body_params: Option<(Vec<(String, String)>, bool)> = if req.body.is_empty() {
        Some((Vec::new(), true))
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        body_text.and_then(server::decode_form).map(|p| (p, true))
    } else if content_type.starts_with("application/json") {
        json_params(&req.body).map(|p| (p, false))
    } else {
        None
    };
    let mut params = query.clone().unwrap_or_default();
    if let Some((b, _)) = &body_params {
        params.extend(b.iter().cloned());
    }
    if let Some((status, left)) = st.fail {
        st.fail = (left > 1).then_some((status, left - 1));
        let (code, msg) = match status {
            429 => (42901, "Too Many Requests"),
            s => (u32::from(s) * 100 + 1, "Injected failure"),
        };
        return (params, Err(Failure::new(status, code, msg, None)));
    }
    if req.method == "GET" && req.path == "/auth/v2/ping" {
        return (params, Ok((api::time(), None)));
    }
    let (Some(query), Some((body, body_is_form))) = (query, body_params) else {
        let f = Failure::new(400, 40002, "Invalid request parameters", Some("encoding"));
        return (params, Err(f));
    };
    // v2 signs the query of a GET and the form of a POST.
    let v2_params = match req.method.as_str() {
        "GET" => Some(query.clone()),
        _ if body_is_form => Some(body.clone()),
        _ => None,
    };
    let version = match verify::verify(&st.keys, req, v2_params.as_deref(), &query) {
        Ok(v) => v,
        Err(f) => return (params, Err(f)),
    };
    let result = match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/auth/v2/check") => Ok(api::time()),
        ("POST", "/auth/v2/preauth") => api::preauth(st, &params),
        ("POST", "/auth/v2/auth") => api::auth(st, &params),
        ("GET", "/auth/v2/auth_status") => api::auth_status(st, &params),
        (_, "/auth/v2/check" | "/auth/v2/preauth" | "/auth/v2/auth" | "/auth/v2/auth_status") => {
            Err(Failure::new(405, 40501, "Method not allowed", None))
        }
        _ => Err(Failure::new(404, 40401, "Resource not found", None)),
    };
    (params, result.map(|v| (v, Some(version))))
}

/// A JSON object whose values are strings → pairs; `None` otherwise.
fn json_params(body: &[u8]) -> Option<Vec<(String, String)>> {
    let v: serde_json::Map<String, Value> = serde_json::from_slice(body).ok()?;
    v.into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => Some((k, s)),
            _ => None,
        })
        .collect()
}
