//! A Splunk SOAR stand-in: `POST /rest/container`, `POST /rest/artifact` and
//! `GET /rest/version`, with the `ph-auth-token` header checked (401 otherwise).
//!
//! Containers need a `name` and a `label` (a-z, 0-9, '_', '-'); artifacts need an
//! existing `container_id`, and `cef`, when present, must be a JSON object; `severity`,
//! when present, must be `low`, `medium` or `high` (SOAR's predefined severities).
//! Answers: `{"success": true, "id": N}`; failures `{"failed": true, "message": ...}`
//! with 400; a second container with the same `source_data_identifier`, or a second
//! artifact with the same one in the same container, is answered 400 with
//! `existing_container_id` / `existing_artifact_id`, as SOAR's duplicate check does.
use std::{
    io,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use serde_json::{Map, Value, json};

use super::http::{Faults, Request, Response, Server, lock};

/// A stored container or artifact: its id and the JSON object it was created from.
#[derive(Clone, Debug, PartialEq)]
pub struct StandinObject {
    pub id: u64,
    pub body: Map<String, Value>,
}

#[derive(Default)]
struct Data {
    token: String,
    containers: Vec<StandinObject>,
    artifacts: Vec<StandinObject>,
}

#[derive(Default)]
struct State {
    data: Mutex<Data>,
    faults: Faults,
}

/// The running stand-in; stops on drop.
pub struct SoarStandin {
    server: Server,
    state: Arc<State>,
}

impl SoarStandin {
    /// Starts on 127.0.0.1:0 accepting `ph-auth-token: <token>`.
    pub fn start(token: &str) -> io::Result<Self> {
        let state = Arc::new(State::default());
        lock(&state.data).token = token.into();
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

    /// Every container created, in order.
    pub fn containers(&self) -> Vec<StandinObject> {
        lock(&self.state.data).containers.clone()
    }

    /// Every artifact created, in order.
    pub fn artifacts(&self) -> Vec<StandinObject> {
        lock(&self.state.data).artifacts.clone()
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

fn failed(status: u16, message: &str) -> Response {
    Response::json(status, &json!({"failed": true, "message": message}))
}

fn handle(state: &State, req: &Request) -> Response {
    if let Some((status, ra)) = state.faults.take() {
        let r = failed(status, "injected failure");
        return match ra {
            Some(s) => r.with_header("Retry-After", &s.to_string()),
            None => r,
        };
    }
    let mut d = lock(&state.data);
    if req.header("ph-auth-token") != Some(d.token.as_str()) {
        return failed(401, "Invalid token");
    }
    match (req.method.as_str(), req.path.trim_end_matches('/')) {
        ("GET", "/rest/version") => Response::json(200, &json!({"version": "6.3.1.178"})),
        ("POST", "/rest/container") => match req.json() {
            Some(Value::Object(body)) => container(&mut d, body),
            _ => failed(400, "request body is not a JSON object"),
        },
        ("POST", "/rest/artifact") => match req.json() {
            Some(Value::Object(body)) => artifact(&mut d, body),
            _ => failed(400, "request body is not a JSON object"),
        },
        _ => failed(404, "not found"),
    }
}

fn str_field<'a>(b: &'a Map<String, Value>, k: &str) -> Result<Option<&'a str>, Response> {
    match b.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(failed(400, &format!("{k} must be a string"))),
    }
}

fn check_common(b: &Map<String, Value>) -> Result<(), Response> {
    if let Some(sev) = str_field(b, "severity")?
        && !matches!(sev.to_ascii_lowercase().as_str(), "low" | "medium" | "high")
    {
        return Err(failed(400, &format!("Invalid severity: {sev}")));
    }
    str_field(b, "description")?;
    str_field(b, "source_data_identifier")?;
    Ok(())
}

fn container(d: &mut Data, body: Map<String, Value>) -> Response {
    let checked = (|| {
        check_common(&body)?;
        if str_field(&body, "name")?.is_none_or(str::is_empty) {
            return Err(failed(400, "name is required"));
        }
        let label = str_field(&body, "label")?.unwrap_or("");
        let label_ok = !label.is_empty()
            && label
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if !label_ok {
            return Err(failed(400, "label is required (a-z, 0-9, '_', '-')"));
        }
        str_field(&body, "source_data_identifier")
    })();
    let sdi = match checked {
        Ok(s) => s.map(str::to_owned),
        Err(r) => return r,
    };
    if let Some(sdi) = &sdi
        && let Some(c) = d
            .containers
            .iter()
            .find(|c| c.body.get("source_data_identifier").and_then(Value::as_str) == Some(sdi))
    {
        return Response::json(
            400,
            &json!({"failed": true, "message": "duplicate container", "existing_container_id": c.id}),
        );
    }
    let id = d.containers.len() as u64 + 1;
    d.containers.push(StandinObject { id, body });
    Response::json(200, &json!({"success": true, "id": id}))
}

fn artifact(d: &mut Data, body: Map<String, Value>) -> Response {
    if let Err(r) = check_common(&body) {
        return r;
    }
    let Some(cid) = body.get("container_id").and_then(Value::as_u64) else {
        return failed(400, "container_id is required (an integer)");
    };
    if !d.containers.iter().any(|c| c.id == cid) {
        return failed(400, &format!("Invalid container_id: {cid}"));
    }
    if body.get("cef").is_some_and(|c| !c.is_object()) {
        return failed(400, "cef must be a JSON object");
    }
    if body.get("run_automation").is_some_and(|r| !r.is_boolean()) {
        return failed(400, "run_automation must be a boolean");
    }
    for k in ["name", "label"] {
        if let Err(r) = str_field(&body, k) {
            return r;
        }
    }
    let sdi = body.get("source_data_identifier").and_then(Value::as_str);
    if let Some(sdi) = sdi
        && let Some(a) = d.artifacts.iter().find(|a| {
            a.body.get("container_id").and_then(Value::as_u64) == Some(cid)
                && a.body.get("source_data_identifier").and_then(Value::as_str) == Some(sdi)
        })
    {
        return Response::json(
            400,
            &json!({"failed": true, "message": "artifact already exists", "existing_artifact_id": a.id}),
        );
    }
    let id = d.artifacts.len() as u64 + 1;
    d.artifacts.push(StandinObject { id, body });
    Response::json(200, &json!({"success": true, "id": id}))
}
