//! The console over real HTTP on loopback: sign-in, sessions that end with their token,
//! forged cookies, CSRF, scopes (a read-only user sees no isolate button and is refused
//! by the server too), the security headers, and the pages with real stored data.
use std::sync::{Arc, Mutex};

use crate::{
    api::{ApiState, NewToken, create_token, serve},
    store::Store,
};

struct Console {
    base: String,
    admin: String,
    reader: String,
    join: String,
    store: Arc<Mutex<Store>>,
    policy: Arc<crate::policy::state::PolicyState>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

#[derive(Debug)]
struct Res {
    status: u16,
    location: Option<String>,
    cookies: Vec<String>,
    headers: Vec<(String, String)>,
    body: String,
}

impl Res {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// The value a `Set-Cookie` gives cookie `name`.
    fn cookie(&self, name: &str) -> Option<String> {
        self.cookies.iter().find_map(|c| {
            let first = c.split(';').next()?;
            let (k, v) = first.split_once('=')?;
            (k == name).then(|| v.to_string())
        })
    }
}

fn token(store: &mut Store, name: &str, scope: &str) -> String {
    create_token(
        store,
        &NewToken {
            name: name.into(),
            scope: scope.into(),
            expires_in: None,
            uses: None,
        },
    )
    .expect("token")
    .token
}

async fn console() -> Console {
    let mut store = Store::in_memory().expect("store");
    let now = crate::ingest::now_ns();
    store
        .host_connected("agent-web-1", "web-1", "0.1.0", "ebpf", now)
        .expect("host");
    let admin = token(&mut store, "ops", "admin");
    let reader = token(&mut store, "analyst", "read");
    let join = token(&mut store, "join", "enroll");
    let store = Arc::new(Mutex::new(store));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let state = ApiState::for_tests(store.clone());
    let policy = state.policy.clone();
    tokio::spawn(serve(listener, state, async {
        let _ = stopped.await;
    }));
    Console {
        base,
        admin,
        reader,
        join,
        store,
        policy,
        _stop: stop,
    }
}

/// A request without following redirects; `form` makes it a POST.
async fn req(
    url: String,
    cookie: Option<String>,
    form: Option<Vec<(&'static str, String)>>,
) -> Res {
    req_with(url, cookie, form, None).await
}

async fn req_with(
    url: String,
    cookie: Option<String>,
    form: Option<Vec<(&'static str, String)>>,
    origin: Option<&'static str>,
) -> Res {
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .build()
            .into();
        let res = match form {
            Some(f) => {
                let mut r = agent.post(&url);
                if let Some(c) = &cookie {
                    r = r.header("Cookie", c);
                }
                if let Some(o) = origin {
                    r = r.header("Origin", o);
                }
                let pairs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
                r.send_form(pairs)
            }
            None => {
                let mut r = agent.get(&url);
                if let Some(c) = &cookie {
                    r = r.header("Cookie", c);
                }
                r.call()
            }
        };
        let mut res = res.expect("request");
        let headers: Vec<(String, String)> = res
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let cookies = headers
            .iter()
            .filter(|(k, _)| k == "set-cookie")
            .map(|(_, v)| v.clone())
            .collect();
        let location = res
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Res {
            status: res.status().as_u16(),
            location,
            cookies,
            headers,
            body: res.body_mut().read_to_string().unwrap_or_default(),
        }
    })
    .await
    .expect("request task")
}

/// The value of hidden input `name` in a page.
fn hidden(body: &str, name: &str) -> String {
    let at = body
        .find(&format!("name=\"{name}\" value=\""))
        .unwrap_or_else(|| panic!("no {name} field in {body}"));
    let rest = &body[at + name.len() + 15..];
    rest[..rest.find('"').expect("closing quote")].to_string()
}

/// Signs in with `token`; returns the `Cookie` header value of the session.
async fn sign_in(c: &Console, token: &str) -> Result<String, Res> {
    let page = req(format!("{}/console/signin", c.base), None, None).await;
    assert_eq!(page.status, 200);
    let nonce = hidden(&page.body, "nonce");
    let pre = page
        .cookie(super::session::PRE_COOKIE)
        .expect("nonce cookie");
    let res = req(
        format!("{}/console/signin", c.base),
        Some(format!("{}={pre}", super::session::PRE_COOKIE)),
        Some(vec![("token", token.to_string()), ("nonce", nonce)]),
    )
    .await;
    match res.cookie(super::session::COOKIE) {
        Some(v) if res.status == 303 => Ok(format!("{}={v}", super::session::COOKIE)),
        _ => Err(res),
    }
}

#[tokio::test]
async fn signing_in_gives_a_strict_session_cookie_and_pages_carry_a_strict_csp() {
    let c = console().await;
    // No session: to the sign-in page.
    let r = req(format!("{}/console/hosts", c.base), None, None).await;
    assert_eq!(
        (r.status, r.location.as_deref()),
        (303, Some("/console/signin"))
    );
    let page = req(format!("{}/console/signin", c.base), None, None).await;
    let pre = page
        .cookie(super::session::PRE_COOKIE)
        .expect("nonce cookie");
    let res = req(
        format!("{}/console/signin", c.base),
        Some(format!("{}={pre}", super::session::PRE_COOKIE)),
        Some(vec![
            ("token", c.reader.clone()),
            ("nonce", hidden(&page.body, "nonce")),
        ]),
    )
    .await;
    assert_eq!(
        (res.status, res.location.as_deref()),
        (303, Some("/console/hosts"))
    );
    let set = res
        .cookies
        .iter()
        .find(|c| c.starts_with("cordon_session="))
        .expect("session cookie");
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/console"] {
        assert!(set.contains(attr), "{attr} missing in {set}");
    }
    assert!(
        !set.contains(&c.reader),
        "the secret must not be in the cookie"
    );
    let cookie = sign_in(&c, &c.reader).await.expect("signed in");
    let hosts = req(
        format!("{}/console/hosts", c.base),
        Some(cookie.clone()),
        None,
    )
    .await;
    assert_eq!(hosts.status, 200, "{}", hosts.body);
    assert!(hosts.body.contains("web-1"), "{}", hosts.body);
    assert!(hosts.body.contains("analyst · read"));
    let csp = hosts.header("content-security-policy").expect("CSP");
    assert!(
        csp.contains("script-src 'self'") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(hosts.header("x-frame-options"), Some("DENY"));
    assert!(!hosts.body.contains("<script>"), "no inline scripts");
    // The assets come from the binary.
    let js = req(
        format!("{}{}", c.base, super::assets::path("htmx.min.js")),
        None,
        None,
    )
    .await;
    assert_eq!(js.status, 200);
    assert!(js.body.len() > 10_000);
}

#[tokio::test]
async fn bad_tokens_forged_cookies_and_join_tokens_get_no_session() {
    let c = console().await;
    for bad in ["", "nonsense", &format!("cdn_{}", "0".repeat(64)), &c.join] {
        let r = sign_in(&c, bad).await.expect_err("must be refused");
        assert_eq!(r.status, 401, "{bad}: {}", r.body);
        assert!(r.body.contains("id=\"error\""), "{}", r.body);
    }
    // Without the nonce cookie the sign-in form is refused (login CSRF).
    let page = req(format!("{}/console/signin", c.base), None, None).await;
    let r = req(
        format!("{}/console/signin", c.base),
        None,
        Some(vec![
            ("token", c.admin.clone()),
            ("nonce", hidden(&page.body, "nonce")),
        ]),
    )
    .await;
    assert_eq!(r.status, 401);
    assert!(r.cookie("cordon_session").is_none());
    // A cookie with a made-up signature, or another key's, is no session.
    let forged = format!(
        "cordon_session={}.{}.{}",
        "a".repeat(64),
        u64::MAX,
        "0".repeat(64)
    );
    let r = req(format!("{}/console/hosts", c.base), Some(forged), None).await;
    assert_eq!(r.status, 303);
    let other = super::session::issue(&[9; 32], &crate::tokens::hash(&c.admin), 1 << 40);
    let r = req(
        format!("{}/console/hosts", c.base),
        Some(format!("cordon_session={other}")),
        None,
    )
    .await;
    assert_eq!(r.status, 303);
}

#[tokio::test]
async fn a_session_ends_when_its_token_is_revoked() {
    let c = console().await;
    let cookie = sign_in(&c, &c.admin).await.expect("signed in");
    let ok = req(
        format!("{}/console/alerts", c.base),
        Some(cookie.clone()),
        None,
    )
    .await;
    assert_eq!(ok.status, 200);
    {
        let mut s = c.store.lock().expect("store");
        let id = s
            .tokens()
            .expect("tokens")
            .into_iter()
            .find(|t| t.name == "ops")
            .expect("ops")
            .id;
        s.revoke_token(id).expect("revoke");
    }
    let r = req(format!("{}/console/alerts", c.base), Some(cookie), None).await;
    assert_eq!(
        (r.status, r.location.as_deref()),
        (303, Some("/console/signin"))
    );
}

#[tokio::test]
async fn isolating_needs_admin_and_the_forms_csrf_token() {
    let c = console().await;
    let read = sign_in(&c, &c.reader).await.expect("reader");
    let admin = sign_in(&c, &c.admin).await.expect("admin");
    let host = |cookie: &String| {
        req(
            format!("{}/console/hosts/agent-web-1", c.base),
            Some(cookie.clone()),
            None,
        )
    };
    let page = host(&read).await;
    assert_eq!(page.status, 200);
    assert!(
        !page.body.contains("id=\"isolate\""),
        "read-only users get no isolate button"
    );
    let page = host(&admin).await;
    assert!(page.body.contains("id=\"isolate\""), "{}", page.body);

    let url = format!("{}/console/hosts/agent-web-1/isolate", c.base);
    // The confirmation page, with the form and its CSRF token.
    let confirm = req(url.clone(), Some(admin.clone()), None).await;
    assert_eq!(confirm.status, 200);
    let csrf = hidden(&confirm.body, "csrf");
    let reader_confirm = req(url.clone(), Some(read.clone()), None).await;
    assert_eq!(reader_confirm.status, 403);
    let reader_csrf = hidden(
        &req(
            format!("{}/console/hosts", c.base),
            Some(read.clone()),
            None,
        )
        .await
        .body,
        "csrf",
    );
    let form = |csrf: String| {
        Some(vec![
            ("csrf", csrf),
            ("reason", "console test".to_string()),
            ("duration", "1h".to_string()),
        ])
    };
    let commands = || {
        c.store
            .lock()
            .expect("store")
            .commands(None, 10)
            .expect("commands")
            .len()
    };
    // Read-only: refused by the server even with its own valid CSRF token.
    let r = req(url.clone(), Some(read.clone()), form(reader_csrf)).await;
    assert_eq!(r.status, 403, "{}", r.body);
    // Admin without the token, with another session's token, or from another origin.
    let r = req(url.clone(), Some(admin.clone()), form(String::new())).await;
    assert_eq!(r.status, 403);
    assert!(r.body.contains("CSRF"));
    let other = sign_in(&c, &c.admin).await.expect("second session");
    let other_csrf = hidden(
        &req(format!("{}/console/hosts", c.base), Some(other), None)
            .await
            .body,
        "csrf",
    );
    if other_csrf != csrf {
        let r = req(url.clone(), Some(admin.clone()), form(other_csrf)).await;
        assert_eq!(r.status, 403);
    }
    let r = req_with(
        url.clone(),
        Some(admin.clone()),
        form(csrf.clone()),
        Some("http://evil.example"),
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(commands(), 0, "nothing refused may queue a command");
    // Without a session at all.
    let r = req(url.clone(), None, form(csrf.clone())).await;
    assert_eq!(r.status, 303);
    assert_eq!(commands(), 0);

    let r = req(url, Some(admin.clone()), form(csrf)).await;
    assert_eq!(
        (r.status, r.location.as_deref()),
        (303, Some("/console/hosts/agent-web-1")),
        "{}",
        r.body
    );
    let cmds = c
        .store
        .lock()
        .expect("store")
        .commands(None, 10)
        .expect("commands");
    assert_eq!(cmds.len(), 1);
    assert_eq!(cmds[0].kind, "isolate");
    assert_eq!(cmds[0].created_by, "ops");
    assert_eq!(cmds[0].body["reason"], "console test");
    assert!(cmds[0].body["expires_at"].as_u64().is_some_and(|e| e > 0));
    // An empty reason names the field.
    let confirm = req(
        format!("{}/console/hosts/agent-web-1/isolate", c.base),
        Some(admin.clone()),
        None,
    )
    .await;
    let r = req(
        format!("{}/console/hosts/agent-web-1/isolate", c.base),
        Some(admin),
        Some(vec![
            ("csrf", hidden(&confirm.body, "csrf")),
            ("reason", " ".into()),
        ]),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("reason"), "{}", r.body);
}

#[tokio::test]
async fn the_flow_search_filters_on_the_server_and_offers_one_click_includes() {
    let c = console().await;
    {
        use cordon_wire::{Direction, FlowBatch, FlowEvent, FlowRecord, Proto, Verdict};
        let now = crate::ingest::now_ns();
        let rec = |port: u16| FlowRecord {
            event: FlowEvent::Start,
            first_seen_ns: now,
            last_seen_ns: now + u64::from(port),
            proto: Proto::Tcp,
            direction: Direction::Outbound,
            local: "10.0.0.1:40000".parse().expect("addr"),
            remote: std::net::SocketAddr::from(([10, 0, 0, 2], port)),
            bytes_out: 60,
            bytes_in: 0,
            packets_out: 1,
            packets_in: 0,
            tcp_flags: (2, 0),
            closed: false,
            verdict: Verdict::Forwarded,
            process: None,
            unattributed_reason: None,
        };
        let batch = FlowBatch {
            seq: 1,
            records: vec![rec(443), rec(5432)],
            dropped_before: 0,
        };
        c.store
            .lock()
            .expect("store")
            .store_batch("agent-web-1", &batch)
            .expect("batch");
    }
    let cookie = sign_in(&c, &c.reader).await.expect("reader");
    let all = req(
        format!("{}/console/flows", c.base),
        Some(cookie.clone()),
        None,
    )
    .await;
    assert_eq!(all.status, 200);
    assert!(all.body.contains("10.0.0.2:443") && all.body.contains("10.0.0.2:5432"));
    assert!(
        all.body.contains("port=5432"),
        "an include link for the port"
    );
    let one = req(
        format!("{}/console/flows?port=5432&verdict=&host=", c.base),
        Some(cookie.clone()),
        None,
    )
    .await;
    assert_eq!(one.status, 200);
    assert!(
        one.body.contains("10.0.0.2:5432") && !one.body.contains("10.0.0.2:443"),
        "{}",
        one.body
    );
    // Exclude with one click: the link is there, and it leaves the value out.
    assert!(
        all.body.contains("not_port=5432"),
        "an exclude link for the port"
    );
    let but = req(
        format!("{}/console/flows?not_port=5432", c.base),
        Some(cookie.clone()),
        None,
    )
    .await;
    assert_eq!(but.status, 200);
    assert!(
        but.body.contains("10.0.0.2:443") && !but.body.contains("10.0.0.2:5432"),
        "{}",
        but.body
    );
    assert!(but.body.contains("not port 5432"), "the exclusion is shown");
    // The chart and the tops count both flows (no policy: unchecked).
    assert!(all.body.contains("id=\"flow-chart\""), "{}", all.body);
    assert!(all.body.contains("2 without policy"), "{}", all.body);
    assert!(
        all.body.contains("href=\"/console/flows?host=web-1\""),
        "{}",
        all.body
    );
    // Paging: one row a page, then the older one, then none.
    let first = req(
        format!("{}/console/flows?limit=1", c.base),
        Some(cookie.clone()),
        None,
    )
    .await;
    let older = first
        .body
        .split("id=\"older\" href=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("an Older link")
        .replace("&amp;", "&");
    let second = req(format!("{}{older}", c.base), Some(cookie.clone()), None).await;
    assert_eq!(second.status, 200, "{}", second.body);
    assert!(
        second.body.contains("10.0.0.2:443") && !second.body.contains("10.0.0.2:5432"),
        "{}",
        second.body
    );
    assert!(second.body.contains("id=\"newest\""));
    let bad_page = req(
        format!("{}/console/flows?before=x", c.base),
        Some(cookie.clone()),
        None,
    )
    .await;
    assert_eq!(bad_page.status, 400);
    assert!(bad_page.body.contains("`before`"), "{}", bad_page.body);
    // A flow's whole record, from the link on its time.
    let id = c
        .store
        .lock()
        .expect("store")
        .flows(&crate::store::FlowFilter::default())
        .expect("flows")[0]
        .id;
    assert!(all.body.contains(&format!("/console/flows/{id}\"")));
    let detail = req(
        format!("{}/console/flows/{id}", c.base),
        Some(cookie.clone()),
        None,
    )
    .await;
    assert_eq!(detail.status, 200);
    assert!(detail.body.contains("Packets out / in"), "{}", detail.body);
    assert!(detail.body.contains("10.0.0.2:5432"), "{}", detail.body);
    let missing = req(
        format!("{}/console/flows/{}", c.base, id + 100),
        Some(cookie.clone()),
        None,
    )
    .await;
    assert_eq!(missing.status, 404);
    let bad = req(
        format!("{}/console/flows?port=http", c.base),
        Some(cookie),
        None,
    )
    .await;
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("`port`"), "{}", bad.body);
}

#[tokio::test]
async fn flows_are_searched_by_policy_group_and_protocol() {
    let c = console().await;
    {
        use cordon_wire::{Direction, FlowBatch, FlowEvent, FlowRecord, Proto, Verdict};
        let mut s = c.store.lock().expect("store");
        let now = crate::ingest::now_ns();
        s.host_connected("agent-db-1", "db-1", "0.1.0", "ebpf", now)
            .expect("host");
        s.set_label("agent-web-1", "role", Some("web"))
            .expect("label");
        s.apply_policy(
            "p",
            "name: p\ngroups:\n  web:\n    label: {role: web}\nrules: []\ncatch_all:\n  - action: deny\n",
            "ops",
            now,
        )
        .expect("v1");
        s.publish_policy(1, "ops", now)
            .expect("store")
            .expect("published");
        let rec = |port: u16, proto: Proto| FlowRecord {
            event: FlowEvent::Start,
            first_seen_ns: now,
            last_seen_ns: now + 1,
            proto,
            direction: Direction::Outbound,
            local: "10.0.0.1:40000".parse().expect("addr"),
            remote: std::net::SocketAddr::from(([10, 0, 0, 2], port)),
            bytes_out: 1,
            bytes_in: 1,
            packets_out: 1,
            packets_in: 1,
            tcp_flags: (0, 0),
            closed: false,
            verdict: Verdict::Forwarded,
            process: None,
            unattributed_reason: None,
        };
        for (agent, port) in [("agent-web-1", 1111), ("agent-db-1", 2222)] {
            let b = FlowBatch {
                seq: 1,
                records: vec![rec(port, Proto::Tcp), rec(port + 1, Proto::Udp)],
                dropped_before: 0,
            };
            s.store_batch(agent, &b).expect("batch");
        }
        c.policy.reload(&**s).expect("policy state");
    }
    let read = sign_in(&c, &c.reader).await.expect("reader");
    let get = |q: &str| {
        req(
            format!("{}/console/flows?{q}", c.base),
            Some(read.clone()),
            None,
        )
    };
    let web = get("group=web").await;
    assert_eq!(web.status, 200, "{}", web.body);
    assert!(
        web.body.contains(":1111") && web.body.contains(":1112"),
        "{}",
        web.body
    );
    assert!(
        !web.body.contains(":2222"),
        "db-1 is not in group web: {}",
        web.body
    );
    let udp = get("proto=udp").await;
    assert!(
        udp.body.contains(":1112") && udp.body.contains(":2223"),
        "{}",
        udp.body
    );
    assert!(
        !udp.body.contains(":1111") && !udp.body.contains(":2222"),
        "{}",
        udp.body
    );
    assert!(
        udp.body.contains("proto=udp"),
        "a one-click protocol filter"
    );
    let both = get("group=web&proto=tcp").await;
    assert!(
        both.body.contains(":1111") && !both.body.contains(":1112"),
        "{}",
        both.body
    );
    let nope = get("group=nope").await;
    assert_eq!(nope.status, 400);
    assert!(nope.body.contains("no group `nope`"), "{}", nope.body);
    let bad = get("proto=sctp").await;
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("`proto`"), "{}", bad.body);
}

#[tokio::test]
async fn a_hypothetical_flow_is_judged_against_any_version() {
    let c = console().await;
    {
        let mut s = c.store.lock().expect("store");
        let now = crate::ingest::now_ns();
        s.set_label("agent-web-1", "role", Some("web"))
            .expect("label");
        s.apply_policy(
            "web",
            "name: web\ngroups:\n  web:\n    label: {role: web}\n  office:\n    cidr: [10.9.0.0/16]\n\
             rules:\n  - name: office-to-web\n    consumer: office\n    provider: web\n    ports: [tcp/443]\n    action: allow\n\
             catch_all:\n  - action: deny\n    severity: HIGH\n",
            "ops",
            now,
        )
        .expect("v1");
    }
    let read = sign_in(&c, &c.reader).await.expect("reader");
    let ask = |q: &str| {
        req(
            format!("{}/console/policy/1/check?{q}", c.base),
            Some(read.clone()),
            None,
        )
    };
    let form = ask("").await;
    assert_eq!(form.status, 200);
    assert!(form.body.contains("id=\"check\"") && !form.body.contains("id=\"verdict\""));
    let allowed = ask("host=web-1&direction=inbound&proto=tcp&remote_ip=10.9.1.2&port=443").await;
    assert_eq!(allowed.status, 200, "{}", allowed.body);
    assert!(allowed.body.contains("allowed"), "{}", allowed.body);
    assert!(allowed.body.contains("office-to-web"), "{}", allowed.body);
    // Another port, another source, the agent id instead of the name: the catch-all.
    for q in [
        "host=web-1&direction=inbound&proto=tcp&remote_ip=10.9.1.2&port=22",
        "host=agent-web-1&direction=inbound&proto=tcp&remote_ip=192.0.2.7&port=443",
    ] {
        let denied = ask(q).await;
        assert!(
            denied.body.contains("denied") && denied.body.contains("catch-all"),
            "{q}: {}",
            denied.body
        );
        assert!(denied.body.contains("HIGH"), "{}", denied.body);
    }
    let unknown = ask("host=nobody&direction=inbound&proto=tcp&remote_ip=10.9.1.2&port=443").await;
    assert!(unknown.body.contains("not enrolled"), "{}", unknown.body);
    let bad = ask("host=web-1&direction=sideways&remote_ip=10.9.1.2&port=443").await;
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("`direction`"), "{}", bad.body);
    let missing = ask("host=web-1&port=443").await;
    assert_eq!(missing.status, 400);
    assert!(missing.body.contains("`remote_ip`"), "{}", missing.body);
    assert_eq!(ask("host=web-1").await.status, 400);
    let none = req(
        format!(
            "{}/console/policy/9/check?host=web-1&remote_ip=10.9.1.2&port=443",
            c.base
        ),
        Some(read.clone()),
        None,
    )
    .await;
    assert_eq!(none.status, 404);
}

