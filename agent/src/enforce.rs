//! The agent's side of isolation: the collector's commands carried out by the enforcer
//! (`cordon-enforcer`), whose state is restored at start before connecting out, and whose
//! expiry and re-assertion run every two seconds.
use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use cordon_enforcer::{AllowRule, Enforcer, Exceptions, Isolation, NftBackend, Proto, now_unix};
use cordon_wire::{Command, CommandKind, CommandResult, EnforcementState};

use crate::{config::EnforcerConfig, uplink::CommandHandler};

pub type SharedEnforcer = Arc<Mutex<Enforcer>>;

/// The enforcer the config asks for, or `None` (backend "none", or "auto" without `nft`).
pub fn open(cfg: &EnforcerConfig) -> anyhow::Result<Option<SharedEnforcer>> {
    let backend = NftBackend::new();
    match cfg.backend.as_str() {
        "none" => return Ok(None),
        "auto" if !backend.available() => {
            tracing::warn!(
                "enforcer.backend = auto and no `nft` here: this host cannot be isolated"
            );
            return Ok(None);
        }
        "nftables" if !backend.available() => {
            anyhow::bail!("enforcer.backend = nftables, but `nft` is not installed");
        }
        _ => {}
    }
    let enf = Enforcer::new(Box::new(backend), &cfg.state_file)
        .map_err(|e| anyhow::anyhow!("enforcer.state_file {}: {e}", cfg.state_file.display()))?;
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
pub fn restore(enf: &SharedEnforcer, exc: &Exceptions) -> anyhow::Result<()> {
    let mut e = enf
        .lock()
        .map_err(|_| anyhow::anyhow!("enforcer lock poisoned"))?;
    let change = e
        .restore(Some(exc))
        .map_err(|e| anyhow::anyhow!("restoring isolation: {e}"))?;
    tracing::info!(change = ?change.action, "enforcer state restored");
    Ok(())
}

/// Expiry and re-assertion, every 2 s, until the task is dropped.
pub async fn tick(enf: SharedEnforcer) {
    let mut t = tokio::time::interval(Duration::from_secs(2));
    loop {
        t.tick().await;
        let e = enf.clone();
        let res =
            tokio::task::spawn_blocking(move || e.lock().map(|mut e| e.tick(now_unix())).ok())
                .await;
        if let Ok(Some(Err(err))) = res {
            tracing::warn!(error = %err, "enforcer tick failed");
        }
    }
}

/// Carries out isolate and release with the enforcer.
pub struct EnforcerHandler {
    pub enforcer: SharedEnforcer,
    pub exceptions: Exceptions,
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
        match &cmd.kind {
            CommandKind::Isolate {
                reason,
                expires_at,
                allow,
            } => {
                let mut exc = self.exceptions.clone();
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
        }
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
