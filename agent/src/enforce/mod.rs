//! The agent's side of isolation: the collector's commands carried out by the enforcer
//! (`cordon-enforcer`), whose state is restored at start before connecting out, and whose
//! expiry, re-assertion and refused-traffic counters are checked every second.
mod refused;
mod view;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use cordon_enforcer::{
    AllowRule, Backend, EbpfBackend, Enforcer, Exceptions, Isolation, NftBackend, Proto, now_unix,
};
use cordon_wire::{Command, CommandKind, CommandResult, EnforcementState};

pub use view::IsolationView;

use crate::{
    config::{AgentConfig, EnforcerConfig},
    output::{Line, Output},
    uplink::CommandHandler,
};

pub type SharedEnforcer = Arc<Mutex<Enforcer>>;

/// The isolation programs, built by build.rs with the capture's and embedded.
#[cfg(not(cordon_no_ebpf))]
static ENFORCE_OBJECT: Option<&[u8]> = Some(aya::include_bytes_aligned!(concat!(
    env!("OUT_DIR"),
    "/cordon-enforce-ebpf"
)));
#[cfg(cordon_no_ebpf)]
static ENFORCE_OBJECT: Option<&[u8]> = None;

fn ebpf_backend(cfg: &AgentConfig) -> anyhow::Result<EbpfBackend> {
    let cgroup = if cfg.capture.cgroup_path.as_os_str().is_empty() {
        crate::capture::mounts::cgroup2_root()?
    } else {
        cfg.capture.cgroup_path.clone()
    };
    Ok(EbpfBackend::new(
        ENFORCE_OBJECT,
        cfg.enforcer.bpf_pin_dir.clone(),
        cgroup,
    ))
}

/// The enforcer the config asks for, or `None` (backend "none", or "auto" with neither
/// `nft` nor the eBPF programs).
pub fn open(cfg: &AgentConfig) -> anyhow::Result<Option<SharedEnforcer>> {
    let e = &cfg.enforcer;
    let nft = NftBackend::new();
    let backend: Box<dyn Backend> = match e.backend.as_str() {
        "none" => return Ok(None),
        "nftables" if !nft.available() => {
            anyhow::bail!("enforcer.backend = nftables, but `nft` is not installed");
        }
        "nftables" => Box::new(nft),
        "auto" if nft.available() => Box::new(nft),
        "auto" | "ebpf" => {
            let b = ebpf_backend(cfg)?;
            let usable = ENFORCE_OBJECT.is_some() && b.check_pin_dir().is_ok();
            match (e.backend.as_str(), usable) {
                (_, true) => Box::new(b),
                ("auto", false) => {
                    tracing::warn!(
                        "enforcer.backend = auto, no `nft` here and no usable eBPF pin directory: this host cannot be isolated"
                    );
                    return Ok(None);
                }
                _ => {
                    if ENFORCE_OBJECT.is_none() {
                        anyhow::bail!(
                            "enforcer.backend = ebpf, but this agent was built without its eBPF programs"
                        );
                    }
                    b.check_pin_dir().map_err(|err| {
                        anyhow::anyhow!("enforcer.bpf_pin_dir {}: {err}", e.bpf_pin_dir.display())
                    })?;
                    Box::new(b)
                }
            }
        }
        other => anyhow::bail!("enforcer.backend: unknown backend `{other}`"),
    };
    let enf = Enforcer::new(backend, &e.state_file)
        .map_err(|err| anyhow::anyhow!("enforcer.state_file {}: {err}", e.state_file.display()))?;
    Ok(Some(Arc::new(Mutex::new(enf))))
}

/// What isolation always keeps: the collectors, and the config's allow-list.
pub fn exceptions(collectors: &[SocketAddr], cfg: &EnforcerConfig) -> Exceptions {
    Exceptions {
        management: collectors.to_vec(),
        allow: cfg.allow.iter().filter_map(|a| a.parse().ok()).collect(),
    }
}

/// Re-applies a persisted isolation (before the agent connects out).
pub fn restore(enf: &SharedEnforcer, exc: &Exceptions, view: &IsolationView) -> anyhow::Result<()> {
    let mut e = enf
        .lock()
        .map_err(|_| anyhow::anyhow!("enforcer lock poisoned"))?;
    let change = e
        .restore(Some(exc))
        .map_err(|e| anyhow::anyhow!("restoring isolation: {e}"))?;
    view.set(e.exceptions_in_force());
    tracing::info!(change = ?change.action, "enforcer state restored");
    Ok(())
}

