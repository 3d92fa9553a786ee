//! Commands on an agent's connection: queued ones are delivered when the agent connects
//! and whenever the API queues more (the connection is poked); the agent's answers and its
//! enforcement state are stored and audited.
use cordon_wire::{
    Command, CommandKind, CommandResult, EnforcementState, Message, transport::write_message,
};

use super::{IngestError, SharedStore, now_ns, with_store};
use crate::store::{CommandRow, HostEnforcement};

/// The wire form of a stored command; `None` if it cannot be expressed (logged).
pub fn to_wire(row: &CommandRow) -> Option<Command> {
    let b = &row.body;
    let reason = b["reason"].as_str().unwrap_or("").to_string();
    let kind = match row.kind.as_str() {
        "isolate" => CommandKind::Isolate {
            reason,
            expires_at: b["expires_at"].as_u64().unwrap_or(0),
            allow: b["allow"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str()?.parse().ok())
                .collect(),
        },
        "release" => CommandKind::Release { reason },
        other => {
            tracing::warn!(
                id = row.id,
                kind = other,
                "a command of unknown kind is not sent"
            );
            return None;
        }
    };
    Some(Command {
        id: u64::try_from(row.id).ok()?,
        kind,
    })
}

/// Sends `agent`'s commands not yet sent; with `resend` (at connect) also those sent on
/// an earlier connection and never answered (harmless: the agent answers a repeated id
/// without running it again).
pub(super) async fn deliver(
    agent: &str,
    store: &SharedStore,
    send: &mut quinn::SendStream,
    resend: bool,
) -> Result<(), IngestError> {
    let id = agent.to_string();
    let open = with_store(store, move |s| s.open_commands(&id, resend)).await?;
    for row in open {
        let Some(cmd) = to_wire(&row) else { continue };
        write_message(send, &Message::Command(cmd)).await?;
        let rid = row.id;
        with_store(store, move |s| s.mark_sent(rid, now_ns())).await?;
        tracing::info!(agent, id = row.id, kind = %row.kind, "command sent");
    }
    Ok(())
}

pub(super) async fn result(
    agent: &str,
    store: &SharedStore,
    r: CommandResult,
) -> Result<(), IngestError> {
    let id = agent.to_string();
    let cid = i64::try_from(r.id).unwrap_or(-1);
    let found = with_store(store, move |s| {
        s.command_result(&id, cid, r.ok, &r.message, now_ns())
    })
    .await?;
    if found.is_none() {
        tracing::warn!(
            agent,
            id = cid,
            "a result for a command this agent was not sent"
        );
    }
    Ok(())
}

pub(super) async fn enforcement(
    agent: &str,
    store: &SharedStore,
    e: EnforcementState,
) -> Result<(), IngestError> {
    let id = agent.to_string();
    with_store(store, move |s| {
        s.set_enforcement(
            &id,
            &HostEnforcement {
                backend: &e.backend,
                isolated: e.isolated,
                since_ns: e.since.saturating_mul(1_000_000_000),
                expires_ns: e.expires_at.saturating_mul(1_000_000_000),
                by: &e.by,
                reason: &e.reason,
            },
            now_ns(),
        )
    })
    .await
}
