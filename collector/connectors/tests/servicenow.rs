//! The ServiceNow client against the stand-in.
#![cfg(feature = "standin")]
#![allow(clippy::unwrap_used)]

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use cordon_connectors::{
    servicenow::{IncidentFields, SnowAuth, SnowClient, SnowConfig, SnowError},
    standin::servicenow::ServiceNowStandin,
};

const USER: &str = "cordon.integration";
const PASS: &str = "p@ss:word with spaces";

type Slept = Arc<Mutex<Vec<Duration>>>;

fn basic() -> SnowAuth {
    SnowAuth::Basic {
        username: USER.into(),
        password: PASS.into(),
    }
}

fn client(sn: &ServiceNowStandin, auth: SnowAuth) -> (SnowClient, Slept) {
    let mut cfg = SnowConfig::new(sn.url(), auth);
    cfg.assignment_group = Some("Security Operations".into());
    cfg.caller_id = Some("cordon".into());
    cfg.timeout_ms = 5_000;
    let slept: Slept = Arc::default();
    let s = slept.clone();
    let c = SnowClient::new(cfg)
        .unwrap()
        .with_sleep(Arc::new(move |d| s.lock().unwrap().push(d)));
    (c, slept)
}

fn fields() -> IncidentFields {
    IncidentFields {
        short_description: "Cordon: web-1 broke policy (curl -> 10.0.0.9:5432)".into(),
        description: "Flow denied by rule db-only-from-app".into(),
        urgency: 2,
        impact: 1,
        cmdb_ci: Some("web-1".into()),
    }
}

#[test]
fn creates_once_then_finds_the_same_incident() {
    let sn = ServiceNowStandin::start(USER, PASS).unwrap();
    let (c, _) = client(&sn, basic());
    // '^' is ServiceNow's condition separator, '&' and '=' are URL syntax.
    let key = "alert:web-1^x&y=z";
    let first = c.ensure_incident(key, &fields()).unwrap();
    assert!(first.created);
    assert!(first.number.starts_with("INC"));
    let second = c.ensure_incident(key, &fields()).unwrap();
    assert!(!second.created);
    assert_eq!(second.sys_id, first.sys_id);
    assert_eq!(sn.incidents().len(), 1);

    let inc = &sn.incidents()[0];
    let f = |k: &str| inc.fields.get(k).map(String::as_str);
    assert_eq!(f("correlation_id"), Some(key));
    assert_eq!(
        f("short_description"),
        Some(fields().short_description.as_str())
    );
    assert_eq!(
        f("description"),
        Some("Flow denied by rule db-only-from-app")
    );
    assert_eq!(f("urgency"), Some("2"));
    assert_eq!(f("impact"), Some("1"));
    assert_eq!(f("assignment_group"), Some("Security Operations"));
    assert_eq!(f("cmdb_ci"), Some("web-1"));
    assert_eq!(f("caller_id"), Some("cordon"));

    // The query comes first, properly encoded, and the create sends JSON.
    let reqs = sn.requests();
    assert_eq!(reqs[0].method, "GET");
    assert_eq!(reqs[0].path, "/api/now/table/incident");
    assert_eq!(
        reqs[0].query("sysparm_query"),
        Some("correlation_id=alert:web-1^^x&y=z")
    );
    assert_eq!(reqs[0].query("sysparm_limit"), Some("1"));
    assert_eq!(reqs[0].header("accept"), Some("application/json"));
    assert_eq!(reqs[1].method, "POST");
    assert_eq!(reqs[1].header("content-type"), Some("application/json"));
    assert_eq!(reqs[2].method, "GET");
    assert_eq!(reqs.len(), 3, "the second ensure only queries");
    // Another key is another incident.
    assert!(c.ensure_incident("alert:web-1", &fields()).unwrap().created);
    assert_eq!(sn.incidents().len(), 2);
}

#[test]
fn a_create_whose_answer_was_lost_is_not_repeated() {
    let sn = ServiceNowStandin::start(USER, PASS).unwrap();
    let (c, slept) = client(&sn, basic());
    // The incident is written, then the answer is a 500: the retry must find it.
    sn.fail_next_after_commit(500, 1);
    let inc = c.ensure_incident("alert:lost", &fields()).unwrap();
    assert_eq!(sn.incidents().len(), 1);
    assert_eq!(inc.sys_id, sn.incidents()[0].sys_id);
    assert!(!inc.created, "found by the query before the second create");
    assert_eq!(slept.lock().unwrap().len(), 1);
    let posts = sn.requests().iter().filter(|r| r.method == "POST").count();
    assert_eq!(posts, 1);

    // A 500 before anything was written: retried, created once.
    sn.fail_next(500, 1);
    let inc = c.ensure_incident("alert:refused", &fields()).unwrap();
    assert!(inc.created);
    assert_eq!(sn.incidents().len(), 2);
}

