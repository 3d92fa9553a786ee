//! The sink against librdkafka's mock cluster (in-process, loopback).
use std::time::{Duration, Instant};

use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    mocking::MockCluster,
    producer::DefaultProducerContext,
    types::{RDKafkaApiKey, RDKafkaRespErr},
};
use serde_json::json;

use super::*;
use crate::outputs::{Envelope, Sink, SinkError};

const TOPIC: &str = "cordon.alerts";

fn envelopes(from: usize, n: usize) -> Vec<Envelope> {
    (from..from + n)
        .map(|i| Envelope {
            key: format!("key-{i}"),
            hec: json!({
                "time": 1_700_000_000.5 + i as f64,
                "host": "collector",
                "source": "cordon",
                "sourcetype": "cordon:alert",
                "event": {"seq": i, "rule": "r1"},
            }),
        })
        .collect()
}

fn cluster() -> MockCluster<'static, DefaultProducerContext> {
    let mock = MockCluster::new(1).expect("mock cluster");
    mock.create_topic(TOPIC, 1, 1).expect("topic");
    mock
}

fn config(bootstrap: String, timeout_ms: u64) -> KafkaConfig {
    KafkaConfig {
        brokers: vec![bootstrap],
        delivery_timeout_ms: timeout_ms,
        ..KafkaConfig::default()
    }
}

/// Reads `n` messages of partition 0 from the beginning: (key, value as JSON).
fn consume(bootstrap: &str, n: usize) -> Vec<(String, serde_json::Value)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "cordon-test")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC, 0, Offset::Beginning)
        .expect("tpl");
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let start = Instant::now();
    while out.len() < n && start.elapsed() < Duration::from_secs(20) {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out.push((
                String::from_utf8(m.key().expect("key").to_vec()).expect("utf-8 key"),
                serde_json::from_slice(m.payload().expect("value")).expect("JSON value"),
            )),
            Some(Err(e)) => panic!("consume: {e}"),
            None => {}
        }
    }
    out
}

fn expect_read(bootstrap: &str, sent: &[Envelope]) {
    let got = consume(bootstrap, sent.len());
    let want: Vec<_> = sent
        .iter()
        .map(|e| (e.key.clone(), e.hec.clone()))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn delivers_a_batch_in_order_with_keys_and_hec_values() {
    let mock = cluster();
    let mut sink = KafkaSink::new(&config(mock.bootstrap_servers(), 10_000)).expect("sink");
    assert_eq!(sink.name(), "kafka");
    sink.deliver(&[]).expect("empty batch");
    let batch = envelopes(0, 50);
    sink.deliver(&batch[..20]).expect("first batch");
    sink.deliver(&batch[20..]).expect("second batch");
    expect_read(&mock.bootstrap_servers(), &batch);
    let c = sink.counters().snapshot();
    assert_eq!((c.sent, c.delivered, c.failed, c.retried), (50, 50, 0, 0));
}

#[test]
fn broker_down_is_retryable_then_recovers() {
    let mock = cluster();
    let mut sink = KafkaSink::new(&config(mock.bootstrap_servers(), 1_500)).expect("sink");
    sink.deliver(&envelopes(0, 3)).expect("broker up");
    sink.health().expect("healthy");

    mock.broker_down(1).expect("broker down");
    let batch = envelopes(3, 5);
    match sink.deliver(&batch) {
        Err(SinkError::Retryable(msg)) => assert!(msg.contains("kafka"), "{msg}"),
        other => panic!("expected Retryable, got {other:?}"),
    }
    assert!(matches!(sink.health(), Err(SinkError::Retryable(_))));
    let c = sink.counters().snapshot();
    assert_eq!(c.retried, 5);
    assert!(c.failed >= 5, "{c:?}");

    mock.broker_up(1).expect("broker up");
    // The dispatcher retries the same batch until it goes through.
    let start = Instant::now();
    while sink.deliver(&batch).is_err() {
        assert!(start.elapsed() < Duration::from_secs(30), "no recovery");
    }
    sink.health().expect("healthy again");
    let mut all = envelopes(0, 3);
    all.extend(batch);
    expect_read(&mock.bootstrap_servers(), &all);
}

#[test]
fn transient_produce_errors_are_retried_inside_librdkafka() {
    let mock = cluster();
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 2],
    );
    let mut sink = KafkaSink::new(&config(mock.bootstrap_servers(), 10_000)).expect("sink");
    let batch = envelopes(0, 4);
    sink.deliver(&batch)
        .expect("delivered despite two transient errors");
    expect_read(&mock.bootstrap_servers(), &batch);
}

#[test]
fn permanent_errors_are_permanent() {
    let mock = cluster();
    let mut sink = KafkaSink::new(&config(mock.bootstrap_servers(), 10_000)).expect("sink");
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED],
    );
    match sink.deliver(&envelopes(0, 1)) {
        Err(SinkError::Permanent(msg)) => assert!(msg.contains("uthoriz"), "{msg}"),
        other => panic!("expected Permanent, got {other:?}"),
    }
    mock.clear_request_errors(RDKafkaApiKey::Produce);

    // Larger than message.max.bytes: refused before it is sent.
    let mut cfg = config(mock.bootstrap_servers(), 10_000);
    cfg.properties
        .insert("message.max.bytes".into(), "10000".into());
    let mut small = KafkaSink::new(&cfg).expect("sink");
    let big = Envelope {
        key: "big".into(),
        hec: json!({"event": "x".repeat(20_000)}),
    };
    assert!(matches!(
        small.deliver(&[big]),
        Err(SinkError::Permanent(_))
    ));
    // And the sink still works for the next batch.
    sink.deliver(&envelopes(1, 2)).expect("next batch");
}

#[test]
fn health_follows_the_topic_metadata() {
    let mock = cluster();
    let mut sink = KafkaSink::new(&config(mock.bootstrap_servers(), 2_000)).expect("sink");
    sink.health().expect("healthy");
    mock.topic_error(
        TOPIC,
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
    )
    .expect("inject");
    // Never permanent: the operator may fix the ACL.
    match sink.health() {
        Err(SinkError::Retryable(msg)) => assert!(msg.contains(TOPIC), "{msg}"),
        other => panic!("expected Retryable, got {other:?}"),
    }
    mock.topic_error(TOPIC, RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR)
        .expect("clear");
    sink.health().expect("healthy again");
}

#[test]
fn bad_properties_are_config_errors_without_secrets() {
    let mut cfg = config("127.0.0.1:9".into(), 1_000);
    cfg.properties.insert("no.such.property".into(), "1".into());
    let err = KafkaSink::new(&cfg).err().expect("rejected").to_string();
    assert!(
        err.starts_with("outputs.kafka.properties.no.such.property:"),
        "{err}"
    );

    let mut cfg = config("127.0.0.1:9".into(), 1_000);
    cfg.properties
        .insert("security.protocol".into(), "carrier-pigeon".into());
    cfg.properties
        .insert("sasl.password".into(), "hunter2".into());
    let err = KafkaSink::new(&cfg).err().expect("rejected").to_string();
    assert!(err.contains("security.protocol"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");

    let mut cfg = config("127.0.0.1:9".into(), 1_000);
    cfg.properties.insert("acks".into(), "0".into());
    assert!(KafkaSink::new(&cfg).is_err());
}
