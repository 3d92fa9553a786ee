//! The Duo stand-in checks what Duo checks (raw requests, signed by hand), and the
//! client's configuration is validated field by field.
#![cfg(feature = "standin")]

use std::time::SystemTime;

use base64::Engine as _;
use cordon_connectors::{
    duo::{
        Canonical, DuoClient, DuoConfig, DuoError, SigVersion, canon_params, date::rfc2822,
        sign::signature_with,
    },
    standin::duo::DuoStandin,
};
use serde_json::{Value, json};

const IKEY: &str = "DIWJ8X6AEYOR5OMC6TQ1";
const SKEY: &str = "Zh5eGmUq9zpfQnyUIu5OL9iWoMMv5ZNmk3zLJ4Ep";
const HOST: &str = "api-cordon1.duosecurity.com";

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// Sends a form POST with the given headers; (status, JSON answer).
fn post(s: &DuoStandin, path: &str, form: &str, headers: &[(&str, String)]) -> (u16, Value) {
    let mut req = agent()
        .post(format!("{}{path}", s.url()))
        .header("Content-Type", "application/x-www-form-urlencoded");
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let mut resp = req.send(form).expect("the stand-in answers");
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_to_string().expect("body");
    (status, serde_json::from_str(&body).expect("JSON"))
}

fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

/// Date and Authorization headers for a v2 POST of `p`, HMAC-SHA1 or -SHA512.
fn v2_headers(
    host: &str,
    path: &str,
    p: &[(String, String)],
    sha1: bool,
) -> Vec<(&'static str, String)> {
    let date = rfc2822(SystemTime::now());
    let c = Canonical {
        method: "POST",
        host,
        path,
        date: &date,
        params: p,
        body: "",
        x_duo_headers: &[],
    };
    let sig = signature_with(SKEY, SigVersion::V2, sha1, &c);
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{IKEY}:{sig}"));
    vec![("Date", date), ("Authorization", format!("Basic {basic}"))]
}

#[test]
fn unsigned_requests_are_refused_with_duos_codes() {
    let s = DuoStandin::start(IKEY, SKEY, HOST);
    let p = params(&[("username", "alice")]);
    let form = canon_params(&p);
    let (status, v) = post(&s, "/auth/v2/preauth", &form, &[]);
    assert_eq!(
        (status, v["stat"].as_str(), v["code"].as_u64()),
        (401, Some("FAIL"), Some(40101))
    );
    let mut h = v2_headers(HOST, "/auth/v2/preauth", &p, true);
    h.retain(|(k, _)| *k != "Date");
    let (status, v) = post(&s, "/auth/v2/preauth", &form, &h);
    assert_eq!((status, v["code"].as_u64()), (401, Some(40104)), "{v}");
    let mut h = v2_headers(HOST, "/auth/v2/preauth", &p, true);
    h[0].1 = "yesterday".to_string();
    let (_, v) = post(&s, "/auth/v2/preauth", &form, &h);
    assert_eq!(v["code"].as_u64(), Some(40105), "{v}");
}

#[test]
fn the_signature_covers_host_path_and_parameters() {
    let s = DuoStandin::start(IKEY, SKEY, HOST);
    let p = params(&[("username", "alice")]);
    let form = canon_params(&p);
    // Correct, with HMAC-SHA1 and with HMAC-SHA512 (duo_client's default for v2).
    for sha1 in [true, false] {
        let (status, v) = post(
            &s,
            "/auth/v2/preauth",
            &form,
            &v2_headers(HOST, "/auth/v2/preauth", &p, sha1),
        );
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["response"]["result"], "enroll");
    }
    // Signed for another host, another path, or other parameters.
    let other = params(&[("username", "mallory")]);
    for h in [
        v2_headers("api-other.duosecurity.com", "/auth/v2/preauth", &p, true),
        v2_headers(HOST, "/auth/v2/auth", &p, true),
        v2_headers(HOST, "/auth/v2/preauth", &other, true),
    ] {
        let (status, v) = post(&s, "/auth/v2/preauth", &form, &h);
        assert_eq!((status, v["code"].as_u64()), (401, Some(40103)), "{v}");
        assert_eq!(v["message"], "Invalid signature in request credentials");
    }
    let recorded = s.requests();
    assert_eq!(recorded[0].signature_version, Some(2));
    assert_eq!(recorded[2].code, Some(40103));
    // The client signing for another host than the stand-in's is refused the same way.
    let mut cfg = DuoConfig::new("api-other.duosecurity.com", IKEY, SKEY);
    cfg.base_url = Some(s.url());
    let e = DuoClient::new(cfg)
        .expect("config")
        .check()
        .expect_err("wrong host");
    assert_eq!(e.duo_code(), Some(40103));
}

