//! Membership: every second a node records its heartbeat (with its own figures) and renews
//! the leases and run claims it holds. A node whose heartbeat stops is taken as gone after
//! [`NODE_DEAD_AFTER`]; what it held expires [`LEASE_TTL`](super::LEASE_TTL) after its last
//! beat, and the other nodes take it over. The heartbeat is also this node's probe of the
//! store: when it fails, [`Health::store_ok`] turns false and ingest stops acknowledging
//! agents (they keep their batches) until a beat succeeds again.
use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use super::{HEARTBEAT, LEASE_TTL, ns};
use crate::store::{NodeInfo, Store};

/// A node that has not beaten for this long (three missed beats) is reported as down.
pub const NODE_DEAD_AFTER: Duration = Duration::from_secs(3);

/// This node's view of its own health, shared with ingest and the API.
#[derive(Debug)]
pub struct Health {
    store_ok: AtomicBool,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            store_ok: AtomicBool::new(true),
        }
    }
}

impl Health {
    /// Whether the last heartbeat reached the store.
    pub fn store_ok(&self) -> bool {
        self.store_ok.load(Ordering::Acquire)
    }

    fn set_store_ok(&self, ok: bool) -> bool {
        self.store_ok.swap(ok, Ordering::AcqRel)
    }
}

/// What the heartbeat thread needs.
pub struct Membership {
    pub store: Arc<Mutex<Store>>,
    pub node: String,
    pub agent_addr: String,
    pub api_addr: String,
    pub health: Arc<Health>,
    /// The node's figures for `cordon cluster status`, taken at each beat.
    pub stats: Box<dyn Fn() -> serde_json::Value + Send>,
}

impl Membership {
    /// One beat: the heartbeat and the renewal of what this node holds.
    pub fn beat(&self) -> Result<(), String> {
        let now = crate::ingest::now_ns();
        let stats = (self.stats)();
        let info = NodeInfo {
            name: &self.node,
            agent_addr: &self.agent_addr,
            api_addr: &self.api_addr,
            version: env!("CARGO_PKG_VERSION"),
            stats: &stats,
        };
        let mut s = self.store.lock().map_err(|_| "store lock poisoned")?;
        s.heartbeat(&info, now).map_err(|e| e.to_string())?;
        s.renew(&self.node, now, ns(LEASE_TTL))
            .map_err(|e| e.to_string())
    }

    /// Beats every [`HEARTBEAT`] on a thread of its own until `stop`.
    pub fn spawn(self, stop: Arc<AtomicBool>) -> std::io::Result<thread::JoinHandle<()>> {
        thread::Builder::new()
            .name("cordon-heartbeat".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    match self.beat() {
                        Ok(()) => {
                            if !self.health.set_store_ok(true) {
                                tracing::info!(node = %self.node, "the store answers again");
                            }
                        }
                        Err(e) => {
                            if self.health.set_store_ok(false) {
                                tracing::error!(node = %self.node, error = %e, "the store does not answer: agents are not acknowledged until it does");
                            }
                        }
                    }
                    let left = HEARTBEAT.saturating_sub(started.elapsed());
                    let until = Instant::now() + left;
                    while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                        thread::sleep(Duration::from_millis(50).min(left));
                    }
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_beat_records_the_node_and_keeps_its_leases() {
        let store = Arc::new(Mutex::new(Store::in_memory().expect("store")));
        let m = Membership {
            store: store.clone(),
            node: "node-a".into(),
            agent_addr: "10.0.0.1:7443".into(),
            api_addr: "127.0.0.1:7480".into(),
            health: Arc::default(),
            stats: Box::new(|| serde_json::json!({"agents": 2})),
        };
        let t0 = crate::ingest::now_ns();
        {
            let mut s = store.lock().expect("lock");
            assert!(s.try_lease("output.kafka", "node-a", t0, 1).expect("lease"));
        }
        m.beat().expect("beat");
        let mut s = store.lock().expect("lock");
        let nodes = s.nodes().expect("nodes");
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].name, "node-a");
        assert_eq!(nodes[0].stats["agents"], 2);
        // The beat renewed the 1 ns lease: another node cannot take it now.
        let later = crate::ingest::now_ns();
        assert!(
            !s.try_lease("output.kafka", "node-b", later, 1)
                .expect("lease")
        );
    }
}
