//! The Splunk HEC output against the HEC stand-in, on loopback (no root needed).
use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use cordon_collector::outputs::{
    Envelope, Sink, SinkError,
    hec::{HecConfig, HecSink},
};
use cordon_tests::hec_standin::{Fault, HecStandin};
use serde_json::{Value, json};

const TOKEN: &str = "0b8f6a1e-5c7d-4f3a-9e2b-1a2b3c4d5e6f";
const EVENT: &str = "/services/collector/event";
const ACK: &str = "/services/collector/ack";

fn envelopes(n: usize, pad: usize) -> Vec<Envelope> {
    (0..n)
        .map(|i| Envelope {
            key: format!("alert-{i}"),
            hec: json!({
                "time": 1_700_000_000.25 + i as f64,
                "host": "collector-1",
                "source": "cordon",
                "sourcetype": "cordon:alert",
                "index": "security",
                "event": { "key_id": format!("alert-{i}"), "severity": "high", "pad": "x".repeat(pad) },
            }),
        })
        .collect()
}

/// Fast retries for tests.
fn config(hec: &HecStandin) -> HecConfig {
    HecConfig {
        url: hec.url(),
        token: TOKEN.into(),
        backoff_initial_ms: 10,
        backoff_max_ms: 40,
        ack_poll_ms: 20,
        timeout_secs: 5,
        ..Default::default()
    }
}

fn sink(cfg: HecConfig) -> HecSink {
    HecSink::new(cfg).expect("valid HEC config")
}

/// How many times each alert key was accepted by the stand-in.
fn key_counts(events: &[Value]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for e in events {
        let key = e["event"]["key_id"].as_str().expect("key_id").to_string();
        *m.entry(key).or_insert(0) += 1;
    }
    m
}

fn hec_objects(batch: &[Envelope]) -> Vec<Value> {
    batch.iter().map(|e| e.hec.clone()).collect()
}

fn permanent(r: Result<(), SinkError>) -> String {
    match r {
        Err(SinkError::Permanent(m)) => m,
        other => panic!("expected Permanent, got {other:?}"),
    }
}

fn retryable(r: Result<(), SinkError>) -> String {
    match r {
        Err(SinkError::Retryable(m)) => m,
        other => panic!("expected Retryable, got {other:?}"),
    }
}

#[test]
fn hec_delivers_gzip_batch_in_one_request() {
    let hec = HecStandin::start(TOKEN, false);
    let mut s = sink(config(&hec));
    let batch = envelopes(50, 200);
    s.deliver(&batch).expect("delivered");
    assert_eq!(
        hec.events(),
        hec_objects(&batch),
        "every event, as sent, in order"
    );
    let reqs = hec.event_requests();
    assert_eq!(reqs.len(), 1);
    assert!(reqs[0].gzip, "Content-Encoding: gzip");
    assert!(
        reqs[0].wire_bytes * 4 < reqs[0].raw_bytes,
        "compressed on the wire"
    );
    let c = s.counters().snapshot();
    assert_eq!(
        (c.batches_sent, c.events_sent, c.requests_sent, c.retries),
        (1, 50, 1, 0)
    );
    assert_eq!(c.bytes_sent, reqs[0].wire_bytes as u64);
}

#[test]
fn hec_delivers_plain_json_without_gzip() {
    let hec = HecStandin::start(TOKEN, false);
    let mut s = sink(HecConfig {
        gzip: false,
        ..config(&hec)
    });
    let batch = envelopes(5, 10);
    s.deliver(&batch).expect("delivered");
    assert_eq!(hec.events(), hec_objects(&batch));
    let reqs = hec.event_requests();
    assert_eq!(reqs.len(), 1);
    assert!(!reqs[0].gzip);
    assert_eq!(reqs[0].wire_bytes, reqs[0].raw_bytes);
    s.deliver(&[]).expect("an empty batch is a no-op");
    assert_eq!(hec.event_requests().len(), 1);
}

