//! The agent's TOML configuration: typed, every field documented, unknown fields refused,
//! and semantic errors naming the field (`cordon-agent validate --config FILE`).
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::uplink::{Collector, CollectorAddr, dns_name};

/// Which capture to run.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum CaptureMode {
    /// eBPF when it loads and attaches, else procfs with a warning.
    #[default]
    Auto,
    /// eBPF only: fail if the programs cannot be loaded.
    Ebpf,
    /// /proc socket tables with packet counting (no eBPF).
    Procfs,
}

impl CaptureMode {
    pub fn as_str(self) -> &'static str {
        match self {
            CaptureMode::Auto => "auto",
            CaptureMode::Ebpf => "ebpf",
            CaptureMode::Procfs => "procfs",
        }
    }
}

/// `/etc/cordon/agent.toml`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// Name this host reports; empty means the system host name.
    pub host_name: String,
    /// Flow capture settings.
    pub capture: CaptureConfig,
    /// Connection to the collector (`cordon-agent run`).
    pub uplink: UplinkConfig,
    /// Isolation on the collector's command.
    pub enforcer: EnforcerConfig,
}

/// `[enforcer]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EnforcerConfig {
    /// "auto" (nftables when `nft` is there, else ebpf when the agent carries its
    /// programs, else none, with a warning), "nftables", "ebpf", or "none" (isolate
    /// commands are answered as not possible).
    pub backend: String,
    /// Kept reachable during an isolation, besides loopback and the collectors:
    /// `10.0.0.9:22/tcp`, `10.0.0.53:53/udp`, `192.0.2.0/24`.
    pub allow: Vec<String>,
    /// Where the isolation state is kept (re-applied at start).
    pub state_file: PathBuf,
    /// ebpf backend: directory on a BPF file system where the isolation programs' links
    /// and maps are pinned, so isolation outlives the agent.
    pub bpf_pin_dir: PathBuf,
}

impl Default for EnforcerConfig {
    fn default() -> Self {
        Self {
            backend: "auto".into(),
            allow: Vec::new(),
            state_file: PathBuf::from(cordon_enforcer::DEFAULT_STATE_PATH),
            bpf_pin_dir: PathBuf::from(cordon_enforcer::DEFAULT_PIN_DIR),
        }
    }
}

/// `[uplink]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UplinkConfig {
    /// Collector addresses, `"IP:port"`, `"[IPv6]:port"` or `"name:port"`; at least one
    /// for `run`. A name is looked up at every connection round and each of its addresses
    /// is a candidate (one name with several A/AAAA records: several collector nodes). The
    /// first candidate an agent tries is picked by a hash of its agent id, so a fleet
    /// spreads over the nodes; from there it goes round-robin.
    pub collectors: Vec<String>,
    /// Name every collector's certificate must carry; empty means each collector's own
    /// host as written in `collectors` (its IP, or its DNS name), so each node of a
    /// cluster can have a certificate of its own.
    pub server_name: String,
    /// Dead-peer detection, in milliseconds (1000 to 10000): a collector silent this long
    /// is taken for dead and the next one is tried at once; a handshake with no answer is
    /// given up after as long. The agent sends keep-alives every quarter of it.
    pub dead_after_ms: u64,
    /// The collector's CA certificate (PEM), saved at enrollment.
    pub ca_file: PathBuf,
    /// This agent's certificate (PEM), signed by the collector at enrollment.
    pub cert_file: PathBuf,
    /// This agent's private key (PEM); it never leaves the host.
    pub key_file: PathBuf,
    /// Directory of the on-disk spool of unacknowledged batches.
    pub spool_dir: PathBuf,
    /// Spool size in bytes; beyond it the oldest batches are dropped (and counted).
    pub spool_max_bytes: u64,
    /// Most records in one batch.
    pub batch_max_records: usize,
    /// A batch is sent at least this often while records arrive, in milliseconds.
    pub batch_interval_ms: u64,
}

