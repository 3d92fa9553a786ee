use rustc_hash::FxHashMap;
use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use crate::record::{
    Direction, ExportEvent, FlowId, FlowRecord, FlowState, ProcessInfo, Proto, Totals,
    tcp_flag_names,
};

/// Timers of the table.
#[derive(Clone, Copy, Debug)]
pub struct TableConfig {
    pub export_interval: Duration,
    pub idle_timeout: Duration,
    pub close_linger: Duration,
}

/// What is known when a flow is first seen.
#[derive(Clone, Debug)]
pub struct FlowStart {
    pub first_seen: SystemTime,
    pub direction: Direction,
    pub totals: Totals,
    pub tcp_flags: (u8, u8),
    pub process: Option<Arc<ProcessInfo>>,
    pub unattributed_reason: Option<&'static str>,
}

/// Latest totals of a flow from the capture (cumulative since the flow was first seen).
#[derive(Clone, Copy, Debug)]
pub struct Update {
    pub totals: Totals,
    pub last_seen: SystemTime,
    /// TCP flags seen (out, in), cumulative.
    pub tcp_flags: (u8, u8),
    /// The capture knows the flow has ended (the socket is gone).
    pub gone: bool,
}

struct Entry {
    start: FlowStart,
    totals: Totals,
    last_seen: SystemTime,
    tcp_flags: (u8, u8),
    /// When the totals last changed (monotonic, for the idle timeout).
    last_change: Instant,
    last_export: Instant,
    /// When FIN both ways, RST, or the end of the socket was seen.
    closing_since: Option<Instant>,
}

pub struct FlowTable {
    host: Arc<str>,
    capture: &'static str,
    cfg: TableConfig,
    flows: FxHashMap<FlowId, Entry>,
}

const FIN: u8 = 0x01;
const RST: u8 = 0x04;

fn tcp_closed(proto: Proto, (out, inn): (u8, u8)) -> bool {
    proto == Proto::Tcp && ((out | inn) & RST != 0 || (out & FIN != 0 && inn & FIN != 0))
}

impl FlowTable {
    pub fn new(host: Arc<str>, capture: &'static str, cfg: TableConfig) -> Self {
        Self {
            host,
            capture,
            cfg,
            flows: FxHashMap::default(),
        }
    }

    pub fn host(&self) -> Arc<str> {
        self.host.clone()
    }

    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    pub fn contains(&self, id: &FlowId) -> bool {
        self.flows.contains_key(id)
    }

    /// A flow seen for the first time: returns its `start` record. A flow already in the
    /// table (a repeated event) is left alone and returns `None`.
    pub fn open(&mut self, id: FlowId, start: FlowStart, now: Instant) -> Option<FlowRecord> {
        if self.flows.contains_key(&id) {
            return None;
        }
        let entry = Entry {
            totals: start.totals,
            last_seen: start.first_seen,
            tcp_flags: start.tcp_flags,
            start,
            last_change: now,
            last_export: now,
            closing_since: None,
        };
        let rec = self.record(&id, &entry, ExportEvent::Start, FlowState::Open);
        self.flows.insert(id, entry);
        Some(rec)
    }

    /// The kernel started the flow anew (a new connection on the same 4-tuple, or an
    /// evicted entry re-created): the old one ends now, the new one starts.
    pub fn restart(&mut self, id: FlowId, start: FlowStart, now: Instant) -> Vec<FlowRecord> {
        let mut out = Vec::with_capacity(2);
        if let Some(e) = self.flows.remove(&id) {
            out.push(self.record(&id, &e, ExportEvent::End, FlowState::Closed));
        }
        out.extend(self.open(id, start, now));
        out
    }

    /// New totals for a known flow; returns false when the flow is not in the table.
    /// Totals lower than the last ones belong to a new incarnation of the flow whose start
    /// has not been processed yet, and are ignored.
    pub fn update(&mut self, id: &FlowId, u: Update, now: Instant) -> bool {
        let Some(e) = self.flows.get_mut(id) else {
            return false;
        };
        let t = &e.totals;
        if u.totals.bytes_out < t.bytes_out
            || u.totals.bytes_in < t.bytes_in
            || u.totals.packets_out < t.packets_out
            || u.totals.packets_in < t.packets_in
        {
            return true;
        }
        if u.totals != e.totals {
            e.totals = u.totals;
            e.last_change = now;
        }
        if u.last_seen > e.last_seen {
            e.last_seen = u.last_seen;
        }
        e.tcp_flags = u.tcp_flags;
        if e.closing_since.is_none() && (u.gone || tcp_closed(id.proto, u.tcp_flags)) {
            e.closing_since = Some(now);
        }
        true
    }

