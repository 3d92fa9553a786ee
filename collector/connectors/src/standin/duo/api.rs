//! The Auth API endpoints the stand-in implements, answering as Duo documents.
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::{Behaviour, Failure, State};
use crate::duo::PreauthResult;

/// The one phone every scripted user has.
pub const DEVICE_ID: &str = "DPFZRS9FB0D46QFTM899";

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn missing(name: &str) -> Failure {
    Failure::new(
        400,
        40001,
        "Missing required request parameters",
        Some(name),
    )
}

fn invalid(name: &str) -> Failure {
    Failure::new(400, 40002, "Invalid request parameters", Some(name))
}

/// `/auth/v2/check` and `/auth/v2/ping`.
pub(super) fn time() -> Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    json!({ "time": now })
}

fn user_behaviour(state: &State, params: &[(String, String)]) -> Result<Behaviour, Failure> {
    let user = param(params, "username")
        .or_else(|| param(params, "user_id"))
        .ok_or_else(|| missing("username"))?;
    Ok(state
        .users
        .get(user)
        .cloned()
        .unwrap_or(Behaviour::Preauth(PreauthResult::Enroll)))
}

/// `POST /auth/v2/preauth`.
pub(super) fn preauth(state: &State, params: &[(String, String)]) -> Result<Value, Failure> {
    Ok(match user_behaviour(state, params)? {
        Behaviour::Preauth(PreauthResult::Allow) => {
            json!({"result": "allow", "status_msg": "Allowing unknown user"})
        }
        Behaviour::Preauth(PreauthResult::Deny) => {
            json!({"result": "deny", "status_msg": "Your account is disabled"})
        }
        Behaviour::Preauth(_) => json!({
            "result": "enroll",
            "status_msg": "Enroll an authentication device to proceed",
            "enroll_portal_url": "https://api-standin.duosecurity.com/portal?code=standin"
        }),
        _ => json!({
            "result": "auth",
            "status_msg": "Account is active",
            "devices": [{
                "device": DEVICE_ID,
                "type": "phone",
                "number": "XXX-XXX-0100",
                "name": "",
                "display_name": "iOS (XXX-XXX-0100)",
                "capabilities": ["auto", "push", "sms", "phone", "mobile_otp"]
            }]
        }),
    })
}

/// `POST /auth/v2/auth`: push only. With `async=1` a txid to poll; otherwise the outcome.
pub(super) fn auth(state: &mut State, params: &[(String, String)]) -> Result<Value, Failure> {
    let factor = param(params, "factor").ok_or_else(|| missing("factor"))?;
    if factor != "push" && factor != "auto" {
        return Err(invalid("factor"));
    }
    let behaviour = user_behaviour(state, params)?;
    let device = param(params, "device").ok_or_else(|| missing("device"))?;
    if device != "auto" && device != DEVICE_ID {
        return Err(invalid("device"));
    }
    if let Some(info) = param(params, "pushinfo")
        && (info.len() >= 20_000 || super::server::decode_form(info).is_none())
    {
        return Err(invalid("pushinfo"));
    }
    let is_async = match param(params, "async") {
        None | Some("0") => false,
        Some("1") => true,
        Some(_) => return Err(invalid("async")),
    };
    match behaviour {
        Behaviour::Preauth(PreauthResult::Allow) => {
            return Ok(
                json!({"result": "allow", "status": "bypass", "status_msg": "Allowing unknown user"}),
            );
        }
        Behaviour::Preauth(PreauthResult::Deny) => {
            return Ok(
                json!({"result": "deny", "status": "deny", "status_msg": "Your account is disabled"}),
            );
        }
        Behaviour::Preauth(_) => return Err(invalid("username")),
        _ => {}
    }
    if !is_async {
        return Ok(match behaviour {
            Behaviour::ApproveAfter(_) => approved(),
            Behaviour::Deny => denied(),
            _ => json!({"result": "deny", "status": "timeout", "status_msg": "Login timed out."}),
        });
    }
    state.next_txid += 1;
    let txid = format!("00000000-0000-4000-8000-{:012x}", state.next_txid);
    state.txns.insert(txid.clone(), (behaviour, 0));
    Ok(json!({ "txid": txid }))
}

fn approved() -> Value {
    json!({"result": "allow", "status": "allow", "status_msg": "Success. Logging you in..."})
}

fn denied() -> Value {
    json!({"result": "deny", "status": "deny", "status_msg": "Login request denied."})
}

/// `GET /auth/v2/auth_status`.
pub(super) fn auth_status(
    state: &mut State,
    params: &[(String, String)],
) -> Result<Value, Failure> {
    let txid = param(params, "txid").ok_or_else(|| missing("txid"))?;
    let (behaviour, polls) = state.txns.get_mut(txid).ok_or_else(|| invalid("txid"))?;
    *polls += 1;
    let waiting = json!({
        "result": "waiting",
        "status": "pushed",
        "status_msg": "Pushed a login request to your device..."
    });
    Ok(match behaviour {
        Behaviour::ApproveAfter(n) if *polls > *n => approved(),
        Behaviour::Deny => denied(),
        _ => waiting,
    })
}