#[test]
fn hec_splits_batches_by_max_batch_bytes() {
    let hec = HecStandin::start(TOKEN, false);
    let max = 4096;
    let mut s = sink(HecConfig {
        max_batch_bytes: max,
        ..config(&hec)
    });
    let batch = envelopes(40, 300);
    s.deliver(&batch).expect("delivered");
    assert_eq!(hec.events(), hec_objects(&batch), "all events, in order");
    let reqs = hec.event_requests();
    assert!(
        reqs.len() >= 4,
        "40 x ~450 bytes needs >= 4 requests of 4 KiB, got {}",
        reqs.len()
    );
    for r in &reqs {
        assert!(
            r.raw_bytes <= max,
            "request of {} bytes > {max}",
            r.raw_bytes
        );
        assert!(r.events > 0);
    }
    assert_eq!(s.counters().snapshot().requests_sent, reqs.len() as u64);
}

#[test]
fn hec_acks_slow_but_confirmed_with_bounded_in_flight() {
    let hec = HecStandin::start(TOKEN, true);
    hec.inject(Fault::SlowAcks {
        delay: Duration::from_millis(300),
    });
    let mut s = sink(HecConfig {
        use_ack: true,
        max_batch_bytes: 2048,
        max_in_flight: 2,
        ..config(&hec)
    });
    let batch = envelopes(20, 300);
    let t0 = Instant::now();
    s.deliver(&batch).expect("delivered and acked");
    assert!(
        t0.elapsed() >= Duration::from_millis(300),
        "waited for the slow acks"
    );
    assert_eq!(
        hec.events(),
        hec_objects(&batch),
        "each event once, in order"
    );
    let reqs = hec.event_requests();
    assert!(reqs.len() >= 5, "{} requests", reqs.len());
    assert!(
        reqs.iter()
            .all(|r| r.channel.as_deref() == Some(s.channel())),
        "one channel GUID on every request"
    );
    assert!(hec.count(ACK) > 0, "polled the ack endpoint");
    assert!(
        hec.peak_outstanding_acks() <= 2,
        "at most max_in_flight unacked requests, saw {}",
        hec.peak_outstanding_acks()
    );
    let c = s.counters().snapshot();
    assert_eq!(
        (c.events_sent, c.acks_timed_out, c.batches_sent),
        (20, 0, 1)
    );
}

#[test]
fn hec_lost_ack_resends_only_that_request() {
    let hec = HecStandin::start(TOKEN, true);
    hec.inject(Fault::LoseAcks { times: 1 });
    let mut s = sink(HecConfig {
        use_ack: true,
        ack_timeout_secs: 1,
        max_batch_bytes: 2048,
        ..config(&hec)
    });
    let batch = envelopes(12, 300);
    s.deliver(&batch).expect("delivered after one resend");
    let reqs = hec.event_requests();
    let first_request_events = reqs[0].events;
    assert!(reqs.len() >= 3 && first_request_events < batch.len());
    let counts = key_counts(&hec.events());
    for (i, env) in batch.iter().enumerate() {
        let want = if i < first_request_events { 2 } else { 1 };
        assert_eq!(
            counts.get(&env.key),
            Some(&want),
            "{}: no loss; a duplicate only where the ack was lost",
            env.key
        );
    }
    let c = s.counters().snapshot();
    assert_eq!(c.acks_timed_out, 1);
}

#[test]
fn hec_acks_that_never_come_are_retryable_without_loss() {
    let hec = HecStandin::start(TOKEN, true);
    hec.inject(Fault::DropAcks);
    let mut s = sink(HecConfig {
        use_ack: true,
        ack_timeout_secs: 1,
        retries: 1,
        ..config(&hec)
    });
    let batch = envelopes(3, 10);
    let msg = retryable(s.deliver(&batch));
    assert!(msg.contains("not indexed"), "{msg}");
    assert_eq!(
        hec.event_requests().len(),
        2,
        "sent, then resent once (retries = 1)"
    );
    let counts = key_counts(&hec.events());
    assert!(batch.iter().all(|e| counts.get(&e.key) == Some(&2)));
    let c = s.counters().snapshot();
    assert_eq!(
        (c.acks_timed_out, c.batches_sent, c.permanent_failures),
        (2, 0, 0)
    );
}

