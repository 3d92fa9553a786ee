//! What other nodes tell this one, through PostgreSQL's LISTEN/NOTIFY. The store sends
//! the notifications inside the transactions that cause them (so they arrive only once
//! the change is committed): a command queued for an agent (`cordon_commands`, the agent
//! id), new outbox entries (`cordon_outbox`), a policy, label or inventory change
//! (`cordon_policy`), a revoked agent (`cordon_revoked`), a playbook run to look at
//! (`cordon_runs`). This node then pokes the agent's connection if it holds it, wakes its
//! outputs and playbook engine, rebuilds its policy context, or closes the revoked
//! agent's connection. After its listening connection was lost and re-established the
//! node assumes it missed something and does all of these.
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use crate::{
    ingest::Live,
    outputs::Wake,
    policy::state::PolicyState,
    store::postgres::{
        Notice, PgConfig, PgListener,
        listen::{COMMANDS, OUTBOX, POLICY, REVOKED, RUNS},
    },
};

/// The channels a node listens on.
pub const CHANNELS: &[&str] = &[COMMANDS, OUTBOX, POLICY, REVOKED, RUNS];

pub struct Listener {
    pub pg: PgConfig,
    pub live: Arc<Live>,
    /// Wakes the outputs and the playbook engine.
    pub outbox: Arc<Wake>,
    pub policy: Arc<PolicyState>,
}

impl Listener {
    fn handle(&self, notice: Notice) {
        match notice {
            Notice::Notify { channel, payload } => match channel.as_str() {
                COMMANDS => {
                    if self.live.poke(&payload) {
                        tracing::debug!(agent = %payload, "commands queued on another node; delivering");
                    }
                }
                OUTBOX | RUNS => self.outbox.notify(),
                POLICY => self.policy.mark_dirty(),
                REVOKED => {
                    if self.live.disconnect(&payload, "revoked") {
                        tracing::info!(agent = %payload, "revoked on another node; connection closed");
                    }
                }
                other => tracing::debug!(channel = other, "notification on an unknown channel"),
            },
            Notice::Reconnected => {
                tracing::info!("listening to the cluster again; catching up");
                self.live.poke_all();
                self.outbox.notify();
                self.policy.mark_dirty();
            }
        }
    }

    /// Listens on a thread of its own until `stop`, reconnecting as needed.
    pub fn spawn(self, stop: Arc<AtomicBool>) -> std::io::Result<thread::JoinHandle<()>> {
        thread::Builder::new()
            .name("cordon-listen".into())
            .spawn(move || {
                let mut wait = Duration::from_millis(200);
                while !stop.load(Ordering::Relaxed) {
                    let mut l = match PgListener::connect(&self.pg, CHANNELS) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::warn!(error = %e, retry_in = ?wait, "listening to the cluster failed");
                            thread::sleep(wait);
                            wait = (wait * 2).min(Duration::from_secs(5));
                            continue;
                        }
                    };
                    wait = Duration::from_millis(200);
                    // Whatever happened before this connection was missed.
                    self.handle(Notice::Reconnected);
                    while !stop.load(Ordering::Relaxed) {
                        match l.next(Duration::from_millis(500)) {
                            Ok(Some(n)) => self.handle(n),
                            Ok(None) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "the cluster listener's connection failed");
                                break;
                            }
                        }
                    }
                }
            })
    }
}
