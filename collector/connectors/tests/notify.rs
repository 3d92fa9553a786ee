//! Webhook and e-mail against their stand-ins.
#![cfg(feature = "standin")]
#![allow(clippy::unwrap_used)]

use std::{
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use cordon_connectors::{
    notify::{Mailer, NotifyError, SmtpConfig, SmtpTls, Webhook, WebhookConfig, signature},
    standin::{smtp::SmtpSink, webhook::WebhookReceiver},
};
use serde_json::json;

const SECRET: &str = "whsec-0123456789abcdef";

type Slept = Arc<Mutex<Vec<Duration>>>;

fn recorder() -> (Slept, cordon_connectors::notify::Sleep) {
    let slept: Slept = Arc::default();
    let s = slept.clone();
    (slept, Arc::new(move |d| s.lock().unwrap().push(d)))
}

fn webhook(url: &str, secret: &str) -> (Webhook, Slept) {
    let (slept, sleep) = recorder();
    let hook = Webhook::new(WebhookConfig::new(url, secret))
        .unwrap()
        .with_sleep(sleep);
    (hook, slept)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn webhook_is_signed_and_verified() {
    let rx = WebhookReceiver::start(SECRET).unwrap();
    let (hook, _) = webhook(&rx.url(), SECRET);
    let event = json!({"type": "isolation", "host": "web-1", "run": 7});
    hook.send(&event).unwrap();
    let got = rx.events();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].event, event);
    assert!(now().abs_diff(got[0].timestamp) < 60);

    // The exact headers: the signature covers "<timestamp>.<body>".
    let req = &rx.requests()[0];
    let ts = req.header("x-cordon-timestamp").unwrap();
    let expected = signature(SECRET, ts, &req.body);
    assert_eq!(req.header("x-cordon-signature"), Some(expected.as_str()));
    assert!(expected.starts_with("sha256=") && expected.len() == 7 + 64);
    assert_eq!(req.header("content-type"), Some("application/json"));
}

#[test]
fn tampered_or_stale_requests_are_rejected() {
    let rx = WebhookReceiver::start(SECRET).unwrap();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let post = |ts: &str, sig: &str, body: &str| {
        agent
            .post(rx.url())
            .header("Content-Type", "application/json")
            .header("X-Cordon-Timestamp", ts)
            .header("X-Cordon-Signature", sig)
            .send(body)
            .unwrap()
            .status()
            .as_u16()
    };
    let ts = now().to_string();
    let body = r#"{"action":"isolate","host":"web-1"}"#;
    let sig = signature(SECRET, &ts, body.as_bytes());
    let tampered = r#"{"action":"release","host":"web-1"}"#;
    assert_eq!(post(&ts, &sig, tampered), 401);
    assert_eq!(
        post(
            &ts,
            &signature("wrong-secret-0000", &ts, body.as_bytes()),
            body
        ),
        401
    );
    let old = (now() - 600).to_string();
    assert_eq!(
        post(&old, &signature(SECRET, &old, body.as_bytes()), body),
        401
    );
    assert!(rx.events().is_empty());
    let why = rx.rejected();
    assert_eq!(why.len(), 3);
    assert_eq!(why[0], "bad signature");
    assert!(why[2].contains("more than 5 minutes"), "{why:?}");
    // The untouched request passes.
    assert_eq!(post(&ts, &sig, body), 204);
    assert_eq!(rx.events().len(), 1);
}

#[test]
fn webhook_retries_server_errors_but_not_refusals() {
    let rx = WebhookReceiver::start(SECRET).unwrap();
    let (hook, slept) = webhook(&rx.url(), SECRET);
    rx.fail_next(503, 2);
    hook.send(&json!({"n": 1})).unwrap();
    assert_eq!(rx.events().len(), 1);
    assert_eq!(slept.lock().unwrap().len(), 2);

    rx.retry_after(Some(4));
    rx.fail_next(429, 1);
    hook.send(&json!({"n": 2})).unwrap();
    assert_eq!(slept.lock().unwrap()[2], Duration::from_secs(4));

    let (bad, bad_slept) = webhook(&rx.url(), "another-secret-123");
    let err = bad.send(&json!({"n": 3})).unwrap_err();
    assert!(matches!(err, NotifyError::Rejected { .. }), "{err}");
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("401"), "{err}");
    assert!(bad_slept.lock().unwrap().is_empty());
    assert_eq!(rx.events().len(), 2);
}

