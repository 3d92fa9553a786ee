//! The Duo client against the local stand-in: preauth, a push with pushinfo, polling to
//! approval, denial and timeout, retries on 429 and 5xx, and permanent errors for bad keys
//! and a bad clock.
#![cfg(feature = "standin")]

use std::time::{Duration, SystemTime};

use cordon_connectors::{
    duo::{AuthResult, DuoClient, DuoConfig, DuoError, PreauthResult},
    standin::duo::{Behaviour, DEVICE_ID, DuoStandin},
};

const IKEY: &str = "DIWJ8X6AEYOR5OMC6TQ1";
const SKEY: &str = "Zh5eGmUq9zpfQnyUIu5OL9iWoMMv5ZNmk3zLJ4Ep";
const HOST: &str = "api-cordon1.duosecurity.com";

fn standin() -> DuoStandin {
    DuoStandin::start(IKEY, SKEY, HOST)
}

fn config(s: &DuoStandin, version: u8) -> DuoConfig {
    let mut cfg = DuoConfig::new(HOST, IKEY, SKEY);
    cfg.base_url = Some(s.url());
    cfg.signature_version = version;
    cfg.timeout_ms = 5_000;
    cfg.retry_initial_ms = 1;
    cfg.retry_max_ms = 4;
    cfg
}

fn client(s: &DuoStandin, version: u8) -> DuoClient {
    DuoClient::new(config(s, version)).expect("valid config")
}

