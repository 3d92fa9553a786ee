//! What the rest of the agent needs to know about isolation: the exceptions in force, so a
//! flow captured while isolated can be marked dropped when isolation does not permit it.
use std::{
    net::SocketAddr,
    sync::{
        RwLock,
        atomic::{AtomicU64, Ordering},
    },
};

use cordon_enforcer::Exceptions;

#[derive(Default)]
pub struct IsolationView {
    /// The exceptions in force and since when (Unix ns, as this agent saw the change).
    in_force: RwLock<Option<(Exceptions, u64)>>,
    /// Bumped at every change, so the uplink can report the new state at once.
    generation: AtomicU64,
}

impl IsolationView {
    /// Records the exceptions in force (`None`: not isolated); true when that is a change.
    pub fn set(&self, exc: Option<&Exceptions>) -> bool {
        let Ok(mut cur) = self.in_force.write() else {
            return false;
        };
        if cur.as_ref().map(|(e, _)| e) == exc {
            return false;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        *cur = exc.map(|e| (e.clone(), now));
        self.generation.fetch_add(1, Ordering::Relaxed);
        true
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// Whether isolation in force refuses this flow, last seen at `last_seen_ns` (Unix):
    /// false when not isolated, or when the flow's packets all predate the isolation.
    pub fn refuses(
        &self,
        proto: u8,
        local: SocketAddr,
        remote: SocketAddr,
        outbound: bool,
        last_seen_ns: u64,
    ) -> bool {
        self.in_force
            .read()
            .ok()
            .and_then(|g| {
                g.as_ref().map(|(e, since)| {
                    last_seen_ns >= *since && !e.permits(proto, local, remote, outbound)
                })
            })
            .unwrap_or(false)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use super::*;

    #[test]
    fn refuses_only_while_isolated_and_counts_changes() {
        let v = IsolationView::default();
        let (l, r) = (
            "10.0.0.5:4000".parse().unwrap(),
            "10.0.0.2:80".parse().unwrap(),
        );
        let now = u64::MAX;
        assert!(!v.refuses(6, l, r, true, now));
        let exc = Exceptions {
            management: vec!["10.0.0.1:4433".parse().unwrap()],
            allow: vec!["10.0.0.2:80/tcp".parse().unwrap()],
        };
        assert!(v.set(Some(&exc)));
        assert!(!v.set(Some(&exc)), "same exceptions: no change");
        assert_eq!(v.generation(), 1);
        assert!(!v.refuses(6, l, r, true, now), "allow-listed");
        let other = "10.0.0.3:80".parse().unwrap();
        assert!(v.refuses(6, l, other, true, now));
        assert!(!v.refuses(6, l, other, true, 1), "before the isolation");
        assert!(v.set(None));
        assert!(!v.refuses(6, l, other, true, now));
        assert_eq!(v.generation(), 2);
    }
}
