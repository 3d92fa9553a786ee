//! Unit tests: config, splitting, backoff, status classification. The protocol tests
//! against a HEC stand-in are in `tests/tests/hec.rs` (cordon-tests).
use std::time::Duration;

use serde_json::json;

use super::{
    HecConfig, HecSink,
    backoff::{Backoff, uuid_v4},
    batch,
    protocol::{Verdict, classify},
};
use crate::outputs::Envelope;

fn good() -> HecConfig {
    HecConfig {
        url: "https://splunk.example:8088".into(),
        token: "11111111-2222-3333-4444-555555555555".into(),
        ..Default::default()
    }
}

fn err(cfg: &HecConfig) -> String {
    match cfg.validate() {
        Ok(()) => panic!("expected an error for {cfg:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn config_defaults_from_toml() {
    let cfg: HecConfig =
        toml::from_str("url = \"https://s:8088/\"\ntoken = \"abc\"\n").expect("parses");
    assert!(cfg.gzip);
    assert!(!cfg.use_ack);
    assert!(!cfg.insecure_skip_verify);
    assert_eq!(cfg.ack_timeout_secs, 60);
    assert_eq!(cfg.max_batch_bytes, 1024 * 1024);
    assert_eq!(cfg.max_in_flight, 4);
    cfg.validate().expect("valid");
    assert_eq!(cfg.base_url().expect("url"), "https://s:8088");
}

#[test]
fn config_rejects_unknown_fields() {
    let e = toml::from_str::<HecConfig>("url = \"https://s\"\ntoken = \"t\"\nack = true\n")
        .expect_err("unknown field");
    assert!(e.to_string().contains("unknown field `ack`"), "{e}");
}

#[test]
fn config_errors_name_the_field() {
    let cases: Vec<(HecConfig, &str)> = vec![
        (
            HecConfig {
                url: String::new(),
                ..good()
            },
            "outputs.hec.url:",
        ),
        (
            HecConfig {
                url: "ftp://s".into(),
                ..good()
            },
            "outputs.hec.url:",
        ),
        (
            HecConfig {
                url: "https://s:8088/services/collector/event".into(),
                ..good()
            },
            "outputs.hec.url: give the base URL",
        ),
        (
            HecConfig {
                token: String::new(),
                ..good()
            },
            "outputs.hec.token:",
        ),
        (
            HecConfig {
                token: "a b".into(),
                ..good()
            },
            "outputs.hec.token:",
        ),
        (
            HecConfig {
                index: Some("Main".into()),
                ..good()
            },
            "outputs.hec.index:",
        ),
        (
            HecConfig {
                max_batch_bytes: 10,
                ..good()
            },
            "outputs.hec.max_batch_bytes:",
        ),
        (
            HecConfig {
                max_in_flight: 0,
                ..good()
            },
            "outputs.hec.max_in_flight:",
        ),
        (
            HecConfig {
                ack_timeout_secs: 0,
                ..good()
            },
            "outputs.hec.ack_timeout_secs:",
        ),
        (
            HecConfig {
                timeout_secs: 0,
                ..good()
            },
            "outputs.hec.timeout_secs:",
        ),
        (
            HecConfig {
                backoff_initial_ms: 100,
                backoff_max_ms: 10,
                ..good()
            },
            "outputs.hec.backoff_max_ms:",
        ),
        (
            HecConfig {
                insecure_skip_verify: true,
                ca_file: Some("/etc/ca.pem".into()),
                ..good()
            },
            "outputs.hec.insecure_skip_verify:",
        ),
        (
            HecConfig {
                ca_file: Some("ca.pem".into()),
                ..good()
            },
            "outputs.hec.ca_file:",
        ),
    ];
    for (cfg, want) in cases {
        let e = err(&cfg);
        assert!(e.starts_with(want), "{e:?} should start with {want:?}");
    }
    let bad_token = HecConfig {
        token: "secret token".into(),
        ..good()
    };
    assert!(
        !err(&bad_token).contains("secret"),
        "the token must not be echoed"
    );
}

#[test]
fn token_is_redacted_in_debug() {
    let cfg = good();
    let text = format!("{cfg:?}");
    assert!(!text.contains(&cfg.token), "{text}");
    assert!(text.contains("<redacted>"));
    let sink = HecSink::new(cfg.clone()).expect("sink");
    let text = format!("{sink:?}");
    assert!(!text.contains(&cfg.token), "{text}");
}

#[test]
fn ca_file_must_hold_a_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, "not a pem").expect("write");
    let cfg = HecConfig {
        ca_file: Some(path.clone()),
        ..good()
    };
    let e = HecSink::new(cfg).expect_err("no certificate").to_string();
    assert!(e.starts_with("outputs.hec.ca_file:"), "{e}");

    let ca = rcgen::generate_simple_self_signed(vec!["splunk.lab".into()]).expect("cert");
    std::fs::write(&path, ca.cert.pem()).expect("write");
    HecSink::new(HecConfig {
        ca_file: Some(path),
        ..good()
    })
    .expect("a PEM CA is accepted");
}