/// Every second until the task is dropped: expiry, re-assertion and local (break-glass)
/// changes, then the traffic refused since the last round, sent on as "dropped" records.
pub async fn supervise(
    enf: SharedEnforcer,
    view: Arc<IsolationView>,
    out: Output,
    attribute: tokio::sync::mpsc::Sender<Vec<crate::record::FlowRecord>>,
    host: Arc<str>,
) {
    let mut t = tokio::time::interval(Duration::from_secs(1));
    let mut last = Instant::now();
    loop {
        t.tick().await;
        let (e, v) = (enf.clone(), view.clone());
        let res = tokio::task::spawn_blocking(move || {
            let mut e = e.lock().map_err(|_| "enforcer lock poisoned".to_string())?;
            let change = e.tick(now_unix()).map_err(|err| err.to_string())?;
            if let Some(c) = &change {
                tracing::info!(action = ?c.action, reason = %c.reason, by = %c.by, "isolation changed locally");
            }
            // Counted while isolated, and once more in the round that ends an isolation.
            let was = v.set(e.exceptions_in_force());
            let refused = if e.exceptions_in_force().is_some() || was {
                e.take_refused().map_err(|err| err.to_string())?
            } else {
                Vec::new()
            };
            Ok::<_, String>(refused)
        })
        .await;
        let window = last.elapsed();
        last = Instant::now();
        match res {
            Ok(Ok(refused)) if !refused.is_empty() => {
                let recs = refused::records(&host, &refused, window);
                // Through the capture, which knows processes that have already exited;
                // straight out if it cannot take them now (a full output queue counts
                // the record as dropped, in the capture statistics).
                if let Err(e) = attribute.try_send(recs) {
                    let recs = match e {
                        tokio::sync::mpsc::error::TrySendError::Full(r)
                        | tokio::sync::mpsc::error::TrySendError::Closed(r) => r,
                    };
                    for rec in recs {
                        out.send(Line::Flow(rec));
                    }
                }
            }
            Ok(Ok(_)) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, "enforcer check failed"),
            Err(err) => tracing::warn!(error = %err, "enforcer check panicked"),
        }
    }
}

/// Carries out isolate and release with the enforcer.
pub struct EnforcerHandler {
    pub enforcer: SharedEnforcer,
    pub exceptions: Exceptions,
    pub view: Arc<IsolationView>,
    /// Every address the uplink has resolved a collector to (a name can point at other
    /// nodes than at start): kept reachable too, with `exceptions.management`.
    pub known: crate::uplink::KnownAddrs,
}

fn allow_both(a: &SocketAddr) -> [AllowRule; 2] {
    let rule = |proto| AllowRule {
        net: ipnet::IpNet::from(a.ip()),
        proto: Some(proto),
        port: Some(a.port()),
    };
    [rule(Proto::Tcp), rule(Proto::Udp)]
}

impl CommandHandler for EnforcerHandler {
    fn handle(&mut self, cmd: &Command) -> CommandResult {
        let result = |ok: bool, message: String| CommandResult {
            id: cmd.id,
            ok,
            message: message.chars().take(250).collect(),
        };
        let Ok(mut enf) = self.enforcer.lock() else {
            return result(false, "enforcer lock poisoned".into());
        };
        let backend = enf.backend_name();
        let res = match &cmd.kind {
            CommandKind::Isolate {
                reason,
                expires_at,
                allow,
            } => {
                let mut exc = self.exceptions.clone();
                for addr in self.known.every() {
                    if !exc.management.contains(&addr) {
                        exc.management.push(addr);
                    }
                }
                exc.allow.extend(allow.iter().flat_map(allow_both));
                let iso = Isolation {
                    command_id: cmd.id,
                    reason: reason.clone(),
                    by: "collector".into(),
                    since_unix: now_unix(),
                    expires_at_unix: (*expires_at > 0).then_some(*expires_at),
                };
                match enf.isolate(iso, &exc) {
                    Ok(_) => result(true, format!("isolated ({backend})")),
                    Err(e) => result(false, format!("isolation failed: {e}")),
                }
            }
            CommandKind::Release { reason } => match enf.release(reason, "collector") {
                Ok(_) => result(true, format!("released ({backend})")),
                Err(e) => result(false, format!("release failed: {e}")),
            },
            CommandKind::RefreshInventory => {
                result(true, "inventory is sent whenever it changes".into())
            }
        };
        self.view.set(enf.exceptions_in_force());
        res
    }

    fn state(&self) -> EnforcementState {
        let Ok(enf) = self.enforcer.lock() else {
            return crate::uplink::NoEnforcer.state();
        };
        let backend = enf.backend_name().to_string();
        match &enf.state().isolated {
            Some(i) => EnforcementState {
                backend,
                isolated: true,
                since: i.since_unix,
                expires_at: i.expires_at_unix.unwrap_or(0),
                by: i.by.clone(),
                reason: i.reason.clone(),
            },
            None => EnforcementState {
                backend,
                isolated: false,
                since: 0,
                expires_at: 0,
                by: String::new(),
                reason: String::new(),
            },
        }
    }
}

#[cfg(test)]
mod tests;
