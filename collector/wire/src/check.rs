//! Bounds on everything that arrives from the network ([`Message::check`]).
use crate::{codec::WireError, messages::*};

fn text(field: &'static str, value: &str, max: usize) -> Result<(), WireError> {
    if value.len() > max {
        return Err(WireError::Invalid {
            field,
            reason: format!("{} bytes, at most {max}", value.len()),
        });
    }
    if value.contains('\0') {
        return Err(WireError::Invalid {
            field,
            reason: "contains a NUL byte".into(),
        });
    }
    Ok(())
}

fn opt(field: &'static str, value: &Option<String>, max: usize) -> Result<(), WireError> {
    value.as_deref().map_or(Ok(()), |v| text(field, v, max))
}

fn count(field: &'static str, len: usize, max: usize) -> Result<(), WireError> {
    if len > max {
        return Err(WireError::Invalid {
            field,
            reason: format!("{len} items, at most {max}"),
        });
    }
    Ok(())
}

fn process(p: &Process) -> Result<(), WireError> {
    text("process.comm", &p.comm, MAX_TEXT)?;
    opt("process.user", &p.user, MAX_TEXT)?;
    opt("process.exe", &p.exe, MAX_PATH)?;
    opt("process.cmdline", &p.cmdline, MAX_CMDLINE)?;
    opt("process.cgroup", &p.cgroup, MAX_PATH)
}

fn flow(r: &FlowRecord) -> Result<(), WireError> {
    if r.last_seen_ns < r.first_seen_ns {
        return Err(WireError::Invalid {
            field: "flow.last_seen_ns",
            reason: "earlier than first_seen_ns".into(),
        });
    }
    if r.local.is_ipv4() != r.remote.is_ipv4() {
        return Err(WireError::Invalid {
            field: "flow.remote",
            reason: "address family differs from flow.local".into(),
        });
    }
    if let Some(p) = &r.process {
        process(p)?;
    }
    opt("flow.unattributed_reason", &r.unattributed_reason, MAX_TEXT)
}

impl Message {
    /// Checks every bound documented on the message types.
    pub fn check(&self) -> Result<(), WireError> {
        match self {
            Message::Hello(h) => {
                text("hello.agent_version", &h.agent_version, MAX_TEXT)?;
                text("hello.host_name", &h.host_name, MAX_HOST)?;
                text("hello.capture", &h.capture, MAX_TEXT)?;
                text("hello.boot_id", &h.boot_id, MAX_TEXT)
            }
            Message::Welcome(_) | Message::Ack(_) => Ok(()),
            Message::FlowBatch(b) => {
                count("flow_batch.records", b.records.len(), MAX_BATCH_RECORDS)?;
                b.records.iter().try_for_each(flow)
            }
            Message::Inventory(i) => {
                text("inventory.host_name", &i.host_name, MAX_HOST)?;
                text("inventory.os", &i.os, MAX_TEXT)?;
                text("inventory.kernel", &i.kernel, MAX_TEXT)?;
                count(
                    "inventory.interfaces",
                    i.interfaces.len(),
                    MAX_INVENTORY_ITEMS,
                )?;
                count(
                    "inventory.listening",
                    i.listening.len(),
                    MAX_INVENTORY_ITEMS,
                )?;
                for iface in &i.interfaces {
                    text("inventory.interfaces.name", &iface.name, MAX_TEXT)?;
                    count(
                        "inventory.interfaces.addresses",
                        iface.addresses.len(),
                        MAX_INVENTORY_ITEMS,
                    )?;
                }
                i.listening
                    .iter()
                    .filter_map(|l| l.process.as_ref())
                    .try_for_each(process)
            }
            Message::Command(c) => match &c.kind {
                CommandKind::Isolate { reason, allow, .. } => {
                    text("command.reason", reason, MAX_TEXT)?;
                    count("command.allow", allow.len(), MAX_ALLOW)
                }
                CommandKind::Release { reason } => text("command.reason", reason, MAX_TEXT),
                CommandKind::RefreshInventory => Ok(()),
            },
            Message::CommandResult(r) => text("command_result.message", &r.message, MAX_TEXT),
            Message::Goodbye(g) => text("goodbye.reason", &g.reason, MAX_TEXT),
            Message::Enroll(e) => {
                text("enroll.token", &e.token, MAX_TOKEN)?;
                text("enroll.csr_pem", &e.csr_pem, MAX_PEM)?;
                text("enroll.host_name", &e.host_name, MAX_HOST)
            }
            Message::EnforcementState(e) => {
                text("enforcement.backend", &e.backend, MAX_TEXT)?;
                text("enforcement.by", &e.by, MAX_TEXT)?;
                text("enforcement.reason", &e.reason, MAX_TEXT)
            }
            Message::Enrolled(e) => {
                text("enrolled.agent_id", &e.agent_id, MAX_TEXT)?;
                text("enrolled.cert_pem", &e.cert_pem, MAX_PEM)?;
                text("enrolled.ca_pem", &e.ca_pem, MAX_PEM)
            }
        }
    }
}
