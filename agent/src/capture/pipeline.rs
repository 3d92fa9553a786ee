//! What both captures share: the flow table, the process cache, the output, the counters.
use std::{
    collections::HashSet,
    path::PathBuf,
    time::{Duration, Instant},
};

use serde::Serialize;

use super::procfs::sockets;
use crate::{
    flows::{FlowStart, FlowTable},
    output::{Line, Output},
    process::ProcessCache,
    record::{Direction, ExportEvent, FlowId, FlowRecord, Proto},
    watchdog::Progress,
};

/// Counters of the agent's own work, reported in the stats line.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct AgentStats {
    /// Distinct flows reported (records with event "start").
    pub flows_reported: u64,
    /// Records handed to the output.
    pub records: u64,
    /// Flows found in the kernel map whose new-flow event was lost (reported late).
    pub flows_recovered: u64,
    /// Flows the kernel map evicted before their end was seen (final totals may be short).
    pub flows_evicted: u64,
    /// Ring-buffer records that could not be decoded.
    pub decode_errors: u64,
    /// Flows reported without a process.
    pub unattributed: u64,
    /// Flows whose first packet was not seen, so their direction came from the listening
    /// sockets in /proc/net.
    pub direction_from_listeners: u64,
    /// Flows the kernel had no owner for, attributed through /proc socket inodes.
    pub owner_from_procfs: u64,
}

pub struct Pipeline {
    pub table: FlowTable,
    pub procs: ProcessCache,
    pub output: Output,
    pub stats: AgentStats,
    /// Bumped by every `tick`: the capture's heartbeat for the systemd watchdog.
    pub progress: Progress,
    net_dir: PathBuf,
    listening: HashSet<(Proto, u16)>,
    listening_read: Option<Instant>,
}

impl Pipeline {
    pub fn new(table: FlowTable, procs: ProcessCache, output: Output, progress: Progress) -> Self {
        Self {
            table,
            procs,
            output,
            stats: AgentStats::default(),
            progress,
            net_dir: PathBuf::from("/proc/net"),
            listening: HashSet::new(),
            listening_read: None,
        }
    }

    /// Hands a record to the output (which counts what it cannot take).
    pub fn emit(&mut self, rec: FlowRecord) {
        if rec.event == ExportEvent::Start {
            self.stats.flows_reported += 1;
            if rec.process.is_none() {
                self.stats.unattributed += 1;
            }
        }
        self.stats.records += 1;
        self.output.send(Line::Flow(rec));
    }

    /// A new flow: emits its start record unless it is already known.
    pub fn open(&mut self, id: FlowId, start: FlowStart, now: Instant) {
        if let Some(rec) = self.table.open(id, start, now) {
            self.emit(rec);
        }
    }

    /// The kernel re-created a flow the table still holds: end the old, start the new.
    pub fn restart(&mut self, id: FlowId, start: FlowStart, now: Instant) {
        for rec in self.table.restart(id, start, now) {
            self.emit(rec);
        }
    }

    /// Periodic work: due records out, old processes forgotten. Returns the flows that
    /// ended, for the capture to forget.
    pub fn tick(&mut self, now: Instant) -> Vec<FlowId> {
        let (records, ended) = self.table.due(now);
        for r in records {
            self.emit(r);
        }
        self.procs.expire_exited(now);
        self.progress.beat();
        ended
    }

    /// Final records for every open flow.
    pub fn finish(&mut self) {
        for r in self.table.drain() {
            self.emit(r);
        }
    }

    /// Direction of a flow whose first packet was not seen: inbound when its local port is
    /// one this host listens on.
    pub fn guess_direction(&mut self, id: &FlowId) -> Direction {
        self.stats.direction_from_listeners += 1;
        if self
            .listening_read
            .is_none_or(|t| t.elapsed() > Duration::from_secs(1))
        {
            self.listening = sockets::listening(&sockets::read_all(&self.net_dir));
            self.listening_read = Some(Instant::now());
        }
        if self.listening.contains(&(id.proto, id.local_port)) {
            Direction::Inbound
        } else {
            Direction::Outbound
        }
    }

    /// The stats line printed at exit (and by `--stats-on-exit`).
    pub fn stats_json(
        &self,
        capture: &str,
        kernel: Option<serde_json::Value>,
    ) -> serde_json::Value {
        serde_json::json!({
            "type": "stats",
            "host": &*self.table.host(),
            "capture": capture,
            "agent": self.stats,
            "output_dropped": self.output.dropped(),
            "open_flows": self.table.len(),
            "processes_cached": self.procs.len(),
            "attribution": {
                "from_cache": self.procs.stats.from_cache,
                "from_proc": self.procs.stats.from_proc,
                "from_kernel_only": self.procs.stats.from_kernel_only,
            },
            "kernel": kernel,
        })
    }
}