fn mailer(sink: &SmtpSink, to: &[&str]) -> (Mailer, Slept) {
    let (slept, sleep) = recorder();
    let cfg = SmtpConfig::new(
        "127.0.0.1",
        sink.addr().port(),
        SmtpTls::None,
        "Cordon <cordon@example.net>",
        to,
    );
    (Mailer::new(cfg).unwrap().with_sleep(sleep), slept)
}

#[test]
fn email_reaches_the_sink() {
    let sink = SmtpSink::start().unwrap();
    let (m, _) = mailer(&sink, &["soc@example.net", "Alice <alice@example.net>"]);
    m.send(
        "Cordon: web-1 isolated",
        "web-1 was isolated at 12:00 after approval.\nRun 7.",
    )
    .unwrap();
    let msgs = sink.messages();
    assert_eq!(msgs.len(), 1);
    let msg = &msgs[0];
    assert_eq!(msg.from, "cordon@example.net");
    assert_eq!(msg.to, vec!["soc@example.net", "alice@example.net"]);
    assert!(
        msg.data.contains("Subject: Cordon: web-1 isolated\r\n"),
        "{}",
        msg.data
    );
    assert!(
        msg.data.contains("From: Cordon <cordon@example.net>"),
        "{}",
        msg.data
    );
    assert!(
        msg.data
            .contains("web-1 was isolated at 12:00 after approval."),
        "{}",
        msg.data
    );
    assert!(
        msg.data.contains("Content-Type: text/plain"),
        "{}",
        msg.data
    );
}

#[test]
fn email_retries_transient_failures_only() {
    let sink = SmtpSink::start().unwrap();
    let (m, slept) = mailer(&sink, &["soc@example.net"]);
    sink.fail_next(451, 1);
    m.send("after a 451", "body").unwrap();
    assert_eq!(sink.messages().len(), 1);
    assert_eq!(slept.lock().unwrap().len(), 1);

    sink.fail_next(550, 1);
    let err = m.send("refused", "body").unwrap_err();
    assert!(matches!(err, NotifyError::Rejected { .. }), "{err}");
    assert_eq!(sink.messages().len(), 1);
    assert_eq!(slept.lock().unwrap().len(), 1, "no retry after a 5xx");
}

#[test]
fn email_to_a_closed_port_is_retryable() {
    let port = {
        let sink = SmtpSink::start().unwrap();
        sink.addr().port()
    }; // stopped: nothing listens there any more
    let (slept, sleep) = recorder();
    let cfg = SmtpConfig::new(
        "127.0.0.1",
        port,
        SmtpTls::None,
        "a@example.net",
        &["b@example.net"],
    );
    let err = Mailer::new(cfg)
        .unwrap()
        .with_sleep(sleep)
        .send("s", "b")
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert_eq!(slept.lock().unwrap().len(), 2);
}

#[test]
fn email_authenticates_when_configured() {
    let sink = SmtpSink::start().unwrap();
    sink.require_auth("mailer", "mail-pass");
    let (slept, sleep) = recorder();
    let mut cfg = SmtpConfig::new(
        "127.0.0.1",
        sink.addr().port(),
        SmtpTls::None,
        "cordon@example.net",
        &["soc@example.net"],
    );
    cfg.username = Some("mailer".into());
    cfg.password = Some("mail-pass".into());
    Mailer::new(cfg.clone())
        .unwrap()
        .with_sleep(sleep)
        .send("authed", "b")
        .unwrap();
    assert_eq!(sink.messages().len(), 1);
    assert!(slept.lock().unwrap().is_empty());

    cfg.password = Some("wrong-pass".into());
    let err = Mailer::new(cfg).unwrap().send("nope", "b").unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert_eq!(sink.messages().len(), 1);
}
