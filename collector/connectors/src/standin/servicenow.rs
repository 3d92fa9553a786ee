//! A ServiceNow stand-in: the Table API for `incident` (query by encoded query, get,
//! create, update with work notes kept in a journal) and the OAuth password grant at
//! `/oauth_token.do`, checking what ServiceNow checks and answering its error shape
//! `{"error": {"message", "detail"}, "status": "failure"}`:
//!
//! - 401 `User Not Authenticated` without valid Basic credentials or bearer token;
//! - 400 on a body that is not a JSON object, a create without `short_description` or
//!   `correlation_id`, an `urgency`/`impact` outside 1–3, a non-numeric `state`;
//! - 403 `Data Policy Exception` when an update would leave the incident Resolved (6)
//!   or Closed (7) without `close_code` and `close_notes` (mandatory then);
//! - 404 `No Record found` for an unknown sys_id.
use std::{
    collections::{BTreeMap, HashMap},
    io,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::http::{Faults, Request, Response, Server, lock, parse_form};

/// One incident as the stand-in holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StandinIncident {
    pub sys_id: String,
    pub number: String,
    /// Every field set (all values as strings), without `work_notes`.
    pub fields: BTreeMap<String, String>,
    /// The work notes journal, oldest first.
    pub work_notes: Vec<String>,
}

#[derive(Default)]
struct Data {
    incidents: Vec<StandinIncident>,
    tokens: HashMap<String, Instant>,
    next: u32,
    username: String,
    password: String,
    oauth: Option<(String, String)>,
    token_lifetime_secs: u64,
}

#[derive(Default)]
struct State {
    data: Mutex<Data>,
    faults: Faults,
    after_commit: Faults,
}

/// The running stand-in; stops on drop.
pub struct ServiceNowStandin {
    server: Server,
    state: Arc<State>,
}

impl ServiceNowStandin {
    /// Starts on 127.0.0.1:0 accepting Basic auth for `username`/`password`.
    pub fn start(username: &str, password: &str) -> io::Result<Self> {
        let state = Arc::new(State::default());
        {
            let mut d = lock(&state.data);
            d.username = username.into();
            d.password = password.into();
            d.token_lifetime_secs = 1800;
            d.next = 10_001;
        }
        let s = state.clone();
        let server = Server::start(move |req| handle(&s, req))?;
        Ok(Self { server, state })
    }

    /// Also accept the OAuth password grant for this client, issuing bearer tokens.
    pub fn enable_oauth(&self, client_id: &str, client_secret: &str) {
        lock(&self.state.data).oauth = Some((client_id.into(), client_secret.into()));
    }

    /// The `expires_in` of tokens issued from now on, in seconds.
    pub fn set_token_lifetime(&self, secs: u64) {
        lock(&self.state.data).token_lifetime_secs = secs;
    }

    /// Forgets every issued token (their next use gets a 401).
    pub fn revoke_tokens(&self) {
        lock(&self.state.data).tokens.clear();
    }

    /// Answer the next `n` Table API requests with `status` (not handled).
    pub fn fail_next(&self, status: u16, n: u32) {
        self.state.faults.fail_next(status, n);
    }

    /// Handle the next `n` Table API writes (POST, PATCH), then answer `status` anyway:
    /// an answer lost after the record was written.
    pub fn fail_next_after_commit(&self, status: u16, n: u32) {
        self.state.after_commit.fail_next(status, n);
    }

    /// Send `Retry-After: secs` with injected failures.
    pub fn retry_after(&self, secs: Option<u64>) {
        self.state.faults.retry_after(secs);
        self.state.after_commit.retry_after(secs);
    }

    /// Every incident, in creation order.
    pub fn incidents(&self) -> Vec<StandinIncident> {
        lock(&self.state.data).incidents.clone()
    }

    /// Every request received.
    pub fn requests(&self) -> Vec<Request> {
        self.server.requests()
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }
}

/// ServiceNow's error body.
fn error(status: u16, message: &str, detail: &str) -> Response {
    Response::json(
        status,
        &json!({"error": {"message": message, "detail": detail}, "status": "failure"}),
    )
}

fn injected(status: u16, retry_after: Option<u64>) -> Response {
    let r = error(status, "Injected failure", "stand-in failure injection");
    match retry_after {
        Some(s) => r.with_header("Retry-After", &s.to_string()),
        None => r,
    }
}