#[test]
fn work_notes_and_resolution() {
    let sn = ServiceNowStandin::start(USER, PASS).unwrap();
    let (c, _) = client(&sn, basic());
    let inc = c.ensure_incident("alert:notes", &fields()).unwrap();
    c.add_work_note(&inc.sys_id, "Duo push approved by alice")
        .unwrap();
    c.add_work_note(&inc.sys_id, "web-1 isolated").unwrap();
    assert_eq!(
        sn.incidents()[0].work_notes,
        vec!["Duo push approved by alice", "web-1 isolated"]
    );
    let patch = sn
        .requests()
        .into_iter()
        .find(|r| r.method == "PATCH")
        .unwrap();
    assert_eq!(
        patch.path,
        format!("/api/now/table/incident/{}", inc.sys_id)
    );
    assert_eq!(
        patch.json().unwrap()["work_notes"],
        "Duo push approved by alice"
    );

    c.resolve(&inc.sys_id, None, "Released after review")
        .unwrap();
    let rec = c.get(&inc.sys_id).unwrap();
    assert_eq!(rec.state, "6");
    assert_eq!(rec.close_code, "Solution provided");
    assert_eq!(rec.close_notes, "Released after review");
    assert_eq!(rec.correlation_id, "alert:notes");
    assert_eq!(rec.number, inc.number);

    c.resolve(&inc.sys_id, Some("Solved (Permanently)"), "again")
        .unwrap();
    assert_eq!(
        sn.incidents()[0].fields["close_code"],
        "Solved (Permanently)"
    );
    // The client refuses what ServiceNow's data policy would.
    assert!(matches!(
        c.resolve(&inc.sys_id, None, " "),
        Err(SnowError::Config(_))
    ));
}

#[test]
fn retry_after_is_honoured_and_capped() {
    let sn = ServiceNowStandin::start(USER, PASS).unwrap();
    let (c, slept) = client(&sn, basic());
    let inc = c.ensure_incident("alert:429", &fields()).unwrap();
    sn.retry_after(Some(7));
    sn.fail_next(429, 2);
    c.add_work_note(&inc.sys_id, "after a 429").unwrap();
    assert_eq!(*slept.lock().unwrap(), vec![Duration::from_secs(7); 2]);
    assert_eq!(sn.incidents()[0].work_notes, vec!["after a 429"]);

    // A Retry-After beyond the cap waits the cap.
    let mut cfg = SnowConfig::new(sn.url(), basic());
    cfg.retry_after_max_secs = 3;
    let capped: Slept = Arc::default();
    let s = capped.clone();
    let c2 = SnowClient::new(cfg)
        .unwrap()
        .with_sleep(Arc::new(move |d| s.lock().unwrap().push(d)));
    sn.retry_after(Some(9_999));
    sn.fail_next(429, 1);
    c2.get(&inc.sys_id).unwrap();
    assert_eq!(*capped.lock().unwrap(), vec![Duration::from_secs(3)]);
}

#[test]
fn server_errors_are_retried_then_reported_as_retryable() {
    let sn = ServiceNowStandin::start(USER, PASS).unwrap();
    let (c, slept) = client(&sn, basic());
    let inc = c.ensure_incident("alert:5xx", &fields()).unwrap();
    sn.fail_next(503, 10);
    let err = c.add_work_note(&inc.sys_id, "x").unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(
        matches!(err, SnowError::Unavailable { attempts: 4, .. }),
        "{err}"
    );
    assert_eq!(slept.lock().unwrap().len(), 3, "max_retries = 3");
}

