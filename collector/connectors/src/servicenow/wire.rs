//! What goes over the wire besides the HTTP plumbing: ServiceNow's error body, record
//! ids, and the checks on arguments before anything is sent.
use serde_json::Value;

use super::{IncidentFields, SnowError};
use crate::notify::http;

/// ServiceNow's `correlation_id` column holds 100 characters.
const MAX_CORRELATION_ID: usize = 100;

pub(super) fn protocol(op: &'static str, why: impl Into<String>) -> SnowError {
    SnowError::Protocol {
        op,
        why: why.into(),
    }
}

/// ServiceNow's `{"error": {"message", "detail"}, "status": "failure"}`, or for other
/// bodies (an OAuth `error_description`, a proxy's page) their start.
pub(super) fn error_text(body: &str) -> (String, String) {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let s = |v: Option<&Value>| v.and_then(Value::as_str).map(|s| http::excerpt(s, 500));
    if let Some(err) = v.get("error") {
        if let Some(message) = s(err.get("message")) {
            return (message, s(err.get("detail")).unwrap_or_default());
        }
        if let Some(code) = s(Some(err)) {
            // OAuth: {"error": "access_denied", "error_description": "..."}
            return (code, s(v.get("error_description")).unwrap_or_default());
        }
    }
    (http::excerpt(body, 200), String::new())
}

/// `sys_id` and `number` of a record.
pub(super) fn ids(op: &'static str, rec: &Value) -> Result<(String, String), SnowError> {
    let sys_id = rec.get("sys_id").and_then(Value::as_str).unwrap_or("");
    if sys_id.is_empty() {
        return Err(protocol(op, "record without sys_id"));
    }
    let number = rec.get("number").and_then(Value::as_str).unwrap_or("");
    Ok((sys_id.to_owned(), number.to_owned()))
}

pub(super) fn check_correlation_id(id: &str) -> Result<(), SnowError> {
    if id.is_empty() || id.chars().count() > MAX_CORRELATION_ID {
        return Err(SnowError::Config(format!(
            "correlation_id: must be 1 to {MAX_CORRELATION_ID} characters"
        )));
    }
    if id.chars().any(char::is_control) {
        return Err(SnowError::Config(
            "correlation_id: must not contain control characters".into(),
        ));
    }
    Ok(())
}

pub(super) fn check_fields(f: &IncidentFields) -> Result<(), SnowError> {
    if f.short_description.trim().is_empty() {
        return Err(SnowError::Config("short_description: required".into()));
    }
    for (name, v) in [("urgency", f.urgency), ("impact", f.impact)] {
        if !(1..=3).contains(&v) {
            return Err(SnowError::Config(format!(
                "{name}: must be 1 (high) to 3 (low), not {v}"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::servicenow::{SnowAuth, SnowClient, SnowConfig};

    #[test]
    fn error_text_reads_servicenow_errors() {
        let body = r#"{"error":{"message":"User Not Authenticated","detail":"Required to provide Auth information"},"status":"failure"}"#;
        assert_eq!(
            error_text(body),
            (
                "User Not Authenticated".into(),
                "Required to provide Auth information".into()
            )
        );
        let oauth = r#"{"error":"access_denied","error_description":"access_denied"}"#;
        assert_eq!(error_text(oauth).0, "access_denied");
        assert_eq!(error_text("<html>gateway</html>").0, "<html>gateway</html>");
        assert_eq!(error_text("").0, "");
    }

    #[test]
    fn debug_redacts_secrets() {
        let cfg = SnowConfig::new(
            "https://x.example",
            SnowAuth::OAuth {
                client_id: "cid".into(),
                client_secret: "s3cret-cs".into(),
                username: "u".into(),
                password: "s3cret-pw".into(),
            },
        );
        let client = SnowClient::new(cfg).expect("valid");
        let d = format!("{client:?}");
        assert!(d.contains("cid") && !d.contains("s3cret"), "{d}");
    }

    #[test]
    fn arguments_are_checked() {
        assert!(check_correlation_id("").is_err());
        assert!(check_correlation_id(&"x".repeat(101)).is_err());
        assert!(check_correlation_id("alert:web-1:42").is_ok());
        let f = IncidentFields {
            short_description: "x".into(),
            urgency: 4,
            impact: 1,
            ..Default::default()
        };
        assert!(
            check_fields(&f)
                .expect_err("must be refused")
                .to_string()
                .contains("urgency")
        );
    }
}