fn pushinfo() -> Vec<(String, String)> {
    [
        ("host", "web-1"),
        ("process", "/usr/bin/curl -s http://10.0.0.2:8080/?a=1&b=2"),
        ("remote", "10.0.0.2:8080/tcp"),
        ("rule", "shop: web → db only"),
        ("note", "100% ~sure~ + more"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .to_vec()
}

#[test]
fn check_with_both_signature_versions() {
    let s = standin();
    for v in [2, 5] {
        let t = client(&s, v).check().expect("check");
        assert!(t > 1_700_000_000, "server time {t}");
    }
    let versions: Vec<_> = s.requests().iter().map(|r| r.signature_version).collect();
    assert_eq!(versions, [Some(2), Some(5)]);
}

#[test]
fn preauth_results() {
    let s = standin();
    s.set_user("alice", Behaviour::ApproveAfter(0));
    s.set_user("bypass", Behaviour::Preauth(PreauthResult::Allow));
    s.set_user("locked", Behaviour::Preauth(PreauthResult::Deny));
    for v in [2, 5] {
        let c = client(&s, v);
        let p = c.preauth("alice").expect("preauth");
        assert_eq!(p.result, PreauthResult::Auth);
        let d = p.push_device().expect("a push-capable device");
        assert_eq!(d.device, DEVICE_ID);
        assert!(d.can_push());
        assert_eq!(
            c.preauth("bypass").expect("bypass").result,
            PreauthResult::Allow
        );
        assert_eq!(
            c.preauth("locked").expect("locked").result,
            PreauthResult::Deny
        );
        let e = c.preauth("nobody").expect("unknown user");
        assert_eq!(e.result, PreauthResult::Enroll);
        assert!(e.devices.is_empty() && e.enroll_portal_url.is_some());
    }
}

#[test]
fn push_sends_pushinfo_and_is_approved_after_polling() {
    let s = standin();
    s.set_user("alice", Behaviour::ApproveAfter(2));
    for v in [2, 5] {
        let c = client(&s, v);
        let txid = c
            .push("alice", "auto", &pushinfo(), Some("Cordon: isolate web-1?"))
            .expect("push");
        let mut seen = Vec::new();
        for _ in 0..10 {
            let st = c.auth_status(&txid).expect("auth_status");
            seen.push(st.result.clone());
            if st.result != AuthResult::Waiting {
                assert_eq!(st.status, "allow");
                break;
            }
            assert_eq!(st.status, "pushed");
        }
        assert_eq!(
            seen,
            [AuthResult::Waiting, AuthResult::Waiting, AuthResult::Allow]
        );
        let push = s
            .requests()
            .into_iter()
            .rfind(|r| r.path == "/auth/v2/auth")
            .expect("the push was recorded");
        assert_eq!(push.method, "POST");
        assert_eq!(push.signature_version, Some(v));
        assert_eq!(push.param("factor"), Some("push"));
        assert_eq!(push.param("async"), Some("1"));
        assert_eq!(push.param("device"), Some("auto"));
        assert_eq!(push.param("username"), Some("alice"));
        assert_eq!(push.param("type"), Some("Cordon: isolate web-1?"));
        assert_eq!(push.pushinfo.as_deref(), Some(&pushinfo()[..]), "v{v}");
    }
}

#[test]
fn push_to_a_device_id_and_denial() {
    let s = standin();
    s.set_user("bob", Behaviour::Deny);
    let c = client(&s, 5);
    let txid = c.push("bob", DEVICE_ID, &[], None).expect("push");
    let st = c.auth_status(&txid).expect("status");
    assert_eq!(st.result, AuthResult::Deny);
    assert_eq!(st.status, "deny");
    let push = s
        .requests()
        .into_iter()
        .rfind(|r| r.path == "/auth/v2/auth");
    let push = push.expect("recorded");
    assert_eq!(push.pushinfo, None);
    assert_eq!(push.param("device"), Some(DEVICE_ID));
    // An unknown device is Duo's 400 "Invalid request parameters" (device).
    let e = c
        .push("bob", "DNOSUCHDEVICE", &[], None)
        .expect_err("bad device");
    assert!(
        matches!(&e, DuoError::Rejected { status: 400, code: Some(40002), detail: Some(d), .. } if d == "device"),
        "{e}"
    );
    assert!(!e.is_retryable());
}

#[test]
fn a_push_never_answered_is_the_callers_timeout() {
    let s = standin();
    s.set_user("carol", Behaviour::Timeout);
    let c = client(&s, 2);
    let txid = c.push("carol", "auto", &pushinfo(), None).expect("push");
    // The caller polls until its own deadline; the answer stays `waiting`.
    let deadline = std::time::Instant::now() + Duration::from_millis(300);
    let mut polls = 0;
    while std::time::Instant::now() < deadline {
        assert_eq!(
            c.auth_status(&txid).expect("status").result,
            AuthResult::Waiting
        );
        polls += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(polls >= 3, "{polls} polls");
}

#[test]
fn rate_limited_then_success() {
    let s = standin();
    s.set_user("alice", Behaviour::ApproveAfter(0));
    let c = client(&s, 5);
    s.fail_next(429, 2);
    assert_eq!(
        c.preauth("alice").expect("third attempt").result,
        PreauthResult::Auth
    );
    let statuses: Vec<u16> = s.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 429, 200]);
    // A push is retried on 429 too: Duo did not take it.
    s.fail_next(429, 1);
    c.push("alice", "auto", &pushinfo(), None)
        .expect("push after a 429");
    let pushes = s
        .requests()
        .iter()
        .filter(|r| r.path == "/auth/v2/auth")
        .count();
    assert_eq!(pushes, 2);
}

#[test]
fn rate_limited_beyond_the_retries_is_a_retryable_error() {
    let s = standin();
    let mut cfg = config(&s, 2);
    cfg.max_retries = 2;
    let c = DuoClient::new(cfg).expect("config");
    s.fail_next(429, 10);
    let e = c.check().expect_err("rate limited");
    assert!(
        matches!(
            e,
            DuoError::RateLimited {
                attempts: 3,
                code: Some(42901),
                ..
            }
        ),
        "{e}"
    );
    assert!(e.is_retryable());
    assert_eq!(s.requests().len(), 3);
}

#[test]
fn server_errors_are_retried_except_for_a_push() {
    let s = standin();
    s.set_user("alice", Behaviour::ApproveAfter(0));
    let c = client(&s, 2);
    s.fail_next(500, 2);
    c.check().expect("check after two 500s");
    assert_eq!(s.requests().len(), 3);
    // The push may have gone out before the 500: not retried, but retryable by the caller.
    s.fail_next(503, 1);
    let e = c.push("alice", "auto", &[], None).expect_err("503");
    assert!(
        matches!(e, DuoError::Unavailable { status: 503, .. }),
        "{e}"
    );
    assert!(e.is_retryable());
    assert_eq!(s.requests().len(), 4);
}

#[test]
fn connection_refused_is_retryable() {
    let s = standin();
    let cfg = config(&s, 5);
    drop(s);
    let c = DuoClient::new(cfg).expect("config");
    let e = c.check().expect_err("nobody listens");
    assert!(matches!(e, DuoError::Transport(_)), "{e}");
    assert!(e.is_retryable());
}

#[test]
fn a_wrong_secret_key_is_a_permanent_40103() {
    let s = standin();
    for v in [2, 5] {
        let mut cfg = config(&s, v);
        cfg.skey = "not-the-secret-key-not-the-secret-key-xx".to_string();
        let e = DuoClient::new(cfg)
            .expect("config")
            .preauth("alice")
            .expect_err("bad skey");
        assert!(
            matches!(
                e,
                DuoError::Rejected {
                    status: 401,
                    code: Some(40103),
                    ..
                }
            ),
            "{e}"
        );
        assert!(!e.is_retryable());
        assert!(
            e.to_string()
                .contains("Invalid signature in request credentials"),
            "{e}"
        );
    }
    // Permanent: each failed call was sent once.
    assert_eq!(s.requests().len(), 2);
    let mut cfg = config(&s, 2);
    cfg.ikey = "DIXXXXXXXXXXXXXXXXXX".to_string();
    let e = DuoClient::new(cfg)
        .expect("config")
        .check()
        .expect_err("bad ikey");
    assert_eq!(e.duo_code(), Some(40102));
}

#[test]
fn a_date_off_by_more_than_five_minutes_is_refused() {
    let s = standin();
    fn slow() -> SystemTime {
        SystemTime::now() - Duration::from_secs(10 * 60)
    }
    fn fast() -> SystemTime {
        SystemTime::now() + Duration::from_secs(6 * 60)
    }
    fn a_bit_off() -> SystemTime {
        SystemTime::now() - Duration::from_secs(4 * 60)
    }
    for clock in [slow as fn() -> SystemTime, fast] {
        let c = client(&s, 5).with_clock(clock);
        let e = c.check().expect_err("skewed date");
        assert!(
            matches!(
                e,
                DuoError::Rejected {
                    status: 401,
                    code: Some(40105),
                    ..
                }
            ),
            "{e}"
        );
        assert!(!e.is_retryable());
    }
    client(&s, 2)
        .with_clock(a_bit_off)
        .check()
        .expect("four minutes is fine");
}

#[test]
fn secrets_stay_out_of_debug_and_errors() {
    let s = standin();
    let cfg = config(&s, 5);
    let c = DuoClient::new(cfg.clone()).expect("config");
    for text in [
        format!("{cfg:?}"),
        format!("{c:?}"),
        format!("{:?}", c.config()),
    ] {
        assert!(!text.contains(SKEY), "{text}");
        assert!(text.contains("redacted"), "{text}");
    }
    let mut bad = cfg;
    bad.skey = "another-secret-value-0123456789abcdefghij".to_string();
    let e = DuoClient::new(bad)
        .expect("config")
        .check()
        .expect_err("bad key");
    assert!(!format!("{e:?} {e}").contains("another-secret"), "{e:?}");
}

#[test]
fn bad_arguments_are_refused_before_sending() {
    let s = standin();
    let c = client(&s, 5);
    assert!(matches!(c.preauth(""), Err(DuoError::Invalid(_))));
    assert!(matches!(
        c.push("a", "", &[], None),
        Err(DuoError::Invalid(_))
    ));
    assert!(matches!(c.auth_status(""), Err(DuoError::Invalid(_))));
    let huge = vec![("k".to_string(), "x".repeat(20_000))];
    let e = c
        .push("a", "auto", &huge, None)
        .expect_err("pushinfo too long");
    assert!(e.to_string().contains("pushinfo"), "{e}");
    assert!(s.requests().is_empty());
}
