//! A small, faithful stand-in for Splunk's HTTP Event Collector, on loopback, for tests.
//!
//! It checks what HEC checks (Splunk docs: "Format events for HTTP Event Collector",
//! "About HTTP Event Collector Indexer Acknowledgment", "Troubleshoot HTTP Event
//! Collector"): `Authorization: Splunk <token>` (401 code 2 when missing, 401 code 3 when
//! malformed, 403 code 4 when unknown), gzip bodies (`Content-Encoding: gzip`),
//! concatenated JSON event objects parsed one by one (400 code 6 for bad JSON or a
//! non-numeric `time`, code 12 without `event`, code 13 for a blank one, code 5 for an
//! empty body), with acks on: the `X-Splunk-Request-Channel` GUID (400 code 10 missing,
//! 11 invalid), `ackId`s counted per channel, `/services/collector/ack` answering
//! `{"acks":{"<id>":bool}}` (an ack reported true is forgotten, as in Splunk), and
//! `/services/collector/health`. A request is accepted or rejected whole (real HEC may
//! have indexed the events before `invalid-event-number`).
//!
//! Faults ([`Fault`]) are injected to test the client's retries and acks.
use std::{
    collections::{HashMap, VecDeque},
    io::Read,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Bytes,
    extract::{DefaultBodyLimit, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::{Value, json};

pub const TOKEN_HEADER_PREFIX: &str = "Splunk ";

/// Something to go wrong, injected with [`HecStandin::inject`]. The HTTP faults
/// (`Busy503`, `TooMany429`, `ServerError500`, `Status`) answer the next `times`
/// requests to the event and health endpoints, in the order injected, before any check.
#[derive(Clone, Debug)]
pub enum Fault {
    /// 503 `{"text":"Server is busy","code":9}`.
    Busy503 { times: usize },
    /// 429, with `Retry-After: <secs>` when given.
    TooMany429 {
        times: usize,
        retry_after: Option<u64>,
    },
    /// 500 `{"text":"Internal server error","code":8}`.
    ServerError500 { times: usize },
    /// Any status with a HEC body `{"text","code"}`.
    Status {
        times: usize,
        status: u16,
        text: String,
        code: i64,
    },
    /// Accept the next `times` event requests, then hold the reply back for `delay`
    /// (a client that times out has had its events accepted all the same).
    Stall { times: usize, delay: Duration },
    /// Acks become true only `delay` after the request was accepted.
    SlowAcks { delay: Duration },
    /// The next `times` ack ids issued never become true.
    LoseAcks { times: usize },
    /// No ack ever becomes true (until `clear_faults`).
    DropAcks,
}

/// One request as the stand-in saw it.
#[derive(Clone, Debug)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    pub status: u16,
    /// HEC's `code` in the reply.
    pub code: i64,
    pub at: Instant,
    pub gzip: bool,
    /// Body bytes as received (compressed when gzip).
    pub wire_bytes: usize,
    /// Body bytes after decompression.
    pub raw_bytes: usize,
    /// Events accepted by this request.
    pub events: usize,
    pub channel: Option<String>,
    pub ack_id: Option<u64>,
}

#[derive(Default)]
struct Channel {
    next_id: u64,
    /// Ack id -> when it becomes true (`None`: never).
    acks: HashMap<u64, Option<Instant>>,
}

struct Inner {
    token: String,
    use_ack: bool,
    events: Vec<Value>,
    http_faults: VecDeque<(usize, Fault)>,
    stall: Option<(usize, Duration)>,
    ack_delay: Duration,
    lose_acks: usize,
    drop_acks: bool,
    channels: HashMap<String, Channel>,
    /// Highest number of ack ids outstanding (issued, not yet reported true) at once.
    peak_outstanding: usize,
    requests: Vec<RequestRecord>,
}

type Shared = Arc<Mutex<Inner>>;

fn lock(s: &Shared) -> MutexGuard<'_, Inner> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// The running stand-in; stops when dropped.
pub struct HecStandin {
    addr: SocketAddr,
    state: Shared,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl HecStandin {
    /// Listens on 127.0.0.1 (a free port) with this token; `use_ack` as the token's
    /// "indexer acknowledgement" setting.
    pub fn start(token: &str, use_ack: bool) -> HecStandin {
        let state: Shared = Arc::new(Mutex::new(Inner {
            token: token.to_string(),
            use_ack,
            events: Vec::new(),
            http_faults: VecDeque::new(),
            stall: None,
            ack_delay: Duration::ZERO,
            lose_acks: 0,
            drop_acks: false,
            channels: HashMap::new(),
            peak_outstanding: 0,
            requests: Vec::new(),
        }));
        let std_listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("local addr");
        let app = Router::new()
            .route("/services/collector/event", post(event))
            .route("/services/collector", post(event))
            .route("/services/collector/ack", post(ack))
            .route("/services/collector/health", get(health))
            .layer(DefaultBodyLimit::disable())
            .with_state(state.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            rt.block_on(async move {
                let listener =
                    tokio::net::TcpListener::from_std(std_listener).expect("tokio listener");
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        HecStandin {
            addr,
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:<port>`: the base URL for the sink.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every event accepted so far, in order (duplicates included).
    pub fn events(&self) -> Vec<Value> {
        lock(&self.state).events.clone()
    }

    pub fn inject(&self, fault: Fault) {
        let mut s = lock(&self.state);
        match fault {
            Fault::Busy503 { times }
            | Fault::TooMany429 { times, .. }
            | Fault::ServerError500 { times }
            | Fault::Status { times, .. } => s.http_faults.push_back((times, fault)),
            Fault::Stall { times, delay } => s.stall = Some((times, delay)),
            Fault::SlowAcks { delay } => s.ack_delay = delay,
            Fault::LoseAcks { times } => s.lose_acks += times,
            Fault::DropAcks => s.drop_acks = true,
        }
    }

    pub fn clear_faults(&self) {
        let mut s = lock(&self.state);
        s.http_faults.clear();
        s.stall = None;
        s.ack_delay = Duration::ZERO;
        s.lose_acks = 0;
        s.drop_acks = false;
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.state).requests.clone()
    }

    /// Requests so far to `path` (e.g. `/services/collector/event`).
    pub fn count(&self, path: &str) -> usize {
        lock(&self.state)
            .requests
            .iter()
            .filter(|r| r.path == path)
            .count()
    }

    pub fn event_requests(&self) -> Vec<RequestRecord> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == "/services/collector/event")
            .collect()
    }

    /// The most ack ids that were outstanding (issued, not yet reported true) at once.
    pub fn peak_outstanding_acks(&self) -> usize {
        lock(&self.state).peak_outstanding
    }
}

impl Drop for HecStandin {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn hec_json(status: u16, text: &str, code: i64) -> (StatusCode, Value) {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        json!({ "text": text, "code": code }),
    )
}

/// The next HTTP fault, if one is armed: status, HEC body, `Retry-After`.
fn take_http_fault(s: &mut Inner) -> Option<(StatusCode, Value, Option<u64>)> {
    let (times, fault) = s.http_faults.front_mut()?;
    let fault = fault.clone();
    *times = times.saturating_sub(1);
    if *times == 0 {
        s.http_faults.pop_front();
    }
    let ((status, body), retry_after) = match fault {
        Fault::Busy503 { .. } => (hec_json(503, "Server is busy", 9), None),
        Fault::TooMany429 { retry_after, .. } => {
            (hec_json(429, "Too many requests", 9), retry_after)
        }
        Fault::ServerError500 { .. } => (hec_json(500, "Internal server error", 8), None),
        Fault::Status {
            status, text, code, ..
        } => (hec_json(status, &text, code), None),
        _ => return None,
    };
    Some((status, body, retry_after))
}

fn json_response((status, body): (StatusCode, Value), retry_after: Option<u64>) -> Response {
    let mut resp = (status, axum::Json(body)).into_response();
    if let Some(secs) = retry_after
        && let Ok(v) = secs.to_string().parse()
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

/// 401 code 2 without the header, 401 code 3 when not `Splunk <token>`, 403 code 4 for
/// an unknown token.
fn check_auth(s: &Inner, headers: &HeaderMap) -> Result<(), (StatusCode, Value)> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(hec_json(401, "Token is required", 2));
    };
    let value = value.to_str().unwrap_or("");
    let Some(token) = value.strip_prefix(TOKEN_HEADER_PREFIX) else {
        return Err(hec_json(401, "Invalid authorization", 3));
    };
    if token.trim() != s.token {
        return Err(hec_json(403, "Invalid token", 4));
    }
    Ok(())
}

fn is_guid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// With acks on, the channel header is required and must be a GUID.
fn check_channel(s: &Inner, headers: &HeaderMap) -> Result<Option<String>, (StatusCode, Value)> {
    let channel = headers
        .get("x-splunk-request-channel")
        .map(|v| v.to_str().unwrap_or("").to_string());
    if !s.use_ack {
        return Ok(channel);
    }
    match channel {
        None => Err(hec_json(400, "Data channel is missing", 10)),
        Some(c) if !is_guid(&c) => Err(hec_json(400, "Invalid data channel", 11)),
        Some(c) => Ok(Some(c)),
    }
}

fn blank(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        _ => false,
    }
}

/// Parses concatenated JSON event objects, checking each as HEC does.
fn parse_events(raw: &[u8]) -> Result<Vec<Value>, (StatusCode, Value)> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Err(hec_json(400, "No data", 5));
    }
    let mut out = Vec::new();
    for (n, item) in serde_json::Deserializer::from_slice(raw)
        .into_iter::<Value>()
        .enumerate()
    {
        let invalid = |text: &str, code: i64| {
            (
                StatusCode::BAD_REQUEST,
                json!({ "text": text, "code": code, "invalid-event-number": n }),
            )
        };
        let Ok(v) = item else {
            return Err(invalid("Invalid data format", 6));
        };
        let Some(obj) = v.as_object() else {
            return Err(invalid("Invalid data format", 6));
        };
        match obj.get("event") {
            None => return Err(invalid("Event field is required", 12)),
            Some(e) if blank(e) => return Err(invalid("Event field cannot be blank", 13)),
            Some(_) => {}
        }
        // Indexed fields: a flat object of strings, numbers or arrays of them.
        if let Some(f) = obj.get("fields") {
            let flat = f.as_object().is_some_and(|m| {
                m.values().all(|v| match v {
                    Value::String(_) | Value::Number(_) => true,
                    Value::Array(a) => a.iter().all(|x| x.is_string() || x.is_number()),
                    _ => false,
                })
            });
            if !flat {
                return Err(invalid("Error in handling indexed fields", 15));
            }
        }
        if let Some(t) = obj.get("time") {
            let numeric = t.is_number() || t.as_str().is_some_and(|s| s.parse::<f64>().is_ok());
            if !numeric {
                return Err(invalid("Invalid data format", 6));
            }
        }
        out.push(v);
    }
    Ok(out)
}

fn record(
    s: &mut Inner,
    method: &str,
    path: &str,
    headers: &HeaderMap,
    status: StatusCode,
    body: &Value,
) {
    let r = RequestRecord {
        method: method.to_string(),
        path: path.to_string(),
        status: status.as_u16(),
        code: body.get("code").and_then(Value::as_i64).unwrap_or(-1),
        at: Instant::now(),
        gzip: headers
            .get(header::CONTENT_ENCODING)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip")),
        wire_bytes: 0,
        raw_bytes: 0,
        events: 0,
        channel: headers
            .get("x-splunk-request-channel")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        ack_id: body.get("ackId").and_then(Value::as_u64),
    };
    s.requests.push(r);
}

async fn event(State(st): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    const PATH: &str = "/services/collector/event";
    let stall;
    let resp = {
        let mut s = lock(&st);
        if let Some((status, reply, retry_after)) = take_http_fault(&mut s) {
            record(&mut s, "POST", PATH, &headers, status, &reply);
            if let Some(last) = s.requests.last_mut() {
                last.wire_bytes = body.len();
            }
            return json_response((status, reply), retry_after);
        }
        let result = (|| {
            check_auth(&s, &headers)?;
            let channel = check_channel(&s, &headers)?;
            let gzip = headers
                .get(header::CONTENT_ENCODING)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
            let raw = if gzip {
                let mut out = Vec::new();
                flate2::read::MultiGzDecoder::new(&body[..])
                    .read_to_end(&mut out)
                    .map_err(|_| hec_json(400, "Invalid data format", 6))?;
                out
            } else {
                body.to_vec()
            };
            let events = parse_events(&raw)?;
            Ok::<_, (StatusCode, Value)>((channel, raw.len(), events))
        })();
        let (status, reply, raw_len, n) = match result {
            Err((status, reply)) => (status, reply, 0, 0),
            Ok((channel, raw_len, events)) => {
                let n = events.len();
                s.events.extend(events);
                let mut reply = json!({ "text": "Success", "code": 0 });
                if s.use_ack
                    && let Some(channel) = channel
                {
                    let ready_at = if s.drop_acks || s.lose_acks > 0 {
                        s.lose_acks = s.lose_acks.saturating_sub(1);
                        None
                    } else {
                        Some(Instant::now() + s.ack_delay)
                    };
                    let ch = s.channels.entry(channel).or_default();
                    let id = ch.next_id;
                    ch.next_id += 1;
                    ch.acks.insert(id, ready_at);
                    let outstanding = ch.acks.len();
                    s.peak_outstanding = s.peak_outstanding.max(outstanding);
                    reply["ackId"] = json!(id);
                }
                (StatusCode::OK, reply, raw_len, n)
            }
        };
        record(&mut s, "POST", PATH, &headers, status, &reply);
        if let Some(last) = s.requests.last_mut() {
            last.wire_bytes = body.len();
            last.raw_bytes = raw_len;
            last.events = n;
        }
        stall = match &mut s.stall {
            Some((times, delay)) if status == StatusCode::OK && *times > 0 => {
                *times -= 1;
                Some(*delay)
            }
            _ => None,
        };
        json_response((status, reply), None)
    };
    if let Some(delay) = stall {
        tokio::time::sleep(delay).await;
    }
    resp
}

async fn ack(State(st): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    const PATH: &str = "/services/collector/ack";
    let mut s = lock(&st);
    let result = (|| {
        check_auth(&s, &headers)?;
        if !s.use_ack {
            return Err(hec_json(400, "ACK is disabled", 14));
        }
        let Some(channel) = check_channel(&s, &headers)? else {
            return Err(hec_json(400, "Data channel is missing", 10));
        };
        let ids: Vec<u64> = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.get("acks").cloned())
            .and_then(|a| serde_json::from_value(a).ok())
            .ok_or_else(|| hec_json(400, "Invalid data format", 6))?;
        let now = Instant::now();
        let drop_all = s.drop_acks;
        let ch = s.channels.entry(channel).or_default();
        let mut acks = serde_json::Map::new();
        for id in ids {
            let done = !drop_all && matches!(ch.acks.get(&id), Some(Some(at)) if *at <= now);
            if done {
                // Splunk forgets an ack once it has reported it true.
                ch.acks.remove(&id);
            }
            acks.insert(id.to_string(), Value::Bool(done));
        }
        Ok(json!({ "acks": acks }))
    })();
    let (status, reply) = match result {
        Ok(reply) => (StatusCode::OK, reply),
        Err(e) => e,
    };
    record(&mut s, "POST", PATH, &headers, status, &reply);
    json_response((status, reply), None)
}

async fn health(State(st): State<Shared>, headers: HeaderMap) -> Response {
    const PATH: &str = "/services/collector/health";
    let mut s = lock(&st);
    if let Some((status, reply, retry_after)) = take_http_fault(&mut s) {
        record(&mut s, "GET", PATH, &headers, status, &reply);
        return json_response((status, reply), retry_after);
    }
    let reply = json!({ "text": "HEC is healthy", "code": 17 });
    record(&mut s, "GET", PATH, &headers, StatusCode::OK, &reply);
    json_response((StatusCode::OK, reply), None)
}