fn envelopes(n: usize, pad: usize) -> Vec<Envelope> {
    (0..n)
        .map(|i| Envelope {
            key: format!("k{i}"),
            hec: json!({"time": 1.5, "event": {"n": i, "pad": "x".repeat(pad)}}),
        })
        .collect()
}

#[test]
fn split_respects_max_bytes_and_order() {
    let batch = envelopes(20, 100);
    let one = serde_json::to_vec(&batch[0].hec).expect("json").len() + 1;
    let max = one * 3 + 5;
    let reqs = batch::split(&batch, max, false).expect("split");
    assert_eq!(reqs.len(), 7, "20 events, 3 per request");
    let mut next = 0;
    for r in &reqs {
        assert!(r.raw_len <= max);
        assert_eq!(r.first, next);
        next += r.events;
        let events: Vec<serde_json::Value> = serde_json::Deserializer::from_slice(&r.body)
            .into_iter()
            .collect::<Result<_, _>>()
            .expect("concatenated JSON");
        assert_eq!(
            events,
            batch[r.first..r.first + r.events]
                .iter()
                .map(|e| e.hec.clone())
                .collect::<Vec<_>>()
        );
    }
    assert_eq!(next, 20);
}

#[test]
fn split_sends_an_oversized_event_alone_and_gzips() {
    let mut batch = envelopes(3, 10);
    batch[1].hec["event"]["pad"] = json!("y".repeat(5000));
    let reqs = batch::split(&batch, 2048, true).expect("split");
    assert_eq!(
        reqs.iter().map(|r| r.events).collect::<Vec<_>>(),
        vec![1, 1, 1]
    );
    assert!(reqs[1].raw_len > 2048);
    assert!(
        reqs[1].body.len() < reqs[1].raw_len,
        "gzip shrinks repetitive JSON"
    );
    assert_eq!(&reqs[1].body[..2], &[0x1f, 0x8b], "gzip magic");
}

#[test]
fn backoff_grows_with_jitter_and_caps() {
    let b = Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(1),
    };
    for attempt in 0..10 {
        let exp = Duration::from_millis(100 * (1u64 << attempt)).min(Duration::from_secs(1));
        let d = b.delay(attempt);
        assert!(
            d >= exp / 2 && d <= exp,
            "attempt {attempt}: {d:?} not in [{:?}, {exp:?}]",
            exp / 2
        );
    }
    let samples: std::collections::HashSet<Duration> = (0..20).map(|_| b.delay(3)).collect();
    assert!(samples.len() > 1, "jitter varies the delay");
}

#[test]
fn channel_is_a_uuid_v4() {
    let u = uuid_v4();
    assert_eq!(u.len(), 36);
    assert_eq!(u.as_bytes()[14], b'4');
    assert!(matches!(u.as_bytes()[19], b'8' | b'9' | b'a' | b'b'));
    assert_ne!(u, uuid_v4());
}

#[test]
fn classify_retries_only_429_500_503() {
    for status in [429, 500, 503] {
        assert!(
            matches!(classify(status, "", None), Verdict::Retry { .. }),
            "{status}"
        );
    }
    for status in [400, 401, 403, 404, 413, 502, 504, 301] {
        assert!(
            matches!(classify(status, "", None), Verdict::Fatal(_)),
            "{status}"
        );
    }
    match classify(503, r#"{"text":"Server is busy","code":9}"#, Some("7")) {
        Verdict::Retry { why, after } => {
            assert_eq!(why, "HTTP 503: Server is busy (code 9)");
            assert_eq!(after, Some(Duration::from_secs(7)));
        }
        v => panic!("{v:?}"),
    }
    match classify(
        400,
        r#"{"text":"Invalid data format","code":6,"invalid-event-number":2}"#,
        None,
    ) {
        Verdict::Fatal(why) => {
            assert_eq!(
                why,
                "HTTP 400: Invalid data format (code 6), invalid event number 2"
            )
        }
        v => panic!("{v:?}"),
    }
    match classify(200, r#"{"text":"Success","code":0,"ackId":12}"#, None) {
        Verdict::Ok(r) => assert_eq!(r.ack_id, Some(12)),
        v => panic!("{v:?}"),
    }
}
