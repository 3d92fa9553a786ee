//! The Kafka output against a real Kafka-protocol broker (tansu on 127.0.0.1). Not
//! privileged; needs `tansu` (scripts/setup.sh installs it).
use std::time::{Duration, Instant};

use cordon_collector::outputs::{
    Envelope, Sink, SinkError,
    kafka::{KafkaConfig, KafkaSink},
};
use cordon_tests::kafka_broker::{ALERTS_TOPIC, Broker};
use serde_json::{Value, json};

fn envelopes(from: usize, n: usize) -> Vec<Envelope> {
    (from..from + n)
        .map(|i| Envelope {
            key: format!("alert-{i:04}"),
            hec: json!({
                "time": 1_760_000_000.25 + i as f64,
                "host": "collector-1",
                "source": "cordon",
                "sourcetype": "cordon:alert",
                "index": "security",
                "event": {"key_id": format!("alert-{i:04}"), "rule": "beacon", "seq": i},
            }),
        })
        .collect()
}

fn sink(broker: &Broker, delivery_timeout_ms: u64) -> KafkaSink {
    KafkaSink::new(&KafkaConfig {
        brokers: vec![broker.bootstrap()],
        delivery_timeout_ms,
        ..KafkaConfig::default()
    })
    .expect("kafka sink")
}

/// Reads `want.len()` messages and compares keys and JSON values, in order.
fn expect_topic(broker: &Broker, want: &[Envelope]) {
    let got: Vec<(String, Value)> = broker
        .consume(ALERTS_TOPIC, want.len(), Duration::from_secs(30))
        .into_iter()
        .map(|(k, v)| (k, serde_json::from_slice(&v).expect("a JSON value")))
        .collect();
    let want: Vec<(String, Value)> = want
        .iter()
        .map(|e| (e.key.clone(), e.hec.clone()))
        .collect();
    assert_eq!(got, want);
}

/// What the dispatcher does: retry a retryable batch until it goes through.
fn deliver_eventually(sink: &mut KafkaSink, batch: &[Envelope], within: Duration) {
    let start = Instant::now();
    loop {
        match sink.deliver(batch) {
            Ok(()) => return,
            Err(SinkError::Retryable(e)) if start.elapsed() < within => {
                eprintln!("retrying: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("delivery did not resume: {e}"),
        }
    }
}

#[test]
fn batches_arrive_in_order_and_a_second_sink_continues() {
    let broker = Broker::start();
    let all = envelopes(0, 45);
    let mut first = sink(&broker, 10_000);
    first.health().expect("healthy");
    first.deliver(&all[..20]).expect("batch 1");
    first.deliver(&all[20..35]).expect("batch 2");
    let c = first.counters().snapshot();
    assert_eq!((c.sent, c.delivered, c.failed, c.retried), (35, 35, 0, 0));
    drop(first);

    // A new producer (new producer id) appends after the first one's messages.
    let mut second = sink(&broker, 10_000);
    second.deliver(&all[35..]).expect("batch 3");
    expect_topic(&broker, &all);
}

#[test]
fn broker_down_is_retryable_and_delivery_resumes_after_a_restart() {
    let mut broker = Broker::start();
    let mut s = sink(&broker, 2_000);
    s.deliver(&envelopes(0, 3)).expect("broker up");
    s.health().expect("healthy");

    broker.stop();
    match s.health() {
        Err(SinkError::Retryable(e)) => eprintln!("health while down: {e}"),
        other => panic!("expected Retryable health, got {other:?}"),
    }
    let batch = envelopes(3, 5);
    match s.deliver(&batch) {
        Err(SinkError::Retryable(e)) => eprintln!("deliver while down: {e}"),
        other => panic!("expected Retryable delivery, got {other:?}"),
    }
    assert_eq!(s.counters().snapshot().retried, 5);

    // tansu's storage here is in memory: the restarted broker is empty and knows
    // neither the topic (recreated by restart) nor the producer id.
    broker.restart();
    deliver_eventually(&mut s, &batch, Duration::from_secs(60));
    s.health().expect("healthy again");
    expect_topic(&broker, &batch);
}