    /// Ids of every flow in the table.
    pub fn ids(&self) -> impl Iterator<Item = FlowId> + '_ {
        self.flows.keys().copied()
    }

    /// The capture lost sight of the flow (socket gone, or evicted from the kernel map):
    /// it ends after the linger. Returns false when it was already ending or is unknown.
    pub fn mark_gone(&mut self, id: &FlowId, now: Instant) -> bool {
        match self.flows.get_mut(id) {
            Some(e) if e.closing_since.is_none() => {
                e.closing_since = Some(now);
                true
            }
            _ => false,
        }
    }

    /// Records due at `now`: periodic updates, and the end of flows that closed (after the
    /// linger) or went idle. Ended flows are removed; their ids are returned too so the
    /// capture can forget them.
    pub fn due(&mut self, now: Instant) -> (Vec<FlowRecord>, Vec<FlowId>) {
        let mut out = Vec::new();
        let mut ended = Vec::new();
        for (id, e) in &mut self.flows {
            let closed = e
                .closing_since
                .is_some_and(|t| now.duration_since(t) >= self.cfg.close_linger);
            let idle = now.duration_since(e.last_change) >= self.cfg.idle_timeout;
            if closed || idle {
                ended.push(*id);
            } else if now.duration_since(e.last_export) >= self.cfg.export_interval {
                e.last_export = now;
                out.push(Self::make(
                    &self.host,
                    self.capture,
                    id,
                    e,
                    ExportEvent::Update,
                    FlowState::Open,
                ));
            }
        }
        for id in &ended {
            if let Some(e) = self.flows.remove(id) {
                out.push(Self::make(
                    &self.host,
                    self.capture,
                    id,
                    &e,
                    ExportEvent::End,
                    FlowState::Closed,
                ));
            }
        }
        (out, ended)
    }

    /// Ends every flow (the agent is stopping): final records for all.
    pub fn drain(&mut self) -> Vec<FlowRecord> {
        let flows = std::mem::take(&mut self.flows);
        flows
            .iter()
            .map(|(id, e)| {
                let state = if e.closing_since.is_some() {
                    FlowState::Closed
                } else {
                    FlowState::Open
                };
                Self::make(&self.host, self.capture, id, e, ExportEvent::End, state)
            })
            .collect()
    }

    fn record(&self, id: &FlowId, e: &Entry, event: ExportEvent, state: FlowState) -> FlowRecord {
        Self::make(&self.host, self.capture, id, e, event, state)
    }

    fn make(
        host: &Arc<str>,
        capture: &'static str,
        id: &FlowId,
        e: &Entry,
        event: ExportEvent,
        state: FlowState,
    ) -> FlowRecord {
        let tcp = id.proto == Proto::Tcp;
        FlowRecord {
            kind: "flow",
            host: host.clone(),
            event,
            first_seen: e.start.first_seen,
            last_seen: e.last_seen,
            proto: id.proto,
            direction: e.start.direction,
            local_ip: id.local_ip,
            local_port: id.local_port,
            remote_ip: id.remote_ip,
            remote_port: id.remote_port,
            totals: e.totals,
            tcp_flags_out: (tcp && e.tcp_flags.0 != 0).then(|| tcp_flag_names(e.tcp_flags.0)),
            tcp_flags_in: (tcp && e.tcp_flags.1 != 0).then(|| tcp_flag_names(e.tcp_flags.1)),
            state,
            verdict: "forwarded",
            process: e.start.process.clone(),
            unattributed_reason: if e.start.process.is_none() {
                Some(
                    e.start
                        .unattributed_reason
                        .unwrap_or("no owning process known"),
                )
            } else {
                None
            },
            capture,
        }
    }
}
