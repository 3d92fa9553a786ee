//! The API over real HTTP on loopback: tokens and scopes, hosts, flow filters, errors that
//! name the parameter, the OpenAPI document and the metrics.
use std::net::SocketAddr;

use cordon_wire::{Direction, FlowBatch, FlowEvent, FlowRecord, Proto, Verdict};
use serde_json::{Value, json};

use super::*;
use crate::store::Scope;

struct Api {
    base: String,
    admin: String,
    store: Arc<Mutex<Store>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

fn record(port: u16, t: u64) -> FlowRecord {
    FlowRecord {
        event: FlowEvent::Start,
        first_seen_ns: t,
        last_seen_ns: t + 10,
        proto: Proto::Tcp,
        direction: Direction::Outbound,
        local: "10.0.0.1:40000".parse().expect("addr"),
        remote: SocketAddr::from(([10, 0, 0, 2], port)),
        bytes_out: 60,
        bytes_in: 0,
        packets_out: 1,
        packets_in: 0,
        tcp_flags: (2, 0),
        closed: false,
        verdict: Verdict::Forwarded,
        process: None,
        unattributed_reason: None,
    }
}

async fn api() -> Api {
    let mut store = Store::in_memory().expect("store");
    let now = crate::ingest::now_ns();
    store
        .host_connected("web-1", "web-1", "0.1.0", "ebpf", now)
        .expect("host");
    let batch = FlowBatch {
        seq: 1,
        records: vec![record(443, now - 3_600_000_000_000), record(5432, now)],
        dropped_before: 0,
    };
    store.store_batch("web-1", &batch).expect("batch");
    let admin = create_token(
        &mut store,
        &NewToken {
            name: "test admin".into(),
            scope: "admin".into(),
            expires_in: None,
            uses: None,
        },
    )
    .expect("admin token")
    .token;
    let store = Arc::new(Mutex::new(store));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, ApiState::for_tests(store.clone()), async {
        let _ = stopped.await;
    }));
    Api {
        base,
        admin,
        store,
        _stop: stop,
    }
}

/// (status, JSON or text body) of a request; `body` makes it a POST.
async fn call(url: String, token: Option<String>, body: Option<Value>) -> (u16, Value) {
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut res = match body {
            Some(b) => {
                let mut req = agent.post(&url);
                if let Some(a) = &auth {
                    req = req.header("Authorization", a);
                }
                req.send_json(&b)
            }
            None => {
                let mut req = agent.get(&url);
                if let Some(a) = &auth {
                    req = req.header("Authorization", a);
                }
                req.call()
            }
        }
        .expect("request");
        let status = res.status().as_u16();
        let text = res.body_mut().read_to_string().expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    })
    .await
    .expect("request task")
}

#[tokio::test]
async fn tokens_and_scopes_guard_every_route_but_health() {
    let api = api().await;
    let url = |p: &str| format!("{}{p}", api.base);
    let (s, body) = call(url("/api/v1/health"), None, None).await;
    assert_eq!((s, body["status"].as_str()), (200, Some("ok")));
    let (s, body) = call(url("/api/v1/hosts"), None, None).await;
    assert_eq!(s, 401, "{body}");
    let (s, _) = call(url("/api/v1/hosts"), Some("cdn_nope".into()), None).await;
    assert_eq!(s, 401);

    // An admin makes a read token and a join token.
    let (s, read) = call(
        url("/api/v1/tokens"),
        Some(api.admin.clone()),
        Some(json!({"name": "grafana", "scope": "read"})),
    )
    .await;
    assert_eq!(s, 201, "{read}");
    let reader = read["token"].as_str().expect("secret").to_string();
    let (s, join) = call(
        url("/api/v1/tokens"),
        Some(api.admin.clone()),
        Some(json!({"name": "rack 4", "scope": "enroll", "uses": 20})),
    )
    .await;
    assert_eq!(s, 201, "{join}");
    assert_eq!(join["uses_left"], 20);
    assert!(
        join["expires_ns"].as_u64().is_some(),
        "join tokens expire by default"
    );
    let joiner = join["token"].as_str().expect("secret").to_string();

    let (s, _) = call(url("/api/v1/hosts"), Some(reader.clone()), None).await;
    assert_eq!(s, 200);
    // A read token cannot make tokens; a join token is not an API token.
    let (s, _) = call(
        url("/api/v1/tokens"),
        Some(reader.clone()),
        Some(json!({"name": "x", "scope": "admin"})),
    )
    .await;
    assert_eq!(s, 403);
    let (s, _) = call(url("/api/v1/hosts"), Some(joiner), None).await;
    assert_eq!(s, 403);

    // Bad requests name the field.
    let (s, body) = call(
        url("/api/v1/tokens"),
        Some(api.admin.clone()),
        Some(json!({"name": "x", "scope": "root"})),
    )
    .await;
    assert_eq!(s, 400);
    assert!(
        body["error"].as_str().expect("error").contains("scope"),
        "{body}"
    );
    let (s, body) = call(
        url("/api/v1/tokens"),
        Some(api.admin.clone()),
        Some(json!({"name": "x", "scope": "read", "colour": "red"})),
    )
    .await;
    assert_eq!(s, 400);
    assert!(body.to_string().contains("colour"), "{body}");

    // Revoked: refused from then on. Listings never show secrets.
    let id = read["id"].as_i64().expect("id");
    let (s, _) = call(
        url(&format!("/api/v1/tokens/{id}/revoke")),
        Some(api.admin.clone()),
        Some(json!({})),
    )
    .await;
    assert_eq!(s, 204);
    let (s, _) = call(url("/api/v1/hosts"), Some(reader.clone()), None).await;
    assert_eq!(s, 401);
    let (s, list) = call(url("/api/v1/tokens"), Some(api.admin.clone()), None).await;
    assert_eq!(s, 200);
    assert_eq!(list.as_array().map(Vec::len), Some(3));
    assert!(
        !list.to_string().contains(&reader[4..]),
        "a secret is listed"
    );
    let stored = api.store.lock().expect("lock").tokens().expect("tokens");
    assert!(stored.iter().any(|t| t.scope == Scope::Enroll));
}