fn handle(state: &State, req: &Request) -> Response {
    if req.path == "/oauth_token.do" {
        return token(state, req);
    }
    let Some(rest) = req.path.strip_prefix("/api/now/table/") else {
        return error(400, "Requested URI does not represent any resource", "");
    };
    if let Some((status, ra)) = state.faults.take() {
        return injected(status, ra);
    }
    if !authenticated(state, req) {
        return error(
            401,
            "User Not Authenticated",
            "Required to provide Auth information",
        );
    }
    if !req
        .header("accept")
        .is_some_and(|a| a.contains("application/json"))
    {
        return error(
            406,
            "Unsupported Accept header",
            "send Accept: application/json",
        );
    }
    let (table, sys_id) = match rest.split_once('/') {
        Some((t, id)) => (t, Some(id)),
        None => (rest, None),
    };
    if table != "incident" {
        return error(400, &format!("Invalid table {table}"), "");
    }
    let write = matches!(req.method.as_str(), "POST" | "PATCH" | "PUT");
    if write
        && req
            .header("content-type")
            .is_none_or(|c| !c.contains("application/json"))
    {
        return error(
            415,
            "Unsupported Media Type",
            "send Content-Type: application/json",
        );
    }
    let resp = match (req.method.as_str(), sys_id) {
        ("GET", None) => query(state, req),
        ("GET", Some(id)) => match find(&lock(&state.data), id) {
            Some(i) => Response::json(200, &json!({ "result": record(i) })),
            None => not_found(),
        },
        ("POST", None) => create(state, req),
        ("PATCH" | "PUT", Some(id)) => update(state, req, id),
        _ => error(
            405,
            "Method not Supported",
            &format!("{} {}", req.method, req.path),
        ),
    };
    if write
        && (200..300).contains(&resp.status)
        && let Some((status, ra)) = state.after_commit.take()
    {
        return injected(status, ra);
    }
    resp
}

fn not_found() -> Response {
    error(
        404,
        "No Record found",
        "Record doesn't exist or ACL restricts the record retrieval",
    )
}

fn authenticated(state: &State, req: &Request) -> bool {
    let Some(auth) = req.header("authorization") else {
        return false;
    };
    let d = lock(&state.data);
    if let Some(b64) = auth.strip_prefix("Basic ") {
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
            return false;
        };
        let expected = format!("{}:{}", d.username, d.password);
        return raw == expected.as_bytes();
    }
    if let Some(tok) = auth.strip_prefix("Bearer ") {
        return d
            .tokens
            .get(tok.trim())
            .is_some_and(|exp| Instant::now() < *exp);
    }
    false
}

fn token(state: &State, req: &Request) -> Response {
    let oauth_err =
        |status, e: &str| Response::json(status, &json!({"error": e, "error_description": e}));
    if req.method != "POST" {
        return oauth_err(405, "invalid_request");
    }
    if !req
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"))
    {
        return oauth_err(400, "invalid_request");
    }
    let form = parse_form(&String::from_utf8_lossy(&req.body));
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if get("grant_type") != Some("password") {
        return oauth_err(400, "unsupported_grant_type");
    }
    let mut d = lock(&state.data);
    let client_ok = d.oauth.as_ref().is_some_and(|(id, secret)| {
        get("client_id") == Some(id) && get("client_secret") == Some(secret)
    });
    let user_ok = get("username") == Some(d.username.as_str())
        && get("password") == Some(d.password.as_str());
    if !client_ok || !user_ok {
        return oauth_err(401, "access_denied");
    }
    let access = random_hex(24);
    let lifetime = d.token_lifetime_secs;
    d.tokens.insert(
        access.clone(),
        Instant::now() + Duration::from_secs(lifetime),
    );
    Response::json(
        200,
        &json!({
            "access_token": access,
            "refresh_token": random_hex(24),
            "scope": "useraccount",
            "token_type": "Bearer",
            "expires_in": lifetime,
        }),
    )
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    let _ = getrandom::fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn find<'a>(d: &'a Data, sys_id: &str) -> Option<&'a StandinIncident> {
    d.incidents.iter().find(|i| i.sys_id == sys_id)
}

fn record(i: &StandinIncident) -> Value {
    let mut m: Map<String, Value> = i
        .fields
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    m.insert("sys_id".into(), i.sys_id.clone().into());
    m.insert("number".into(), i.number.clone().into());
    // Journal fields read back empty through the Table API.
    m.insert("work_notes".into(), "".into());
    Value::Object(m)
}

/// Splits an encoded query on '^' (a literal '^' is written '^^') into `field=value`.
fn conditions(q: &str) -> Option<Vec<(String, String)>> {
    let mut parts = vec![String::new()];
    let mut chars = q.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '^' {
            if chars.peek() == Some(&'^') {
                chars.next();
                parts.last_mut()?.push('^');
            } else {
                parts.push(String::new());
            }
        } else {
            parts.last_mut()?.push(c);
        }
    }
    parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect()
}

