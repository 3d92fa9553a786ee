//! Message types. Variants are append-only (see the crate docs); every field that comes
//! from the network has a documented bound that [`Message::check`] enforces.
use serde::{Deserialize, Serialize};

/// Longest host name, in bytes (DNS limit).
pub const MAX_HOST: usize = 253;
/// Longest command line carried for a process, in bytes (the agent caps at 4 KiB).
pub const MAX_CMDLINE: usize = 4096;
/// Longest path (exe, cgroup), in bytes.
pub const MAX_PATH: usize = 4096;
/// Longest short text (comm, user, versions, reasons, labels), in bytes.
pub const MAX_TEXT: usize = 256;
/// Most flow records in one batch.
pub const MAX_BATCH_RECORDS: usize = 4096;
/// Most entries in an inventory list (interfaces, addresses, listening sockets).
pub const MAX_INVENTORY_ITEMS: usize = 16_384;
/// Most addresses in an allow-list.
pub const MAX_ALLOW: usize = 1024;
/// Longest join token, in bytes.
pub const MAX_TOKEN: usize = 128;
/// Longest PEM document (a certificate signing request or a certificate), in bytes.
pub const MAX_PEM: usize = 16 * 1024;

/// Everything that crosses an agent's connection, in either direction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Message {
    /// Agent → collector, first message: who is speaking and which versions it speaks.
    Hello(Hello),
    /// Collector → agent: the version chosen for this connection.
    Welcome(Welcome),
    /// Agent → collector: flow records with a sequence number.
    FlowBatch(FlowBatch),
    /// Collector → agent: every batch up to and including `seq` is durably stored.
    Ack(Ack),
    /// Agent → collector: host facts, at connect and on change.
    Inventory(Inventory),
    /// Collector → agent: something to do (isolate, release, …).
    Command(Command),
    /// Agent → collector: what came of a command.
    CommandResult(CommandResult),
    /// Either way: the sender is closing the connection, and why.
    Goodbye(Goodbye),
    /// Agent → collector, on a connection without a client certificate: a join token and
    /// a certificate signing request. The only message such a connection may send.
    Enroll(Enroll),
    /// Collector → agent: the signed certificate (a refusal is a `Goodbye` with the reason).
    Enrolled(Enrolled),
    /// Agent → collector: the host's enforcement state, at connect and after each change.
    EnforcementState(EnforcementState),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol_min: u16,
    pub protocol_max: u16,
    pub agent_version: String,
    pub host_name: String,
    /// "ebpf" or "procfs".
    pub capture: String,
    /// Kernel boot id: a change means the host rebooted.
    pub boot_id: String,
    /// Highest batch sequence number the agent has sent before (0: none), so the collector
    /// can tell a resend from a new batch.
    pub last_seq: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    pub protocol: u16,
    /// Highest batch sequence number the collector has stored for this agent.
    pub stored_seq: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlowBatch {
    pub seq: u64,
    pub records: Vec<FlowRecord>,
    /// Records the agent had to drop (spool full) since the previous batch.
    pub dropped_before: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub seq: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Proto {
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
    Other(u8),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Direction {
    Outbound,
    Inbound,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FlowEvent {
    Start,
    Update,
    End,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    Forwarded,
    Dropped,
}

/// One flow observation (the agent's `start` / `update` / `end` record).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlowRecord {
    pub event: FlowEvent,
    /// Unix time in ns.
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    pub proto: Proto,
    pub direction: Direction,
    pub local: std::net::SocketAddr,
    pub remote: std::net::SocketAddr,
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub packets_in: u64,
    /// TCP flags seen (out, in).
    pub tcp_flags: (u8, u8),
    pub closed: bool,
    pub verdict: Verdict,
    pub process: Option<Process>,
    pub unattributed_reason: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Process {
    pub pid: u32,
    pub ppid: Option<u32>,
    pub uid: u32,
    pub user: Option<String>,
    pub comm: String,
    pub exe: Option<String>,
    pub cmdline: Option<String>,
    pub cgroup: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Inventory {
    pub host_name: String,
    pub os: String,
    pub kernel: String,
    pub cpus: u32,
    pub memory_bytes: u64,
    pub interfaces: Vec<Interface>,
    pub listening: Vec<Listener>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    pub addresses: Vec<std::net::IpAddr>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Listener {
    pub proto: Proto,
    pub local: std::net::SocketAddr,
    pub process: Option<Process>,
}

/// A command; `id` makes it idempotent (a repeated id is answered, not re-run).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Command {
    pub id: u64,
    pub kind: CommandKind,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum CommandKind {
    /// Cut the host off, except the management channel and the allow-list.
    Isolate {
        reason: String,
        /// Unix time in s when the isolation lifts by itself (0: never).
        expires_at: u64,
        allow: Vec<std::net::SocketAddr>,
    },
    Release {
        reason: String,
    },
    RefreshInventory,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommandResult {
    pub id: u64,
    pub ok: bool,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Goodbye {
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Enroll {
    /// The join token an operator made with `cordon token create --enroll`.
    pub token: String,
    /// PKCS#10 request, PEM; the private key stays on the host.
    pub csr_pem: String,
    /// The host's name; the collector derives the agent id from it.
    pub host_name: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Enrolled {
    /// The agent's identity: its certificate's common name.
    pub agent_id: String,
    pub cert_pem: String,
    /// The collector's CA certificate, for verifying the collector from now on.
    pub ca_pem: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnforcementState {
    /// "nftables", "ebpf", or "none" when the agent has no enforcer.
    pub backend: String,
    pub isolated: bool,
    /// Unix s; 0 when not isolated.
    pub since: u64,
    /// Unix s when the isolation lifts by itself; 0: never.
    pub expires_at: u64,
    /// Who asked (the collector's command author, or a local break-glass user).
    pub by: String,
    pub reason: String,
}
