//! The eBPF capture: programs in the kernel, this loop in the agent.
//!
//! New-flow, exec and exit events arrive on the ring buffer (drained on wake-up and on a
//! short timer); flow counters are read from the per-CPU map every poll interval, ended
//! flows are deleted from it. A flow whose event was lost (ring buffer full) is still found
//! in the map and reported; a flow the map evicted is counted.
mod batch;
mod convert;
mod load;
mod tracefs;

use std::time::{Duration, Instant};

use rustc_hash::FxHashSet as HashSet;

use anyhow::{Context, anyhow};
use aya::{
    Ebpf,
    maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf},
};
use cordon_abi::{
    DecodeError, Event, FlowEvent, FlowKey, ORIGIN_LOCAL, ORIGIN_REMOTE, OWNER_NONE, ProcIdentity,
    STAT_NAMES, STATS_LEN,
};
use tokio::{io::unix::AsyncFd, sync::mpsc::Receiver};

pub use load::load_and_attach;

use super::{Stop, clock::Clock, pipeline::Pipeline, procfs::SocketOwnerLookup};
use crate::{
    flows::{FlowStart, Update},
    record::{Direction, FlowId, FlowRecord},
};

/// The loaded programs' maps, taken out of the `Ebpf` (which must outlive them).
pub struct Maps {
    events: AsyncFd<RingBuf<MapData>>,
    flows: batch::FlowMap,
    /// Reused buffer for the map reads.
    scratch: Vec<(FlowKey, convert::Summed)>,
    /// FLOW_SYN, kept as an untyped map: only deleted from, in batches.
    flow_syn: aya::maps::Map,
    owners: BpfHashMap<MapData, u64, ProcIdentity>,
    stats: PerCpuArray<MapData, u64>,
}

fn take<T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>>(
    ebpf: &mut Ebpf,
    name: &str,
) -> anyhow::Result<T> {
    let map = ebpf
        .take_map(name)
        .ok_or_else(|| anyhow!("map {name} missing from the eBPF object"))?;
    T::try_from(map).with_context(|| format!("map {name}"))
}

impl Maps {
    pub fn take(ebpf: &mut Ebpf) -> anyhow::Result<Self> {
        let ring: RingBuf<MapData> = take(ebpf, "EVENTS")?;
        // SAFETY: the RingBuf owns its map fd, which stays open and unchanged for as long
        // as the AsyncFd (which owns the RingBuf) lives.
        let events =
            unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
                .map_err(|e| anyhow!("polling the ring buffer: {e}"))?;
        Ok(Self {
            events,
            flows: batch::FlowMap::new(
                ebpf.take_map("FLOWS")
                    .ok_or_else(|| anyhow!("map FLOWS missing from the eBPF object"))?,
            )?,
            scratch: Vec::new(),
            flow_syn: ebpf
                .take_map("FLOW_SYN")
                .ok_or_else(|| anyhow!("map FLOW_SYN missing from the eBPF object"))?,
            owners: take(ebpf, "SOCK_OWNERS")?,
            stats: take(ebpf, "STATS")?,
        })
    }

    /// The kernel's counters, summed over CPUs, by name.
    pub fn kernel_stats(&self) -> serde_json::Value {
        let mut obj = serde_json::Map::new();
        for i in 0..STATS_LEN {
            let total: u64 = self
                .stats
                .get(&i, 0)
                .map(|v| v.iter().sum())
                .unwrap_or_default();
            obj.insert(STAT_NAMES[i as usize].to_string(), total.into());
        }
        serde_json::Value::Object(obj)
    }
}

/// Timers of the loop.
pub struct Intervals {
    pub drain: Duration,
    pub poll: Duration,
}

pub struct EbpfCapture {
    pub maps: Maps,
    pub pipe: Pipeline,
    pub clock: Clock,
    pub sockets: SocketOwnerLookup,
    /// Flows missing from the kernel map at the last poll. A flow must be missing twice
    /// in a row to count as evicted: one iteration can skip a key the kernel is replacing.
    pub missing: HashSet<FlowId>,
    /// BOOTTIME ns when the last drain began: a flow first seen well before it had its
    /// event drained (or lost); a younger one may still have its event in flight.
    pub drained_from_ns: u64,
}

/// How much older than the last drain a flow must be before a missing event counts as
/// lost (an event is submitted right after its flow's first packet is timestamped).
const EVENT_GRACE_NS: u64 = 100_000_000;