#[test]
fn hec_busy_503_twice_then_success_delivers_once() {
    let hec = HecStandin::start(TOKEN, false);
    hec.inject(Fault::Busy503 { times: 2 });
    let mut s = sink(config(&hec));
    let batch = envelopes(10, 10);
    s.deliver(&batch).expect("delivered on the third try");
    let statuses: Vec<(u16, i64)> = hec
        .event_requests()
        .iter()
        .map(|r| (r.status, r.code))
        .collect();
    assert_eq!(statuses, vec![(503, 9), (503, 9), (200, 0)]);
    assert_eq!(
        hec.events(),
        hec_objects(&batch),
        "exactly once per envelope"
    );
    assert_eq!(s.counters().snapshot().retries, 2);
}

#[test]
fn hec_500_is_retried() {
    let hec = HecStandin::start(TOKEN, false);
    hec.inject(Fault::ServerError500 { times: 1 });
    let mut s = sink(config(&hec));
    let batch = envelopes(2, 10);
    s.deliver(&batch).expect("delivered on the second try");
    assert_eq!(hec.event_requests().len(), 2);
    assert_eq!(hec.events(), hec_objects(&batch));
}

#[test]
fn hec_429_retry_after_is_honoured() {
    let hec = HecStandin::start(TOKEN, false);
    hec.inject(Fault::TooMany429 {
        times: 1,
        retry_after: Some(1),
    });
    let mut s = sink(config(&hec)); // backoff alone would wait 5-10 ms
    let batch = envelopes(2, 10);
    s.deliver(&batch).expect("delivered after Retry-After");
    let reqs = hec.event_requests();
    assert_eq!(
        reqs.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![429, 200]
    );
    let gap = reqs[1].at - reqs[0].at;
    assert!(
        gap >= Duration::from_millis(950),
        "waited {gap:?}, Retry-After said 1 s"
    );
    assert_eq!(hec.events(), hec_objects(&batch));
}

#[test]
fn hec_retries_spent_is_retryable() {
    let hec = HecStandin::start(TOKEN, false);
    hec.inject(Fault::Busy503 { times: 10 });
    let mut s = sink(HecConfig {
        retries: 2,
        ..config(&hec)
    });
    let msg = retryable(s.deliver(&envelopes(1, 10)));
    assert!(msg.contains("Server is busy (code 9)"), "{msg}");
    assert_eq!(hec.event_requests().len(), 3, "1 try + 2 retries");
    assert!(hec.events().is_empty());
    assert_eq!(s.counters().snapshot().permanent_failures, 0);
}

#[test]
fn hec_connection_refused_is_retryable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut s = sink(HecConfig {
        url: format!("http://127.0.0.1:{port}"),
        token: TOKEN.into(),
        retries: 2,
        backoff_initial_ms: 5,
        backoff_max_ms: 10,
        ..Default::default()
    });
    let msg = retryable(s.deliver(&envelopes(1, 10)));
    assert!(msg.contains("transport"), "{msg}");
    assert_eq!(s.counters().snapshot().retries, 2);
    assert!(matches!(s.health(), Err(SinkError::Retryable(_))));
}

#[test]
fn hec_timeout_resends_at_least_once() {
    let hec = HecStandin::start(TOKEN, false);
    hec.inject(Fault::Stall {
        times: 1,
        delay: Duration::from_millis(2500),
    });
    let mut s = sink(HecConfig {
        timeout_secs: 1,
        ..config(&hec)
    });
    let batch = envelopes(4, 10);
    s.deliver(&batch).expect("delivered after a timeout");
    let counts = key_counts(&hec.events());
    assert!(
        batch.iter().all(|e| counts.get(&e.key) == Some(&2)),
        "accepted, reply lost, resent: at-least-once, {counts:?}"
    );
    assert_eq!(s.counters().snapshot().retries, 1);
}