#[tokio::test]
async fn hosts_and_flows_are_served_with_filters() {
    let api = api().await;
    let get = |p: &str| call(format!("{}{p}", api.base), Some(api.admin.clone()), None);
    let (s, hosts) = get("/api/v1/hosts").await;
    assert_eq!(s, 200);
    assert_eq!(hosts[0]["id"], "web-1");
    assert_eq!(hosts[0]["connected"], false);
    assert_eq!(hosts[0]["last_seq"], 1);
    let (s, host) = get("/api/v1/hosts/web-1").await;
    assert_eq!(host["revoked"], false);
    assert_eq!((s, host["capture"].as_str()), (200, Some("ebpf")));
    assert!(host["inventory"].is_null());
    assert_eq!(get("/api/v1/hosts/nope").await.0, 404);
    let post = |p: &str| {
        call(
            format!("{}{p}", api.base),
            Some(api.admin.clone()),
            Some(json!({})),
        )
    };
    assert_eq!(post("/api/v1/hosts/nope/revoke").await.0, 404);
    assert_eq!(post("/api/v1/hosts/web-1/revoke").await.0, 204);
    assert!(
        api.store
            .lock()
            .expect("lock")
            .is_revoked("web-1")
            .expect("revoked")
    );
    assert_eq!(get("/api/v1/hosts/web-1").await.1["revoked"], true);

    let (s, flows) = get("/api/v1/flows").await;
    assert_eq!(s, 200);
    assert_eq!(flows.as_array().map(Vec::len), Some(2));
    // Newest first.
    assert_eq!(flows[0]["remote_port"], 5432);
    for (query, n) in [
        ("port=443", 1),
        ("port=22", 0),
        ("host=web-1&remote_ip=10.0.0.2", 2),
        ("remote_ip=10.9.9.9", 0),
        ("since=30m", 1),
        ("until=30m", 1),
        ("limit=1", 1),
    ] {
        let (s, flows) = get(&format!("/api/v1/flows?{query}")).await;
        assert_eq!(s, 200, "{query}: {flows}");
        assert_eq!(flows.as_array().map(Vec::len), Some(n), "{query}: {flows}");
    }
    for (query, field) in [
        ("port=http", "port"),
        ("remote_ip=10.0.0", "remote_ip"),
        ("since=yesterday", "since"),
        ("limit=0", "limit"),
        ("colour=red", "colour"),
    ] {
        let (s, body) = get(&format!("/api/v1/flows?{query}")).await;
        assert_eq!(s, 400, "{query}");
        assert!(body.to_string().contains(field), "{query}: {body}");
    }
}