impl Default for UplinkConfig {
    fn default() -> Self {
        Self {
            collectors: Vec::new(),
            server_name: String::new(),
            dead_after_ms: DEFAULT_DEAD_AFTER_MS,
            ca_file: PathBuf::from("/var/lib/cordon/ca.pem"),
            cert_file: PathBuf::from("/var/lib/cordon/agent.pem"),
            key_file: PathBuf::from("/var/lib/cordon/agent.key"),
            spool_dir: PathBuf::from("/var/lib/cordon/spool"),
            spool_max_bytes: 256 * 1024 * 1024,
            batch_max_records: 1000,
            batch_interval_ms: 200,
        }
    }
}

/// `uplink.dead_after_ms` unless set.
pub const DEFAULT_DEAD_AFTER_MS: u64 = 3000;
/// Bounds of `uplink.dead_after_ms`: below a second, a few lost keep-alives on a busy
/// network would pass for a dead collector; above 10 s, the collector's own idle timeout
/// (10 s; QUIC uses the smaller) ends the connection first.
pub const DEAD_AFTER_MS: std::ops::RangeInclusive<u64> = 1000..=10_000;

impl UplinkConfig {
    /// The collector addresses, parsed; the error names the field.
    pub fn collector_addrs(&self) -> Result<Vec<CollectorAddr>, (&'static str, String)> {
        self.collectors
            .iter()
            .map(|c| {
                c.parse::<CollectorAddr>()
                    .map_err(|e| ("uplink.collectors", e.to_string()))
            })
            .collect()
    }

    /// The collectors, each with the name its certificate must carry (`server_name`, or
    /// its own host).
    pub fn collectors(&self) -> Result<Vec<Collector>, (&'static str, String)> {
        Ok(self
            .collector_addrs()?
            .into_iter()
            .map(|a| Collector::new(a, &self.server_name))
            .collect())
    }

    pub fn dead_after(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.dead_after_ms)
    }
}

/// `[capture]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureConfig {
    /// "auto" (eBPF, else procfs with a warning), "ebpf" or "procfs".
    pub mode: CaptureMode,
    /// cgroup v2 directory to attach to; empty means the root of the cgroup2 mount (the
    /// whole host). Processes outside it are not observed.
    pub cgroup_path: PathBuf,
    /// How often the flow counters are read, in milliseconds.
    pub poll_interval_ms: u64,
    /// How often an open flow is exported again with its totals, in milliseconds.
    pub export_interval_ms: u64,
    /// A flow without packets for this long is exported as closed and forgotten.
    pub idle_timeout_ms: u64,
    /// How long a closed TCP flow is kept after its FIN/RST before the final export, so
    /// late packets (the last ACK) are counted in it rather than starting a new flow.
    pub close_linger_ms: u64,
    /// Capacity of the kernel flow map (entries; the least recently used is evicted and
    /// counted when full).
    pub flow_map_entries: u32,
    /// Size of the kernel→agent ring buffer in bytes (a power of two, at least 4096).
    pub ring_buffer_bytes: u32,
    /// Bytes pending in the ring buffer before the kernel wakes the agent early; below it
    /// the agent drains on its `drain_interval_ms` timer.
    pub wakeup_bytes: u32,
    /// How often the agent drains the ring buffer without a wake-up, in milliseconds.
    pub drain_interval_ms: u64,
    /// Records waiting for the output (stdout or the uplink); beyond it records are dropped
    /// and counted.
    pub output_queue: usize,
    /// procfs capture: interfaces whose packets are counted (empty: every interface).
    pub interfaces: Vec<String>,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        Self {
            mode: CaptureMode::Auto,
            cgroup_path: PathBuf::new(),
            poll_interval_ms: 1000,
            export_interval_ms: 10_000,
            idle_timeout_ms: 120_000,
            close_linger_ms: 1000,
            flow_map_entries: 65_536,
            ring_buffer_bytes: 4 * 1024 * 1024,
            wakeup_bytes: 64 * 1024,
            drain_interval_ms: 50,
            output_queue: 65_536,
            interfaces: Vec::new(),
        }
    }
}

/// A configuration that cannot be used, with the field at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: field `{field}`: {message}")]
    Invalid {
        path: PathBuf,
        field: &'static str,
        message: String,
    },
}