#[test]
fn hec_400_bad_data_is_permanent_without_retry() {
    let hec = HecStandin::start(TOKEN, false);
    let mut s = sink(config(&hec));
    let mut batch = envelopes(3, 10);
    batch[1].hec["event"] = json!("   ");
    let msg = permanent(s.deliver(&batch));
    assert!(
        msg.contains("HTTP 400: Event field cannot be blank (code 13)"),
        "{msg}"
    );
    assert!(msg.contains("invalid event number 1"), "{msg}");
    assert_eq!(hec.event_requests().len(), 1, "no retry");
    assert_eq!(s.counters().snapshot().permanent_failures, 1);

    hec.inject(Fault::Status {
        times: 1,
        status: 400,
        text: "Invalid data format".into(),
        code: 6,
    });
    let msg = permanent(s.deliver(&envelopes(1, 10)));
    assert!(msg.contains("Invalid data format (code 6)"), "{msg}");
    assert_eq!(hec.event_requests().len(), 2, "no retry");
}

#[test]
fn hec_413_is_permanent() {
    let hec = HecStandin::start(TOKEN, false);
    hec.inject(Fault::Status {
        times: 1,
        status: 413,
        text: "Content too large".into(),
        code: 27,
    });
    let mut s = sink(config(&hec));
    let msg = permanent(s.deliver(&envelopes(1, 10)));
    assert!(msg.contains("HTTP 413"), "{msg}");
    assert_eq!(hec.event_requests().len(), 1);
}

#[test]
fn hec_bad_token_is_permanent_and_never_echoed() {
    let hec = HecStandin::start(TOKEN, false);
    let wrong = "ffffffff-0000-4000-8000-000000000000";
    let mut s = sink(HecConfig {
        token: wrong.into(),
        ..config(&hec)
    });
    let msg = permanent(s.deliver(&envelopes(2, 10)));
    assert!(msg.contains("HTTP 403: Invalid token (code 4)"), "{msg}");
    assert!(
        !msg.contains(wrong),
        "the token must not appear in errors: {msg}"
    );
    assert!(!format!("{s:?}").contains(wrong));
    assert_eq!(hec.event_requests().len(), 1, "no retry");
    assert!(hec.events().is_empty());
    let msg = permanent(s.health());
    assert!(
        msg.contains("Invalid token (code 4)") && !msg.contains(wrong),
        "{msg}"
    );

    hec.inject(Fault::Status {
        times: 1,
        status: 403,
        text: "Token disabled".into(),
        code: 1,
    });
    let mut s = sink(config(&hec));
    let msg = permanent(s.deliver(&envelopes(1, 10)));
    assert!(msg.contains("Token disabled (code 1)"), "{msg}");
}

#[test]
fn hec_health_ok_busy_and_acks() {
    let hec = HecStandin::start(TOKEN, true);
    let mut s = sink(HecConfig {
        use_ack: true,
        ..config(&hec)
    });
    s.health().expect("healthy, token good");
    hec.inject(Fault::Busy503 { times: 1 });
    let msg = retryable(s.health());
    assert!(msg.contains("Server is busy (code 9)"), "{msg}");
    s.health().expect("healthy again");
    assert!(hec.events().is_empty(), "the token probe indexes nothing");
}

// The stand-in itself answers as HEC does (raw requests).

fn raw(hec: &HecStandin, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut req = agent.post(format!("{}{path}", hec.url()));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut resp = req.send(body).expect("stand-in answers");
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_to_string().expect("body");
    (status, serde_json::from_str(&body).expect("JSON reply"))
}

