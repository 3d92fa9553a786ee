//! The SOAR client against the stand-in.
#![cfg(feature = "standin")]
#![allow(clippy::unwrap_used)]

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use cordon_connectors::{
    soar::{ArtifactSpec, ContainerSpec, FlowCef, SoarClient, SoarConfig, SoarError},
    standin::soar::SoarStandin,
};
use serde_json::json;

const TOKEN: &str = "Dn8HVagP2J+BbC3l4RD3h0MKcoJLjH26=";

type Slept = Arc<Mutex<Vec<Duration>>>;

fn client(s: &SoarStandin, token: &str) -> (SoarClient, Slept) {
    let slept: Slept = Arc::default();
    let r = slept.clone();
    let c = SoarClient::new(SoarConfig::new(s.url(), token))
        .unwrap()
        .with_sleep(Arc::new(move |d| r.lock().unwrap().push(d)));
    (c, slept)
}

fn container() -> ContainerSpec {
    ContainerSpec {
        name: "Cordon: web-1 broke policy".into(),
        description: "curl on web-1 connected to 10.0.0.9:5432".into(),
        severity: "high".into(),
        label: None,
        source_data_identifier: "alert:web-1:42".into(),
    }
}

fn artifact(sdi: &str) -> ArtifactSpec {
    let flow = FlowCef {
        source_address: "10.0.0.5".into(),
        source_port: Some(40_000),
        destination_address: "10.0.0.9".into(),
        destination_port: 5432,
        transport_protocol: "TCP".into(),
        process_name: Some("curl".into()),
        process_id: Some(4242),
        process_path: Some("/usr/bin/curl".into()),
        user_name: Some("www-data".into()),
        rule: Some("db-only-from-app".into()),
    };
    ArtifactSpec {
        name: "denied flow".into(),
        label: "event".into(),
        cef: flow.to_cef(),
        source_data_identifier: sdi.into(),
        severity: "high".into(),
        run_automation: true,
    }
}

#[test]
fn container_and_artifacts_have_soars_shape() {
    let s = SoarStandin::start(TOKEN).unwrap();
    let (c, _) = client(&s, TOKEN);
    let id = c.ensure_container(&container()).unwrap();
    let aid = c.add_artifact(id, &artifact("flow:1")).unwrap();

    let cont = &s.containers()[0];
    assert_eq!(cont.id, id);
    assert_eq!(cont.body["name"], "Cordon: web-1 broke policy");
    assert_eq!(cont.body["label"], "events", "the configured default label");
    assert_eq!(cont.body["severity"], "high");
    assert_eq!(cont.body["source_data_identifier"], "alert:web-1:42");
    assert_eq!(
        cont.body["description"],
        "curl on web-1 connected to 10.0.0.9:5432"
    );

    let art = &s.artifacts()[0];
    assert_eq!(art.id, aid);
    assert_eq!(art.body["container_id"], id);
    assert_eq!(art.body["source_data_identifier"], "flow:1");
    assert_eq!(art.body["run_automation"], true);
    let cef = &art.body["cef"];
    assert_eq!(cef["sourceAddress"], "10.0.0.5");
    assert_eq!(cef["destinationAddress"], "10.0.0.9");
    assert_eq!(cef["destinationPort"], 5432);
    assert_eq!(cef["transportProtocol"], "TCP");
    assert_eq!(cef["sourceProcessName"], "curl");
    assert_eq!(cef["fileName"], "curl");
    assert_eq!(cef["filePath"], "/usr/bin/curl");
    assert_eq!(cef["cs1"], "db-only-from-app");
    assert_eq!(cef["cs1Label"], "cordonRule");

    for r in s.requests() {
        assert_eq!(r.header("ph-auth-token"), Some(TOKEN));
    }
}

#[test]
fn duplicates_return_the_existing_ids() {
    let s = SoarStandin::start(TOKEN).unwrap();
    let (c, _) = client(&s, TOKEN);
    let id = c.ensure_container(&container()).unwrap();
    assert_eq!(c.ensure_container(&container()).unwrap(), id);
    assert_eq!(s.containers().len(), 1);
    let mut other = container();
    other.source_data_identifier = "alert:web-2:7".into();
    assert_ne!(c.ensure_container(&other).unwrap(), id);

    let a = c.add_artifact(id, &artifact("flow:1")).unwrap();
    assert_eq!(c.add_artifact(id, &artifact("flow:1")).unwrap(), a);
    assert_ne!(c.add_artifact(id, &artifact("flow:2")).unwrap(), a);
    assert_eq!(s.artifacts().len(), 2);
}

#[test]
fn bad_token_is_a_permanent_error() {
    let s = SoarStandin::start(TOKEN).unwrap();
    let (c, slept) = client(&s, "not-the-token");
    let err = c.ensure_container(&container()).unwrap_err();
    assert!(
        matches!(&err, SoarError::Rejected { status: 401, message, .. } if message == "Invalid token"),
        "{err}"
    );
    assert!(!err.is_retryable());
    assert!(!format!("{err:?}").contains("not-the-token"));
    assert!(slept.lock().unwrap().is_empty());
    assert!(s.containers().is_empty());
}

#[test]
fn the_standin_checks_the_shape() {
    let s = SoarStandin::start(TOKEN).unwrap();
    let (c, _) = client(&s, TOKEN);
    let mut bad = container();
    bad.severity = "urgent".into();
    let err = c.ensure_container(&bad).unwrap_err();
    assert!(
        matches!(err, SoarError::Rejected { status: 400, .. }),
        "{err}"
    );
    let err = c.add_artifact(99, &artifact("flow:1")).unwrap_err();
    assert!(err.to_string().contains("container_id"), "{err}");
    // Raw requests: CEF must be an object, a container needs a name.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let id = c.ensure_container(&container()).unwrap();
    let mut r = agent
        .post(format!("{}/rest/artifact", s.url()))
        .header("ph-auth-token", TOKEN)
        .send_json(json!({"container_id": id, "cef": "sourceAddress=1.2.3.4"}))
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(
        r.body_mut()
            .read_to_string()
            .unwrap()
            .contains("cef must be a JSON object")
    );
    let r = agent
        .post(format!("{}/rest/container", s.url()))
        .header("ph-auth-token", TOKEN)
        .send_json(json!({"label": "events"}))
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[test]
fn unavailable_soar_is_retried() {
    let s = SoarStandin::start(TOKEN).unwrap();
    let (c, slept) = client(&s, TOKEN);
    s.fail_next(503, 2);
    let id = c.ensure_container(&container()).unwrap();
    assert_eq!(id, 1);
    assert_eq!(slept.lock().unwrap().len(), 2);
    s.fail_next(500, 10);
    let err = c.add_artifact(id, &artifact("flow:1")).unwrap_err();
    assert!(err.is_retryable(), "{err}");
}

#[test]
fn health_reads_the_version() {
    let s = SoarStandin::start(TOKEN).unwrap();
    let (c, _) = client(&s, TOKEN);
    assert_eq!(c.health().unwrap(), "6.3.1.178");
    let (bad, _) = client(&s, "nope");
    assert!(bad.health().is_err());
}