#[test]
fn bad_credentials_are_a_permanent_error_with_servicenows_message() {
    let sn = ServiceNowStandin::start(USER, PASS).unwrap();
    let auth = SnowAuth::Basic {
        username: USER.into(),
        password: "wrong".into(),
    };
    let (c, slept) = client(&sn, auth);
    let err = c.ensure_incident("alert:auth", &fields()).unwrap_err();
    assert!(!err.is_retryable());
    match &err {
        SnowError::Rejected {
            status,
            message,
            detail,
            ..
        } => {
            assert_eq!(*status, 401);
            assert_eq!(message, "User Not Authenticated");
            assert_eq!(detail, "Required to provide Auth information");
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("User Not Authenticated"), "{err}");
    assert!(!err.to_string().contains("wrong"), "no secret in errors");
    assert!(slept.lock().unwrap().is_empty(), "no retry");
    assert!(sn.incidents().is_empty());
}

#[test]
fn unknown_sys_id_is_not_found() {
    let sn = ServiceNowStandin::start(USER, PASS).unwrap();
    let (c, _) = client(&sn, basic());
    let err = c.get("0123456789abcdef0123456789abcdef").unwrap_err();
    assert!(
        matches!(&err, SnowError::Rejected { status: 404, message, .. } if message == "No Record found"),
        "{err}"
    );
    // Not a sys_id at all: refused before any request.
    let n = sn.requests().len();
    assert!(matches!(c.get("../../x"), Err(SnowError::Config(_))));
    assert_eq!(sn.requests().len(), n);
}

fn oauth(secret: &str) -> SnowAuth {
    SnowAuth::OAuth {
        client_id: "cordon-app".into(),
        client_secret: secret.into(),
        username: USER.into(),
        password: PASS.into(),
    }
}

#[test]
fn oauth_token_is_fetched_cached_and_renewed_after_401() {
    let sn = ServiceNowStandin::start(USER, PASS).unwrap();
    sn.enable_oauth("cordon-app", "app-secret");
    let (c, _) = client(&sn, oauth("app-secret"));
    let inc = c.ensure_incident("alert:oauth", &fields()).unwrap();
    c.add_work_note(&inc.sys_id, "one").unwrap();
    let reqs = sn.requests();
    let token_reqs: Vec<_> = reqs
        .iter()
        .filter(|r| r.path == "/oauth_token.do")
        .collect();
    assert_eq!(token_reqs.len(), 1, "the token is cached");
    let form = String::from_utf8(token_reqs[0].body.clone()).unwrap();
    assert!(form.contains("grant_type=password"), "{form}");
    let table = reqs.iter().find(|r| r.path.starts_with("/api/")).unwrap();
    assert!(
        table
            .header("authorization")
            .unwrap()
            .starts_with("Bearer ")
    );

    // The server forgets the token: one 401, a new token, the call succeeds.
    sn.revoke_tokens();
    c.add_work_note(&inc.sys_id, "two").unwrap();
    let tokens = sn
        .requests()
        .iter()
        .filter(|r| r.path == "/oauth_token.do")
        .count();
    assert_eq!(tokens, 2);
    assert_eq!(sn.incidents()[0].work_notes, vec!["one", "two"]);

    // An expired token is renewed before use.
    sn.set_token_lifetime(10); // below the client's 30 s margin: expired at once
    sn.revoke_tokens();
    c.add_work_note(&inc.sys_id, "three").unwrap();
    c.add_work_note(&inc.sys_id, "four").unwrap();
    let tokens = sn
        .requests()
        .iter()
        .filter(|r| r.path == "/oauth_token.do")
        .count();
    // "three": a 401 on the revoked token, a new one; "four": that one is already
    // past its (margin-adjusted) expiry, so a new one again.
    assert_eq!(tokens, 4);
}

#[test]
fn oauth_with_a_bad_client_secret_is_refused() {
    let sn = ServiceNowStandin::start(USER, PASS).unwrap();
    sn.enable_oauth("cordon-app", "app-secret");
    let (c, _) = client(&sn, oauth("not-the-secret"));
    let err = c.ensure_incident("alert:oauth-bad", &fields()).unwrap_err();
    assert!(
        matches!(&err, SnowError::Rejected { status: 401, message, .. } if message == "access_denied"),
        "{err}"
    );
    assert!(!err.is_retryable());
    assert!(!format!("{err:?}").contains("not-the-secret"));
}

#[test]
fn bad_fields_are_refused_before_sending() {
    let sn = ServiceNowStandin::start(USER, PASS).unwrap();
    let (c, _) = client(&sn, basic());
    let mut f = fields();
    f.urgency = 5;
    let err = c.ensure_incident("alert:x", &f).unwrap_err();
    assert!(err.to_string().contains("urgency"), "{err}");
    let mut f = fields();
    f.short_description = String::new();
    assert!(c.ensure_incident("alert:x", &f).is_err());
    assert!(c.ensure_incident("", &fields()).is_err());
    assert!(sn.requests().is_empty());
}