#[tokio::test]
async fn the_service_map_has_the_groups_their_members_and_the_rules() {
    let c = console().await;
    {
        let mut s = c.store.lock().expect("store");
        s.set_label("agent-web-1", "role", Some("web"))
            .expect("label");
        s.apply_policy(
            "web",
            "name: web\ngroups:\n  web:\n    label: {role: web}\n  office:\n    cidr: [10.9.0.0/16]\n  db:\n    label: {role: db}\n\
             rules:\n  - name: office-to-web\n    consumer: office\n    provider: web\n    ports: [tcp/443, tcp/8000-8100]\n    action: allow\n  - name: no-db\n    consumer: office\n    provider: db\n    action: deny\n\
             catch_all:\n  - action: deny\n",
            "ops",
            crate::ingest::now_ns(),
        )
        .expect("v1");
    }
    let read = sign_in(&c, &c.reader).await.expect("reader");
    let j = req(
        format!("{}/console/policy/1/map.json", c.base),
        Some(read.clone()),
        None,
    )
    .await;
    assert_eq!(j.status, 200, "{}", j.body);
    let g: serde_json::Value = serde_json::from_str(&j.body).expect("json");
    let node = |id: &str| {
        g["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .find(|n| n["id"] == id)
            .cloned()
    };
    assert_eq!(node("web").expect("web")["members"], 1);
    assert_eq!(node("db").expect("db")["members"], 0);
    assert!(
        node("office").expect("office")["members"].is_null(),
        "addresses only"
    );
    assert!(node("any").is_none(), "no rule names `any`");
    let edges = g["edges"].as_array().expect("edges");
    assert_eq!(edges.len(), 2);
    let web = edges
        .iter()
        .find(|e| e["id"] == "office-to-web")
        .expect("rule");
    assert_eq!(
        (web["source"].as_str(), web["target"].as_str()),
        (Some("office"), Some("web"))
    );
    assert_eq!(web["ports"], "tcp/443, tcp/8000-8100");
    let deny = edges.iter().find(|e| e["id"] == "no-db").expect("rule");
    assert_eq!(
        (deny["action"].as_str(), deny["ports"].as_str()),
        (Some("deny"), Some("any"))
    );
    let page = req(
        format!("{}/console/policy/1/map", c.base),
        Some(read.clone()),
        None,
    )
    .await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("cytoscape.min.js") && page.body.contains("console-map.js"));
    for asset in [
        "cytoscape.min.js",
        "dagre.min.js",
        "cytoscape-dagre.js",
        "console-map.js",
    ] {
        let a = req(
            format!("{}{}", c.base, super::assets::path(asset)),
            None,
            None,
        )
        .await;
        assert_eq!(a.status, 200, "{asset}");
    }
    let none = req(
        format!("{}/console/policy/7/map.json", c.base),
        Some(read),
        None,
    )
    .await;
    assert_eq!(none.status, 404);
    // Without a session: to the sign-in page, not the data.
    let anon = req(format!("{}/console/policy/1/map.json", c.base), None, None).await;
    assert_eq!(anon.status, 303);
}

