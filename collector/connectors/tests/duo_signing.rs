//! Cordon's Duo request signatures against vectors computed by Duo's own Python client
//! (`duo_client` from PyPI, installed by `make setup`): `tests/duo_vectors.py` prints the
//! canonical request, signature and Authorization header duo_client makes for fixed
//! inputs; each must match `cordon_connectors::duo` exactly.
use std::process::Command;

use cordon_connectors::duo::{
    Canonical, SigVersion, canon_json, canonicalize, encode_pushinfo, sign, sign::signature_with,
};
use serde_json::Value;

fn pairs(v: &Value) -> Vec<(String, String)> {
    v.as_array()
        .expect("pairs")
        .iter()
        .map(|p| {
            (
                p[0].as_str().expect("key").to_string(),
                p[1].as_str().expect("value").to_string(),
            )
        })
        .collect()
}

fn vectors() -> Vec<Value> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/duo_vectors.py");
    let out = Command::new("python3")
        .arg(script)
        .output()
        .expect("running python3 (needed for the Duo signature vectors; run `make setup`)");
    assert!(
        out.status.success(),
        "tests/duo_vectors.py failed — Duo's Python client `duo_client` must be installed: \
         run `make setup`.\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("the vectors are JSON");
    v.as_array().expect("a list of vectors").clone()
}

#[test]
fn signatures_match_duo_client() {
    let cases = vectors();
    assert!(cases.len() >= 10, "only {} vectors", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let name = case["name"].as_str().expect("name");
        let version = match case["version"].as_u64() {
            Some(2) => SigVersion::V2,
            Some(5) => SigVersion::V5,
            v => panic!("{name}: version {v:?}"),
        };
        let method = case["method"].as_str().expect("method");
        let all = pairs(&case["pairs"]);
        let signed = pairs(&case["signed_pairs"]);
        let x_duo = pairs(&case["x_duo_headers"]);
        // What the client sends as the body of a v5 POST: duo_client's canon_json.
        let is_v5_post = version == SigVersion::V5 && method.eq_ignore_ascii_case("POST");
        let body = if is_v5_post {
            canon_json(&all)
        } else {
            String::new()
        };
        if body != case["body"].as_str().expect("body") {
            failures.push(format!("{name}: body {body:?} != {}", case["body"]));
        }
        let c = Canonical {
            method,
            host: case["host"].as_str().expect("host"),
            path: case["path"].as_str().expect("path"),
            date: case["date"].as_str().expect("date"),
            params: if is_v5_post { &[] } else { &all },
            body: &body,
            x_duo_headers: &x_duo,
        };
        assert_eq!(
            c.params,
            &signed[..],
            "{name}: the vector signs other parameters"
        );
        let canonical = canonicalize(version, &c);
        if canonical != case["canonical"].as_str().expect("canonical") {
            failures.push(format!(
                "{name}: canonical\n  ours   {canonical:?}\n  theirs {}",
                case["canonical"]
            ));
        }
        let skey = case["skey"].as_str().expect("skey");
        let sha1 = case["hmac_sha1"].as_bool().expect("hmac_sha1");
        let sig = signature_with(skey, version, sha1, &c);
        if sig != case["signature"].as_str().expect("signature") {
            failures.push(format!("{name}: signature {sig} != {}", case["signature"]));
        }
        // The public `sign` is HMAC-SHA1 for v2 and HMAC-SHA512 for v5.
        if sha1 == (version == SigVersion::V2) {
            let auth = sign(case["ikey"].as_str().expect("ikey"), skey, version, &c);
            if auth != case["authorization"].as_str().expect("authorization") {
                failures.push(format!("{name}: {auth} != {}", case["authorization"]));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn pushinfo_is_url_encoded_as_duo_documents() {
    let info = [
        ("host", "web-1"),
        ("process", "curl -s http://10.0.0.2/"),
        ("rule", "no egress"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    // The same string the vectors sign (duo_vectors.py's PUSHINFO).
    assert_eq!(
        encode_pushinfo(&info),
        "host=web-1&process=curl%20-s%20http%3A%2F%2F10.0.0.2%2F&rule=no%20egress"
    );
}