#[test]
fn routes_and_parameters_are_checked() {
    let s = DuoStandin::start(IKEY, SKEY, HOST);
    let mut resp = agent()
        .get(format!("{}/auth/v2/ping", s.url()))
        .call()
        .expect("ping");
    assert_eq!(resp.status().as_u16(), 200, "ping needs no signature");
    let v: Value =
        serde_json::from_str(&resp.body_mut().read_to_string().expect("body")).expect("JSON");
    assert!(v["response"]["time"].as_u64().is_some());
    let p = params(&[("username", "alice"), ("device", "auto")]);
    let (status, v) = post(
        &s,
        "/auth/v2/auth",
        &canon_params(&p),
        &v2_headers(HOST, "/auth/v2/auth", &p, true),
    );
    assert_eq!((status, v["code"].as_u64()), (400, Some(40001)), "{v}");
    assert_eq!(v["message_detail"], "factor");
    let (status, v) = post(
        &s,
        "/auth/v2/nope",
        "",
        &v2_headers(HOST, "/auth/v2/nope", &[], true),
    );
    assert_eq!((status, v["code"].as_u64()), (404, Some(40401)), "{v}");
    let (status, _) = post(
        &s,
        "/auth/v2/check",
        "",
        &v2_headers(HOST, "/auth/v2/check", &[], true),
    );
    assert_eq!(status, 405);
}

#[test]
fn config_from_json_with_defaults_and_unknown_fields_refused() {
    let cfg: DuoConfig = serde_json::from_value(json!({
        "api_host": HOST, "ikey": IKEY, "skey": SKEY
    }))
    .expect("minimal config");
    assert_eq!(cfg.signature_version, 5);
    assert_eq!((cfg.timeout_ms, cfg.max_retries), (10_000, 3));
    assert_eq!((cfg.retry_initial_ms, cfg.retry_max_ms), (1_000, 32_000));
    assert_eq!(cfg.endpoint(), format!("https://{HOST}"));
    DuoClient::new(cfg).expect("valid");
    let e = serde_json::from_value::<DuoConfig>(json!({
        "api_host": HOST, "ikey": IKEY, "skey": SKEY, "secret": "x"
    }))
    .expect_err("unknown field");
    assert!(e.to_string().contains("secret"), "{e}");
}

#[test]
fn config_errors_name_the_field() {
    type Change = Box<dyn Fn(&mut DuoConfig)>;
    let cases: Vec<(&str, Change)> = vec![
        ("duo.api_host", Box::new(|c| c.api_host.clear())),
        (
            "duo.api_host",
            Box::new(|c| c.api_host = "https://api-x.duosecurity.com".into()),
        ),
        (
            "duo.base_url",
            Box::new(|c| c.base_url = Some("http://10.0.0.5:8080".into())),
        ),
        (
            "duo.base_url",
            Box::new(|c| c.base_url = Some("ftp://127.0.0.1".into())),
        ),
        (
            "duo.base_url",
            Box::new(|c| c.base_url = Some("https://x.example/path".into())),
        ),
        ("duo.ikey", Box::new(|c| c.ikey.clear())),
        ("duo.ikey", Box::new(|c| c.ikey = "DI:X".into())),
        ("duo.skey", Box::new(|c| c.skey.clear())),
        (
            "duo.signature_version",
            Box::new(|c| c.signature_version = 4),
        ),
        ("duo.timeout_ms", Box::new(|c| c.timeout_ms = 0)),
        ("duo.max_retries", Box::new(|c| c.max_retries = 100)),
        ("duo.retry_initial_ms", Box::new(|c| c.retry_initial_ms = 0)),
        ("duo.retry_max_ms", Box::new(|c| c.retry_max_ms = 1)),
    ];
    for (field, change) in cases {
        let mut cfg = DuoConfig::new(HOST, IKEY, SKEY);
        change(&mut cfg);
        match DuoClient::new(cfg) {
            Err(e @ DuoError::Config { .. }) => {
                assert!(e.to_string().starts_with(field), "{field}: {e}");
                assert!(!e.to_string().contains(SKEY));
            }
            other => panic!("{field}: {other:?}"),
        }
    }
    let mut ok = DuoConfig::new(HOST, IKEY, SKEY);
    ok.base_url = Some("http://[::1]:9999/".into());
    DuoClient::new(ok).expect("loopback http is allowed");
}