#[tokio::test]
async fn openapi_document_and_metrics_are_served() {
    let api = api().await;
    let (s, doc) = call(format!("{}/api/v1/openapi.json", api.base), None, None).await;
    assert_eq!(s, 200);
    assert!(doc["openapi"].as_str().expect("version").starts_with("3."));
    for path in [
        "/api/v1/hosts",
        "/api/v1/hosts/{id}",
        "/api/v1/flows",
        "/api/v1/tokens",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    assert!(doc["components"]["securitySchemes"]["token"].is_object());
    let _ = call(format!("{}/api/v1/hosts", api.base), None, None).await;
    let (s, text) = call(format!("{}/metrics", api.base), None, None).await;
    assert_eq!(s, 200);
    let text = text.as_str().expect("text").to_string();
    assert!(
        text.contains("# TYPE cordon_collector_agents_connected gauge"),
        "{text}"
    );
    assert!(
        text.contains("cordon_collector_api_requests_total{outcome=\"unauthorized\"} 1"),
        "{text}"
    );
    let (s, _) = call(format!("{}/api/v2/nothing", api.base), None, None).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn approvals_are_decided_once_by_the_console_or_by_a_one_time_link() {
    let api = api().await;
    let url = |p: &str| format!("{}{p}", api.base);
    let now = crate::ingest::now_ns();
    let token = crate::response::approval_link::new_token();
    let (console, link) = {
        let mut s = api.store.lock().expect("store");
        let mut ids = Vec::new();
        for (key, via, hash) in [
            ("k1", "console", None),
            (
                "k2",
                "link",
                Some(crate::response::approval_link::hash(&token)),
            ),
        ] {
            let run = s
                .start_run("pb", key, "web-1", "web-1", &json!({}), "ask", now)
                .expect("run")
                .expect("new run");
            let row = s.run(run).expect("run").expect("row");
            let id = s
                .request_approval(
                    &row,
                    via,
                    "alice",
                    "Isolate web-1?",
                    now + 60_000_000_000,
                    hash.as_deref(),
                    &json!({}),
                    now,
                )
                .expect("approval");
            ids.push(id);
        }
        (ids[0], ids[1])
    };
    let (st, list) = call(
        url("/api/v1/approvals?state=pending"),
        Some(api.admin.clone()),
        None,
    )
    .await;
    assert_eq!(
        (st, list.as_array().map(Vec::len)),
        (200, Some(2)),
        "{list}"
    );
    assert!(
        list.to_string().find("link_hash").is_none(),
        "the link hash is never served"
    );
    // Console: approve needs an admin token; the second answer is a conflict.
    let (st, _) = call(
        url(&format!("/api/v1/approvals/{console}/approve")),
        None,
        Some(json!({})),
    )
    .await;
    assert_eq!(st, 401);
    let (st, a) = call(
        url(&format!("/api/v1/approvals/{console}/approve")),
        Some(api.admin.clone()),
        Some(json!({})),
    )
    .await;
    assert_eq!(
        (st, a["state"].as_str(), a["decided_by"].as_str()),
        (200, Some("approved"), Some("test admin"))
    );
    let (st, e) = call(
        url(&format!("/api/v1/approvals/{console}/deny")),
        Some(api.admin.clone()),
        Some(json!({})),
    )
    .await;
    assert_eq!(st, 409, "{e}");
    // Link: a wrong token is refused; the right one decides once, without an API token.
    let (st, _) = call(
        url(&format!(
            "/api/v1/approvals/{link}/link?token=beef&decision=deny"
        )),
        None,
        None,
    )
    .await;
    assert_eq!(st, 403);
    let (st, _) = call(
        url(&format!(
            "/api/v1/approvals/{console}/link?token={token}&decision=deny"
        )),
        None,
        None,
    )
    .await;
    assert_eq!(st, 403, "a token only opens its own approval");
    let (st, a) = call(
        url(&format!(
            "/api/v1/approvals/{link}/link?token={token}&decision=deny"
        )),
        None,
        None,
    )
    .await;
    assert_eq!(
        (st, a["state"].as_str(), a["decided_by"].as_str()),
        (200, Some("denied"), Some("link:alice"))
    );
    let (st, _) = call(
        url(&format!(
            "/api/v1/approvals/{link}/link?token={token}&decision=approve"
        )),
        None,
        None,
    )
    .await;
    assert_eq!(st, 409, "one-time");
    let (st, runs) = call(url("/api/v1/runs"), Some(api.admin.clone()), None).await;
    assert_eq!((st, runs.as_array().map(Vec::len)), (200, Some(2)));
    let (st, d) = call(url("/api/v1/runs/1"), Some(api.admin.clone()), None).await;
    assert_eq!(
        (st, d["approvals"][0]["state"].as_str()),
        (200, Some("approved")),
        "{d}"
    );
}

#[tokio::test]
async fn learning_makes_a_draft_with_stats_and_approvals() {
    let api = api().await;
    let url = |p: &str| format!("{}{p}", api.base);
    let admin = || Some(api.admin.clone());
    let (s, r) = call(url("/api/v1/learn"), admin(), Some(json!({"since": "2h"}))).await;
    assert_eq!(s, 201, "{r}");
    let v = r["version"].as_i64().expect("version");
    assert_eq!(r["clusters"][0]["group"], "web", "{r}");
    assert_eq!(r["records"], 2);
    assert!(r["yaml"].as_str().expect("yaml").contains("catch_all"));
    // The same versions as `policy apply`: a draft, shown and publishable.
    let (s, p) = call(url(&format!("/api/v1/policies/{v}")), admin(), None).await;
    assert_eq!((s, p["state"].as_str()), (200, Some("draft")), "{p}");
    let (s, st) = call(url(&format!("/api/v1/policies/{v}/stats")), admin(), None).await;
    assert_eq!((s, st["version"].as_i64()), (200, Some(v)), "{st}");
    let rule = st["rules"][0]["name"].as_str().expect("rule").to_string();
    let (s, a) = call(
        url(&format!("/api/v1/policies/{v}/approve")),
        admin(),
        Some(json!({"groups": ["web"], "rules": [rule]})),
    )
    .await;
    assert_eq!((s, &a["groups"]), (200, &json!(["web"])), "{a}");
    let (s, e) = call(
        url(&format!("/api/v1/policies/{v}/approve")),
        admin(),
        Some(json!({"rules": ["nope"]})),
    )
    .await;
    assert_eq!(s, 400, "{e}");
    // A second run keeps the approved items.
    let (s, r2) = call(url("/api/v1/learn"), admin(), Some(json!({"since": "2h"}))).await;
    assert_eq!((s, r2["carried_from"].as_i64()), (201, Some(v)), "{r2}");
    assert_eq!(r2["carried_rules"], json!([rule]));
    // Errors name the field; an empty window is refused.
    let (s, e) = call(
        url("/api/v1/learn"),
        admin(),
        Some(json!({"since": "2h", "partition": "subnet"})),
    )
    .await;
    assert!(
        s == 400 && e["error"].as_str().unwrap_or("").contains("partition"),
        "{e}"
    );
    let (s, e) = call(
        url("/api/v1/learn"),
        admin(),
        Some(json!({"since": "10d", "until": "9d"})),
    )
    .await;
    assert_eq!(s, 422, "{e}");
    let (s, _) = call(
        url(&format!("/api/v1/policies/{v}/publish")),
        admin(),
        Some(json!({})),
    )
    .await;
    assert_eq!(s, 204);
    let (s, _) = call(url("/api/v1/policies/999/stats"), admin(), None).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn cluster_status_shows_nodes_by_heartbeat_and_their_agents() {
    let api = api().await;
    let url = |p: &str| format!("{}{p}", api.base);
    let now = crate::ingest::now_ns();
    {
        let mut s = api.store.lock().expect("store");
        let stats = json!({"worker_lag": 7});
        for (name, beat) in [("node-a", now), ("node-b", now - 60_000_000_000)] {
            s.heartbeat(
                &crate::store::NodeInfo {
                    name,
                    agent_addr: "10.0.0.1:7443",
                    api_addr: "127.0.0.1:7480",
                    version: "0.1.0",
                    stats: &stats,
                },
                beat,
            )
            .expect("beat");
        }
        s.agent_connected("web-1", "node-a", now).expect("agent");
    }
    let (s, body) = call(url("/api/v1/cluster"), Some(api.admin.clone()), None).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["mode"], "single");
    assert_eq!(body["answered_by"], "test-node");
    let nodes = body["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 2);
    assert_eq!(nodes[0]["name"], "node-a");
    assert_eq!(nodes[0]["up"], true);
    assert_eq!(nodes[0]["agents"], json!(["web-1"]));
    assert_eq!(nodes[0]["stats"]["worker_lag"], 7);
    assert_eq!(
        nodes[1]["up"], false,
        "a minute without a heartbeat is down"
    );
    // The host shows as connected (through node-a), though not to this node.
    let (_, hosts) = call(url("/api/v1/hosts"), Some(api.admin.clone()), None).await;
    assert_eq!(hosts[0]["connected"], true, "{hosts}");
    assert_eq!(hosts[0]["node"], "node-a");
    // A node that is up cannot be forgotten; a dead one can, and it is audited.
    let (s, _) = call(
        url("/api/v1/cluster/nodes/node-a/forget"),
        Some(api.admin.clone()),
        Some(json!({})),
    )
    .await;
    assert_eq!(s, 409);
    let (s, _) = call(
        url("/api/v1/cluster/nodes/node-b/forget"),
        Some(api.admin.clone()),
        Some(json!({})),
    )
    .await;
    assert_eq!(s, 200);
    let (_, body) = call(url("/api/v1/cluster"), Some(api.admin.clone()), None).await;
    assert_eq!(body["nodes"].as_array().map(Vec::len), Some(1));
    let (_, audit) = call(url("/api/v1/audit"), Some(api.admin.clone()), None).await;
    assert!(
        audit
            .as_array()
            .into_iter()
            .flatten()
            .any(|a| a["action"] == "cluster.node_forgotten" && a["target"] == "node-b"),
        "{audit}"
    );
}