impl AgentConfig {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates config text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let cfg: AgentConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        cfg.validate()
            .map_err(|(field, message)| ConfigError::Invalid {
                path: path.to_path_buf(),
                field,
                message,
            })?;
        Ok(cfg)
    }

    /// Semantic checks serde cannot express; the error names the field.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let c = &self.capture;
        let positive = [
            ("capture.poll_interval_ms", c.poll_interval_ms),
            ("capture.export_interval_ms", c.export_interval_ms),
            ("capture.idle_timeout_ms", c.idle_timeout_ms),
            ("capture.drain_interval_ms", c.drain_interval_ms),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err((field, "must be greater than 0".into()));
            }
        }
        let at_least_a_poll = [
            ("capture.export_interval_ms", c.export_interval_ms),
            ("capture.idle_timeout_ms", c.idle_timeout_ms),
        ];
        for (field, value) in at_least_a_poll {
            if value < c.poll_interval_ms {
                return Err((
                    field,
                    format!(
                        "must be at least capture.poll_interval_ms ({} ms), got {value} ms",
                        c.poll_interval_ms
                    ),
                ));
            }
        }
        if !c.ring_buffer_bytes.is_power_of_two() || c.ring_buffer_bytes < 4096 {
            return Err((
                "capture.ring_buffer_bytes",
                format!(
                    "must be a power of two of at least 4096, got {}",
                    c.ring_buffer_bytes
                ),
            ));
        }
        if c.wakeup_bytes >= c.ring_buffer_bytes {
            return Err((
                "capture.wakeup_bytes",
                format!(
                    "must be smaller than capture.ring_buffer_bytes ({}), got {}",
                    c.ring_buffer_bytes, c.wakeup_bytes
                ),
            ));
        }
        if c.flow_map_entries < 1024 {
            return Err((
                "capture.flow_map_entries",
                format!("must be at least 1024, got {}", c.flow_map_entries),
            ));
        }
        if c.output_queue == 0 {
            return Err(("capture.output_queue", "must be greater than 0".into()));
        }
        if !c.cgroup_path.as_os_str().is_empty() && !c.cgroup_path.is_absolute() {
            return Err((
                "capture.cgroup_path",
                format!("must be an absolute path, got {}", c.cgroup_path.display()),
            ));
        }
        let u = &self.uplink;
        u.collector_addrs()?;
        if !u.server_name.is_empty()
            && u.server_name.parse::<std::net::IpAddr>().is_err()
            && dns_name(&u.server_name).is_none()
        {
            return Err((
                "uplink.server_name",
                format!(
                    "`{}` is neither an IP address nor a DNS name",
                    u.server_name
                ),
            ));
        }
        if !DEAD_AFTER_MS.contains(&u.dead_after_ms) {
            return Err((
                "uplink.dead_after_ms",
                format!(
                    "must be {} to {} ms, got {}",
                    DEAD_AFTER_MS.start(),
                    DEAD_AFTER_MS.end(),
                    u.dead_after_ms
                ),
            ));
        }
        if u.batch_max_records == 0 || u.batch_max_records > cordon_wire::MAX_BATCH_RECORDS {
            return Err((
                "uplink.batch_max_records",
                format!(
                    "must be 1 to {}, got {}",
                    cordon_wire::MAX_BATCH_RECORDS,
                    u.batch_max_records
                ),
            ));
        }
        if u.batch_interval_ms == 0 {
            return Err(("uplink.batch_interval_ms", "must be greater than 0".into()));
        }
        if u.spool_max_bytes < 1024 * 1024 {
            return Err((
                "uplink.spool_max_bytes",
                format!("must be at least 1 MiB, got {}", u.spool_max_bytes),
            ));
        }
        if self.host_name.len() > 253 {
            return Err(("host_name", "must be at most 253 bytes".into()));
        }
        let e = &self.enforcer;
        if !matches!(e.backend.as_str(), "auto" | "nftables" | "ebpf" | "none") {
            return Err((
                "enforcer.backend",
                format!("`{}`: auto, nftables, ebpf or none", e.backend),
            ));
        }
        if !e.bpf_pin_dir.is_absolute() {
            return Err(("enforcer.bpf_pin_dir", "must be an absolute path".into()));
        }
        for a in &e.allow {
            a.parse::<cordon_enforcer::AllowRule>()
                .map_err(|err| ("enforcer.allow", format!("`{a}`: {err}")))?;
        }
        if !e.state_file.is_absolute() {
            return Err(("enforcer.state_file", "must be an absolute path".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