fn query(state: &State, req: &Request) -> Response {
    let Some(conds) = conditions(req.query("sysparm_query").unwrap_or("")) else {
        return error(
            400,
            "Invalid query",
            "stand-in supports field=value[^field=value]",
        );
    };
    let limit: usize = match req.query("sysparm_limit").map(str::parse) {
        None => 10_000,
        Some(Ok(n)) => n,
        Some(Err(_)) => return error(400, "Invalid sysparm_limit", ""),
    };
    let d = lock(&state.data);
    let result: Vec<Value> = d
        .incidents
        .iter()
        .filter(|i| {
            conds.iter().all(|(k, v)| match k.as_str() {
                "sys_id" => i.sys_id == *v,
                "number" => i.number == *v,
                _ => i.fields.get(k).is_some_and(|f| f == v),
            })
        })
        .take(limit)
        .map(record)
        .collect();
    Response::json(200, &json!({ "result": result }))
}

/// The body's fields as strings, or the 400 to answer.
fn body_fields(req: &Request) -> Result<BTreeMap<String, String>, Response> {
    let Some(Value::Object(obj)) = req.json() else {
        return Err(error(
            400,
            "Exception while reading request",
            "The payload is not valid JSON.",
        ));
    };
    let mut out = BTreeMap::new();
    for (k, v) in obj {
        let s = match v {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null => String::new(),
            _ => return Err(error(400, &format!("Invalid value for field {k}"), "")),
        };
        out.insert(k, s);
    }
    for f in ["urgency", "impact"] {
        if let Some(v) = out.get(f)
            && !matches!(v.as_str(), "1" | "2" | "3")
        {
            return Err(error(
                400,
                &format!("Invalid value for {f}: {v}"),
                "1, 2 or 3",
            ));
        }
    }
    if let Some(s) = out.get("state")
        && (s.is_empty() || !s.chars().all(|c| c.is_ascii_digit()))
    {
        return Err(error(400, &format!("Invalid value for state: {s}"), ""));
    }
    Ok(out)
}

fn create(state: &State, req: &Request) -> Response {
    let mut fields = match body_fields(req) {
        Ok(f) => f,
        Err(r) => return r,
    };
    for f in ["short_description", "correlation_id"] {
        if fields.get(f).is_none_or(|v| v.trim().is_empty()) {
            return error(400, &format!("Missing required field: {f}"), "");
        }
    }
    let note = fields.remove("work_notes").filter(|n| !n.is_empty());
    fields.entry("state".into()).or_insert_with(|| "1".into());
    fields.entry("urgency".into()).or_insert_with(|| "3".into());
    fields.entry("impact".into()).or_insert_with(|| "3".into());
    let mut d = lock(&state.data);
    let n = d.next;
    d.next += 1;
    let inc = StandinIncident {
        sys_id: format!("{:032x}", 0x5eed_0000_u64 + u64::from(n)),
        number: format!("INC{n:07}"),
        fields,
        work_notes: note.into_iter().collect(),
    };
    let body = json!({ "result": record(&inc) });
    d.incidents.push(inc);
    Response::json(201, &body).with_header("Location", "/api/now/table/incident")
}

fn update(state: &State, req: &Request, sys_id: &str) -> Response {
    let mut fields = match body_fields(req) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let mut d = lock(&state.data);
    let Some(inc) = d.incidents.iter_mut().find(|i| i.sys_id == sys_id) else {
        return not_found();
    };
    let note = fields.remove("work_notes").filter(|n| !n.is_empty());
    let mut next = inc.fields.clone();
    next.extend(fields);
    let state_now = next.get("state").map(String::as_str).unwrap_or("1");
    let empty = |k: &str| next.get(k).is_none_or(|v| v.trim().is_empty());
    if matches!(state_now, "6" | "7") && (empty("close_code") || empty("close_notes")) {
        return error(
            403,
            "Operation Failed",
            "Data Policy Exception: The following fields are mandatory: Resolution code, Resolution notes",
        );
    }
    inc.fields = next;
    inc.work_notes.extend(note);
    Response::json(200, &json!({ "result": record(inc) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_query_conditions() {
        assert_eq!(
            conditions("correlation_id=a^^b^state=1"),
            Some(vec![
                ("correlation_id".into(), "a^b".into()),
                ("state".into(), "1".into())
            ])
        );
        assert_eq!(conditions(""), Some(vec![]));
        assert_eq!(conditions("nonsense"), None);
    }
}