#[tokio::test]
async fn policy_versions_diff_and_a_draft_is_approved_and_published_from_the_console() {
    let c = console().await;
    let doc = |port: u16| {
        format!(
            "name: web\ngroups:\n  web:\n    label: {{role: web}}\n  clients:\n    label: {{role: client}}\n\
             rules:\n  - name: clients-to-web\n    consumer: clients\n    provider: web\n    ports: [tcp/{port}]\n    action: allow\n\
             catch_all:\n  - action: deny\n    severity: HIGH\n"
        )
    };
    {
        let mut s = c.store.lock().expect("store");
        let now = crate::ingest::now_ns();
        s.apply_policy("web", &doc(8080), "ops", now).expect("v1");
        s.apply_policy("web", &doc(8443), "ops", now).expect("v2");
        s.publish_policy(1, "ops", now)
            .expect("store")
            .expect("published");
    }
    let read = sign_in(&c, &c.reader).await.expect("reader");
    let admin = sign_in(&c, &c.admin).await.expect("admin");
    let list = req(
        format!("{}/console/policy?from=1&to=2", c.base),
        Some(read.clone()),
        None,
    )
    .await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert!(list.body.contains("published") && list.body.contains("draft"));
    assert!(
        list.body.contains("tcp/8080") && list.body.contains("tcp/8443"),
        "the diff: {}",
        list.body
    );
    let bad = req(
        format!("{}/console/policy?from=1&to=9", c.base),
        Some(read.clone()),
        None,
    )
    .await;
    assert_eq!(bad.status, 404);
    // A read-only user sees no publish button and cannot publish.
    let v2 = req(
        format!("{}/console/policy/2", c.base),
        Some(read.clone()),
        None,
    )
    .await;
    assert!(!v2.body.contains("id=\"publish\""));
    let rcsrf = hidden(&v2.body, "csrf");
    let r = req(
        format!("{}/console/policy/2/publish", c.base),
        Some(read),
        Some(vec![("csrf", rcsrf)]),
    )
    .await;
    assert_eq!(r.status, 403);
    let v2 = req(
        format!("{}/console/policy/2", c.base),
        Some(admin.clone()),
        None,
    )
    .await;
    assert!(v2.body.contains("id=\"publish\""), "{}", v2.body);
    let csrf = hidden(&v2.body, "csrf");
    // Approving items: repeated fields, each must exist; without CSRF refused.
    let approve = |form: Vec<(&'static str, String)>| {
        req(
            format!("{}/console/policy/2/approve", c.base),
            Some(admin.clone()),
            Some(form),
        )
    };
    let r = approve(vec![("rule", "clients-to-web".into())]).await;
    assert_eq!(r.status, 403);
    // Rejecting items rewrites learned drafts only; this one was applied by hand.
    let r = req(
        format!("{}/console/policy/2/reject", c.base),
        Some(admin.clone()),
        Some(vec![
            ("csrf", csrf.clone()),
            ("rule", "clients-to-web".into()),
        ]),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("was not learned"), "{}", r.body);
    let r = req(
        format!("{}/console/policy/2/reject", c.base),
        Some(admin.clone()),
        Some(vec![("rule", "clients-to-web".into())]),
    )
    .await;
    assert_eq!(r.status, 403, "no CSRF token");
    let r = approve(vec![("csrf", csrf.clone()), ("rule", "nope".into())]).await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("no rule `nope`"), "{}", r.body);
    let r = approve(vec![
        ("csrf", csrf.clone()),
        ("group", "web".into()),
        ("rule", "clients-to-web".into()),
    ])
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let a = c
        .store
        .lock()
        .expect("store")
        .policy_approvals(2)
        .expect("approvals");
    assert_eq!(a.groups, vec![("web".to_string(), "ops".to_string())]);
    assert_eq!(a.rules.len(), 1);
    let r = req(
        format!("{}/console/policy/2/publish", c.base),
        Some(admin.clone()),
        Some(vec![("csrf", csrf.clone())]),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let published = c
        .store
        .lock()
        .expect("store")
        .policy(None)
        .expect("store")
        .expect("one");
    assert_eq!(
        (published.version, published.published_by.as_deref()),
        (2, Some("ops"))
    );
    // Publishing again is a conflict, shown as a page.
    let r = req(
        format!("{}/console/policy/2/publish", c.base),
        Some(admin),
        Some(vec![("csrf", csrf)]),
    )
    .await;
    assert_eq!(r.status, 409);
}