impl EbpfCapture {
    /// Runs until `stop` fires; then reports every open flow as ended.
    pub async fn run(
        &mut self,
        iv: Intervals,
        mut stop: Stop,
        mut attribute: Option<Receiver<Vec<FlowRecord>>>,
    ) -> anyhow::Result<()> {
        let mut drain = tokio::time::interval(iv.drain);
        let mut poll = tokio::time::interval(iv.poll);
        drain.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                guard = self.maps.events.readable_mut() => {
                    let mut guard = guard.context("ring buffer")?;
                    guard.clear_ready();
                    self.drain();
                }
                _ = drain.tick() => self.drain(),
                Some(recs) = super::recv_or_pending(&mut attribute) => {
                    // The exec of a short-lived program may still be in the ring buffer.
                    self.drain();
                    super::attribute(&self.pipe.procs, recs, &self.pipe.output);
                }
                _ = poll.tick() => {
                    self.drain();
                    self.poll();
                }
                _ = stop.fired() => break,
            }
        }
        self.drain();
        self.poll();
        self.pipe.finish();
        Ok(())
    }

    fn drain(&mut self) {
        self.drained_from_ns = super::boottime_ns();
        let mut batch = Vec::new();
        {
            let ring = self.maps.events.get_mut();
            while let Some(item) = ring.next() {
                batch.push(Event::decode(&item));
            }
        }
        let now = Instant::now();
        for ev in batch {
            match ev {
                Ok(Event::Flow(f)) => self.on_flow(&f, now),
                Ok(Event::Exec(e)) => self.pipe.procs.on_exec(convert::exec_info(&e)),
                Ok(Event::Exit(e)) => self.pipe.procs.on_exit(e.tgid, e.ktime_ns),
                Err(e) => {
                    self.pipe.stats.decode_errors += 1;
                    log_decode_error(e);
                }
            }
        }
    }

    /// The kernel sends one event per map insert, so an event for a flow the table holds
    /// means the kernel started it anew (4-tuple reused, or the entry was evicted).
    fn on_flow(&mut self, f: &FlowEvent, now: Instant) {
        let id = convert::flow_id(&f.key);
        let owner = (f.owner_source != OWNER_NONE).then_some(&f.owner);
        // The first packet's bytes: sent when this host opened the flow, else received.
        let first = match f.origin {
            ORIGIN_LOCAL => crate::record::Totals {
                bytes_out: u64::from(f.bytes),
                packets_out: 1,
                ..Default::default()
            },
            ORIGIN_REMOTE => crate::record::Totals {
                bytes_in: u64::from(f.bytes),
                packets_in: 1,
                ..Default::default()
            },
            _ => Default::default(),
        };
        let start = self.start(&id, f.origin, f.ktime_ns, owner, first);
        if self.pipe.table.contains(&id) {
            self.pipe.restart(id, start, now);
        } else {
            self.pipe.open(id, start, now);
        }
    }

    /// What a flow's start record says, from the kernel's view of it.
    fn start(
        &mut self,
        id: &FlowId,
        origin: u32,
        first_ns: u64,
        owner: Option<&ProcIdentity>,
        totals: crate::record::Totals,
    ) -> FlowStart {
        let direction = match origin {
            ORIGIN_LOCAL => Direction::Outbound,
            ORIGIN_REMOTE => Direction::Inbound,
            _ => self.pipe.guess_direction(id),
        };
        let (process, reason) = match owner {
            Some(o) => (Some(self.pipe.procs.resolve(&convert::identity(o))), None),
            None => match self.sockets.owner_pid(id) {
                Some(pid) => {
                    self.pipe.stats.owner_from_procfs += 1;
                    (self.pipe.procs.resolve_pid(pid), None)
                }
                None => (
                    None,
                    Some(
                        "no process owns the socket (it predates the agent and is gone, or the packet has no local socket)",
                    ),
                ),
            },
        };
        FlowStart {
            first_seen: self.clock.to_system(first_ns),
            direction,
            totals,
            tcp_flags: (0, 0),
            process,
            unattributed_reason: reason,
        }
    }

    fn poll(&mut self) {
        self.clock.refresh();
        let now = Instant::now();
        let mut present =
            HashSet::with_capacity_and_hasher(self.pipe.table.len(), Default::default());
        let mut entries = std::mem::take(&mut self.maps.scratch);
        self.maps.flows.read_all(&mut entries);
        for &(key, s) in &entries {
            let id = convert::flow_id(&key);
            present.insert(id);
            let update = Update {
                totals: s.totals,
                last_seen: self.clock.to_system(s.last_ns),
                tcp_flags: s.tcp_flags,
                gone: false,
            };
            if !self.pipe.table.update(&id, update, now) {
                if s.first_ns + EVENT_GRACE_NS > self.drained_from_ns {
                    // Its event may not be drained yet: look again at the next poll.
                    continue;
                }
                // In the map but never announced: its event was lost to a full ring buffer
                // (counted by the kernel), or a late packet re-created an ended flow.
                let owner = self.maps.owners.get(&s.cookie, 0).ok();
                let start = self.start(&id, s.origin, s.first_ns, owner.as_ref(), s.totals);
                self.pipe.stats.flows_recovered += 1;
                self.pipe.open(id, start, now);
                self.pipe.table.update(&id, update, now);
            }
        }
        self.maps.scratch = entries;
        // Known flows the kernel no longer has were evicted (LRU) before they ended.
        let missing: HashSet<FlowId> = self
            .pipe
            .table
            .ids()
            .filter(|id| !present.contains(id))
            .collect();
        let evicted: Vec<FlowId> = missing.intersection(&self.missing).copied().collect();
        self.missing = missing;
        for id in evicted {
            if self.pipe.table.mark_gone(&id, now) {
                self.pipe.stats.flows_evicted += 1;
            }
        }
        // Ended flows leave the kernel maps (unless already evicted), so a new flow on the
        // same 4-tuple starts afresh.
        let ended: Vec<FlowKey> = self.pipe.tick(now).iter().map(convert::flow_key).collect();
        self.maps.flows.remove_all(&ended);
        if let Some(fd) = batch::map_fd(&self.maps.flow_syn) {
            let tcp: Vec<FlowKey> = ended.into_iter().filter(|k| k.proto == 6).collect();
            batch::delete_all(fd, &tcp);
        }
    }
}

fn log_decode_error(e: DecodeError) {
    tracing::warn!(error = ?e, "undecodable ring-buffer record (counted in decode_errors)");
}
