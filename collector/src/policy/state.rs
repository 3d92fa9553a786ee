//! The published policy in force, shared between the API (which publishes and labels) and
//! the ingest writer (which judges every record). Changes bump a generation; the writer
//! rebuilds its evaluator when it sees a new one.
use std::sync::{
    Arc, RwLock,
    atomic::{AtomicBool, AtomicU64, Ordering},
};

use cordon_wire::{Direction, FlowRecord, Proto, Verdict};

use super::{Action, Context, Evaluator, FlowView, HostFacts, load};
use crate::store::{Backend, Judged, StoreError};

#[derive(Default)]
pub struct PolicyState {
    current: RwLock<Option<Arc<Context>>>,
    generation: AtomicU64,
    /// Inventory or labels changed: rebuild at the next `refresh_if_dirty`.
    dirty: AtomicBool,
}

/// The context for the published policy in `store`, if one is published.
pub fn build_context(store: &dyn Backend) -> Result<Option<Context>, StoreError> {
    let Some(row) = store.policy(None)? else {
        return Ok(None);
    };
    let compiled = match load(&row.body) {
        Ok((_, c)) => c,
        Err(e) => {
            // Checked when applied; only a newer collector's syntax could get here.
            tracing::error!(version = row.version, error = %e, "the published policy does not compile; no verdicts");
            return Ok(None);
        }
    };
    let (hosts, ip_hosts) = host_context(store)?;
    Ok(Some(Context {
        policy: Arc::new(compiled),
        version: row.version,
        hosts,
        ip_hosts,
    }))
}

/// Enrolled hosts as a policy sees them: agent id → name and labels, and the addresses of
/// their interfaces (from their inventories) → agent id. Policy learning uses the same.
pub fn host_context(store: &dyn Backend) -> Result<(HostMap, IpHostMap), StoreError> {
    let hosts = store
        .host_facts()?
        .into_iter()
        .map(|(id, (name, labels))| (id, HostFacts { name, labels }))
        .collect();
    Ok((hosts, store.host_addresses()?))
}

/// Agent id → facts.
pub type HostMap = std::collections::HashMap<String, HostFacts>;
/// Address → agent id.
pub type IpHostMap = std::collections::HashMap<std::net::IpAddr, String>;

impl PolicyState {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Rebuilds from the store now (after a publish, at start).
    pub fn reload(&self, store: &dyn Backend) -> Result<(), StoreError> {
        let ctx = build_context(store)?.map(Arc::new);
        if let Ok(mut cur) = self.current.write() {
            *cur = ctx;
        }
        self.dirty.store(false, Ordering::Release);
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Something the policy matches on changed (labels, inventory).
    pub fn mark_dirty(&self) {
        self.dirty.store(true, Ordering::Release);
    }

    pub fn is_dirty(&self) -> bool {
        self.dirty.load(Ordering::Acquire)
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn current(&self) -> Option<Arc<Context>> {
        self.current.read().ok().and_then(|c| c.clone())
    }
}

fn proto_number(p: Proto) -> u8 {
    match p {
        Proto::Tcp => 6,
        Proto::Udp => 17,
        Proto::Icmp => 1,
        Proto::Icmpv6 => 58,
        Proto::Other(n) => n,
    }
}

/// Judges records for the ingest writer, following the state's generation.
pub struct Judge {
    state: Arc<PolicyState>,
    seen: u64,
    evaluator: Option<Evaluator>,
}

impl Judge {
    pub fn new(state: Arc<PolicyState>) -> Self {
        Self {
            state,
            seen: u64::MAX,
            evaluator: None,
        }
    }

    /// Picks up a newly published policy or changed inventory.
    pub fn refresh(&mut self) {
        let g = self.state.generation();
        if g != self.seen {
            self.seen = g;
            self.evaluator = self.state.current().map(Evaluator::new);
        }
    }

    pub fn judge(&mut self, agent: &str, r: &FlowRecord) -> Option<Judged> {
        let ev = self.evaluator.as_mut()?;
        let view = FlowView {
            host: agent,
            proto: proto_number(r.proto),
            outbound: r.direction == Direction::Outbound,
            local_ip: r.local.ip(),
            local_port: r.local.port(),
            remote_ip: r.remote.ip(),
            remote_port: r.remote.port(),
            exe: r.process.as_ref().and_then(|p| p.exe.as_deref()),
        };
        let d = ev.evaluate(&view);
        let ctx = ev.context();
        let verdict = match (d.action, r.verdict) {
            (Action::Allow, _) => "permitted",
            (Action::Deny, Verdict::Dropped) => "rejected",
            (Action::Deny, Verdict::Forwarded) => "escaped",
        };
        Some(Judged {
            verdict,
            rule: d.rule_name(&ctx.policy),
            version: ctx.version,
            severity: d.severity,
        })
    }
}