#[test]
fn hec_standin_checks_what_hec_checks() {
    let hec = HecStandin::start(TOKEN, true);
    let auth = format!("Splunk {TOKEN}");
    let chan = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
    let ok = [
        ("Authorization", auth.as_str()),
        ("X-Splunk-Request-Channel", chan),
    ];
    let ev = br#"{"event":"hello","time":1700000000.5}"#;
    let code = |r: (u16, Value)| (r.0, r.1["code"].as_i64().unwrap_or(-1));

    assert_eq!(code(raw(&hec, EVENT, &[], ev)), (401, 2));
    assert_eq!(
        code(raw(&hec, EVENT, &[("Authorization", TOKEN)], ev)),
        (401, 3)
    );
    assert_eq!(
        code(raw(&hec, EVENT, &[("Authorization", "Splunk nope")], ev)),
        (403, 4)
    );
    assert_eq!(
        code(raw(&hec, EVENT, &[("Authorization", auth.as_str())], ev)),
        (400, 10)
    );
    assert_eq!(
        code(raw(
            &hec,
            EVENT,
            &[
                ("Authorization", auth.as_str()),
                ("X-Splunk-Request-Channel", "x")
            ],
            ev
        )),
        (400, 11)
    );
    assert_eq!(code(raw(&hec, EVENT, &ok, b"")), (400, 5));
    assert_eq!(code(raw(&hec, EVENT, &ok, br#"{"time":1}"#)), (400, 12));
    assert_eq!(code(raw(&hec, EVENT, &ok, br#"{"event":""}"#)), (400, 13));
    // Indexed fields must be flat.
    assert_eq!(
        code(raw(
            &hec,
            EVENT,
            &ok,
            br#"{"event":"a","fields":{"x":{"y":1}}}"#
        )),
        (400, 15)
    );

    assert_eq!(
        code(raw(&hec, EVENT, &ok, br#"{"event":"a","time":"noon"}"#)),
        (400, 6)
    );
    assert_eq!(
        code(raw(&hec, EVENT, &ok, br#"{"event":"a"} {oops"#)),
        (400, 6)
    );
    assert!(hec.events().is_empty(), "rejected requests index nothing");

    // Two concatenated events, gzip: accepted with ackIds 0 then 1 on this channel.
    let two = br#"{"event":{"a":1}}{"event":"b","time":"1700000000"}"#;
    let gz = {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(two).expect("gzip");
        e.finish().expect("gzip")
    };
    let gz_headers = [ok[0], ok[1], ("Content-Encoding", "gzip")];
    let (status, reply) = raw(&hec, EVENT, &gz_headers, &gz);
    assert_eq!(
        (status, reply.clone()),
        (200, json!({"text":"Success","code":0,"ackId":0}))
    );
    let (_, reply) = raw(&hec, EVENT, &ok, ev);
    assert_eq!(reply["ackId"], 1);
    assert_eq!(hec.events().len(), 3);

    let (status, reply) = raw(&hec, ACK, &ok, br#"{"acks":[0,1,7]}"#);
    assert_eq!(
        (status, reply),
        (200, json!({"acks":{"0":true,"1":true,"7":false}}))
    );
    let (_, reply) = raw(&hec, ACK, &ok, br#"{"acks":[0]}"#);
    assert_eq!(
        reply,
        json!({"acks":{"0":false}}),
        "an ack reported true is forgotten"
    );
    assert_eq!(
        code(raw(&hec, ACK, &[ok[0]], br#"{"acks":[0]}"#)),
        (400, 10)
    );

    let no_ack = HecStandin::start(TOKEN, false);
    assert_eq!(code(raw(&no_ack, ACK, &ok, br#"{"acks":[0]}"#)), (400, 14));
    let (status, reply) = raw(&no_ack, EVENT, &[ok[0]], ev);
    assert_eq!(
        (status, reply),
        (200, json!({"text":"Success","code":0})),
        "no channel needed without acks"
    );
}
