//! The fallback capture, for hosts where the eBPF programs cannot run: socket tables from
//! /proc/net, owners from /proc/<pid>/fd, bytes from an AF_PACKET socket. It sees flows that
//! live across at least one poll, and short ones only once they are in TIME_WAIT (then
//! without a process). The agent says when it runs in this mode.
mod inodes;
mod packets;
pub mod sockets;

use std::{
    collections::HashSet,
    path::PathBuf,
    time::{Duration, Instant, SystemTime},
};

pub use inodes::InodeOwners;
pub use packets::PacketCounter;
use sockets::{SocketEntry, TCP_CLOSE, TCP_LISTEN, TCP_TIME_WAIT};

use super::{Stop, pipeline::Pipeline};
use crate::{
    flows::{FlowStart, Update},
    record::{Direction, FlowId, Proto, Totals},
};

fn id_of(e: &SocketEntry) -> FlowId {
    FlowId {
        proto: e.proto,
        local_ip: e.local_ip,
        local_port: e.local_port,
        remote_ip: e.remote_ip,
        remote_port: e.remote_port,
    }
}

/// Finds the process behind a flow through the socket tables (used by the eBPF capture
/// for sockets older than the agent).
pub struct SocketOwnerLookup {
    net_dir: PathBuf,
    inodes: InodeOwners,
    sockets: Vec<SocketEntry>,
    read_at: Option<Instant>,
}

impl SocketOwnerLookup {
    pub fn new() -> Self {
        Self {
            net_dir: PathBuf::from("/proc/net"),
            inodes: InodeOwners::new(PathBuf::from("/proc"), Duration::from_secs(1)),
            sockets: Vec::new(),
            read_at: None,
        }
    }

    pub fn owner_pid(&mut self, id: &FlowId) -> Option<u32> {
        if self
            .read_at
            .is_none_or(|t| t.elapsed() > Duration::from_millis(500))
        {
            self.sockets = sockets::read_all(&self.net_dir);
            self.read_at = Some(Instant::now());
        }
        // The flow's own socket, else (an accepted connection already closed) the socket
        // listening on its local port.
        let exact = self
            .sockets
            .iter()
            .find(|e| id_of(e) == *id && e.inode != 0);
        let listener = || {
            self.sockets.iter().find(|e| {
                e.proto == id.proto
                    && e.local_port == id.local_port
                    && (e.local_ip == id.local_ip || e.local_ip.is_unspecified())
                    && match e.proto {
                        Proto::Tcp => e.state == TCP_LISTEN,
                        _ => e.remote_port == 0,
                    }
            })
        };
        let inode = exact.or_else(listener)?.inode;
        self.inodes.owner(inode)
    }
}

impl Default for SocketOwnerLookup {
    fn default() -> Self {
        Self::new()
    }
}

pub struct ProcfsCapture {
    pub pipe: Pipeline,
    pub net_dir: PathBuf,
    pub inodes: InodeOwners,
    pub packets: Option<PacketCounter>,
    /// Only processes in this cgroup (path relative to the cgroup2 root) or below it.
    pub cgroup: Option<String>,
    pub idle_timeout: Duration,
}

impl ProcfsCapture {
    pub async fn run(
        &mut self,
        poll: Duration,
        mut stop: Stop,
        mut attribute: Option<tokio::sync::mpsc::Receiver<Vec<crate::record::FlowRecord>>>,
    ) -> anyhow::Result<()> {
        let mut tick = tokio::time::interval(poll);
        loop {
            tokio::select! {
                _ = tick.tick() => self.poll(),
                Some(recs) = super::recv_or_pending(&mut attribute) => {
                    super::attribute(&self.pipe.procs, recs, &self.pipe.output);
                }
                _ = stop.fired() => break,
            }
        }
        self.poll();
        self.pipe.finish();
        Ok(())
    }

    fn totals(&self, id: &FlowId) -> Totals {
        let Some(p) = &self.packets else {
            return Totals::default();
        };
        if !matches!(id.proto, Proto::Tcp | Proto::Udp) {
            return Totals::default();
        }
        let n = id.proto.number();
        let out = p.get(&(n, id.local_ip, id.local_port, id.remote_ip, id.remote_port));
        let inn = p.get(&(n, id.remote_ip, id.remote_port, id.local_ip, id.local_port));
        Totals {
            bytes_out: out.bytes,
            bytes_in: inn.bytes,
            packets_out: out.packets,
            packets_in: inn.packets,
        }
    }

    fn in_scope(&self, cgroup: Option<&str>) -> bool {
        match (&self.cgroup, cgroup) {
            (None, _) => true,
            (Some(want), Some(have)) => {
                have == want || have.starts_with(&format!("{}/", want.trim_end_matches('/')))
            }
            (Some(_), None) => false,
        }
    }

    fn poll(&mut self) {
        let now = Instant::now();
        let wall = SystemTime::now();
        let all = sockets::read_all(&self.net_dir);
        let listening = sockets::listening(&all);
        let me = std::process::id();
        let mut seen = HashSet::new();
        for e in &all {
            let connected = e.remote_port != 0 || !e.remote_ip.is_unspecified();
            if e.state == TCP_LISTEN
                || !connected
                || (e.proto == Proto::Udp && e.state == TCP_CLOSE)
            {
                continue;
            }
            let id = id_of(e);
            seen.insert(id);
            let gone = e.proto == Proto::Tcp && (e.state == TCP_TIME_WAIT || e.state == TCP_CLOSE);
            let totals = self.totals(&id);
            if !self.pipe.table.contains(&id) {
                let pid = self.inodes.owner(e.inode);
                if pid == Some(me) {
                    continue;
                }
                let process = pid.and_then(|p| self.pipe.procs.resolve_pid(p));
                if !self.in_scope(process.as_ref().and_then(|p| p.cgroup.as_deref())) {
                    continue;
                }
                let reason = process.is_none().then_some(if e.inode == 0 {
                    "seen only after its socket closed (procfs capture)"
                } else {
                    "socket owner not found in /proc"
                });
                let direction = if listening.contains(&(e.proto, e.local_port)) {
                    Direction::Inbound
                } else {
                    Direction::Outbound
                };
                let start = FlowStart {
                    first_seen: wall,
                    direction,
                    totals,
                    tcp_flags: (0, 0),
                    process,
                    unattributed_reason: reason,
                };
                self.pipe.open(id, start, now);
            }
            self.pipe.table.update(
                &id,
                Update {
                    totals,
                    last_seen: wall,
                    tcp_flags: (0, 0),
                    gone,
                },
                now,
            );
        }
        let vanished: Vec<FlowId> = self
            .pipe
            .table
            .ids()
            .filter(|id| !seen.contains(id))
            .collect();
        for id in vanished {
            self.pipe.table.mark_gone(&id, now);
        }
        self.pipe.tick(now);
        if let Some(p) = &self.packets {
            p.prune(now.checked_sub(self.idle_timeout).unwrap_or(now));
        }
    }

    pub fn kernel_stats(&self) -> serde_json::Value {
        match &self.packets {
            Some(p) => serde_json::json!({
                "packets_seen": p.shared.packets_seen.load(std::sync::atomic::Ordering::Relaxed),
                "packet_table_full": p.shared.dropped_full.load(std::sync::atomic::Ordering::Relaxed),
            }),
            None => serde_json::Value::Null,
        }
    }
}
