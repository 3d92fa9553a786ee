//! Flow capture: picks eBPF or the procfs fallback, says which, and runs it until stopped.
mod clock;
pub mod ebpf;
pub mod mounts;
mod pipeline;
pub mod procfs;

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context;

pub use clock::{Clock, boottime_ns};
pub use pipeline::{AgentStats, Pipeline};

use crate::{
    config::{CaptureConfig, CaptureMode},
    flows::{FlowTable, TableConfig},
    output::{Line, Output},
    process::{CgroupPaths, ProcessCache},
    watchdog::Progress,
};

/// Fires once when the capture should stop (signal or deadline).
pub struct Stop {
    rx: tokio::sync::watch::Receiver<bool>,
}

impl Stop {
    /// Stops on SIGINT or SIGTERM, or after `after` when given. Call inside the runtime.
    pub fn on_signals(after: Option<Duration>) -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let (tx, rx) = tokio::sync::watch::channel(false);
        let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        tokio::spawn(async move {
            let deadline = async {
                match after {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = int.recv() => tracing::info!("SIGINT: stopping"),
                _ = term.recv() => tracing::info!("SIGTERM: stopping"),
                _ = deadline => tracing::info!("duration reached: stopping"),
            }
            let _ = tx.send(true);
        });
        Ok(Self { rx })
    }

    pub async fn fired(&mut self) {
        let _ = self.rx.wait_for(|stop| *stop).await;
    }
}

/// Everything `run` needs besides the output.
pub struct Settings {
    pub host: Arc<str>,
    pub capture: CaptureConfig,
    /// cgroup to watch; `None` for the root of the cgroup2 mount.
    pub cgroup: Option<PathBuf>,
    pub stats_on_exit: bool,
    /// Test hook: once capturing, make one TCP connection of the agent's own to this
    /// address, so a test can check the agent does not report its own traffic.
    pub selftest_connect: Option<std::net::SocketAddr>,
    /// Told which capture ("ebpf" or "procfs") started, once it has.
    pub started: Option<tokio::sync::oneshot::Sender<&'static str>>,
    /// Records from outside the capture (the enforcer's refused traffic) whose process is
    /// known only by pid: the capture fills in what its process cache knows (a program
    /// that was refused and exited at once), then sends them on with its own.
    pub attribute: Option<tokio::sync::mpsc::Receiver<Vec<crate::record::FlowRecord>>>,
    /// Bumped at every poll of the flow counters (the systemd watchdog watches it).
    pub progress: Progress,
}

/// The next message of an optional channel; never ready without one (or once closed).
pub async fn recv_or_pending<T>(rx: &mut Option<tokio::sync::mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(r) => match r.recv().await {
            Some(v) => Some(v),
            None => {
                *rx = None;
                std::future::pending().await
            }
        },
        None => std::future::pending().await,
    }
}

/// Fills in the process of records known by pid only, from the cache.
pub fn attribute(procs: &ProcessCache, recs: Vec<crate::record::FlowRecord>, out: &Output) {
    for mut rec in recs {
        let known = rec
            .process
            .as_ref()
            .filter(|p| p.exe.is_none())
            .and_then(|p| procs.recent(p.pid));
        if let Some(info) = known {
            rec.process = Some(info);
            rec.unattributed_reason = None;
        }
        out.send(Line::Flow(rec));
    }
}

fn announce(s: &mut Settings, capture: &'static str) {
    if let Some(tx) = s.started.take() {
        let _ = tx.send(capture);
    }
}

/// Sends a tiny HTTP request from the agent process itself (see `selftest_connect`).
fn spawn_selftest(addr: Option<std::net::SocketAddr>) {
    let Some(addr) = addr else { return };
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let res = async {
            let mut s = tokio::net::TcpStream::connect(addr).await?;
            s.write_all(b"GET /selftest HTTP/1.0\r\n\r\n").await?;
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).await?;
            Ok::<usize, std::io::Error>(buf.len())
        }
        .await;
        match res {
            Ok(n) => tracing::info!(%addr, bytes = n, "self-test connection done"),
            Err(e) => tracing::warn!(%addr, error = %e, "self-test connection failed"),
        }
    });
}

fn table(s: &Settings, capture: &'static str) -> FlowTable {
    let c = &s.capture;
    FlowTable::new(
        s.host.clone(),
        capture,
        TableConfig {
            export_interval: Duration::from_millis(c.export_interval_ms),
            idle_timeout: Duration::from_millis(c.idle_timeout_ms),
            close_linger: Duration::from_millis(c.close_linger_ms),
        },
    )
}

/// Runs the capture the settings ask for until `stop` fires.
pub async fn run(mut s: Settings, output: Output, stop: Stop) -> anyhow::Result<()> {
    let root = mounts::cgroup2_root()?;
    let target = mounts::cgroup_target(&root, s.cgroup.as_deref())?;
    let cgroup_rel = format!(
        "/{}",
        target
            .path
            .strip_prefix(&target.root)
            .unwrap_or(&target.path)
            .display()
    );
    let mode = s.capture.mode;
    if mode != CaptureMode::Procfs {
        let loaded = mounts::tracefs_root()
            .and_then(|tracefs| ebpf::load_and_attach(&s.capture, &target, &tracefs));
        match loaded {
            Ok(mut bpf) => {
                let maps = ebpf::Maps::take(&mut bpf)?;
                let procs = ProcessCache::new(CgroupPaths::new(target.root.clone()));
                let mut cap = ebpf::EbpfCapture {
                    maps,
                    pipe: Pipeline::new(
                        table(&s, "ebpf"),
                        procs,
                        output.clone(),
                        s.progress.clone(),
                    ),
                    clock: Clock::new(),
                    sockets: procfs::SocketOwnerLookup::new(),
                    drained_from_ns: 0,
                    missing: Default::default(),
                };
                tracing::info!(capture = "ebpf", cgroup = %cgroup_rel, host = %s.host, "capture started");
                announce(&mut s, "ebpf");
                spawn_selftest(s.selftest_connect);
                let iv = ebpf::Intervals {
                    drain: Duration::from_millis(s.capture.drain_interval_ms),
                    poll: Duration::from_millis(s.capture.poll_interval_ms),
                };
                let res = cap.run(iv, stop, s.attribute.take()).await;
                if s.stats_on_exit {
                    output.send(Line::Json(
                        cap.pipe.stats_json("ebpf", Some(cap.maps.kernel_stats())),
                    ));
                }
                // Dropping `bpf` detaches every program.
                drop(cap);
                drop(bpf);
                return res;
            }
            Err(e) if mode == CaptureMode::Auto => {
                tracing::warn!(error = %format!("{e:#}"), "eBPF capture unavailable; falling back to the procfs capture (flows that open and close between polls are seen late and without a process)");
            }
            Err(e) => return Err(e.context("eBPF capture (capture.mode = \"ebpf\")")),
        }
    }
    let packets = match procfs::PacketCounter::start(&s.capture.interfaces) {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::warn!(error = %e, "packet counting unavailable; procfs flows will carry no byte counts");
            None
        }
    };
    let procs = ProcessCache::new(CgroupPaths::new(target.root.clone()));
    let mut cap = procfs::ProcfsCapture {
        pipe: Pipeline::new(
            table(&s, "procfs"),
            procs,
            output.clone(),
            s.progress.clone(),
        ),
        net_dir: PathBuf::from("/proc/net"),
        inodes: procfs::InodeOwners::new(PathBuf::from("/proc"), Duration::from_millis(200)),
        packets,
        cgroup: (target.level > 0).then_some(cgroup_rel.clone()),
        idle_timeout: Duration::from_millis(s.capture.idle_timeout_ms),
    };
    tracing::info!(capture = "procfs", cgroup = %cgroup_rel, host = %s.host, "capture started");
    announce(&mut s, "procfs");
    spawn_selftest(s.selftest_connect);
    let res = cap
        .run(
            Duration::from_millis(s.capture.poll_interval_ms),
            stop,
            s.attribute.take(),
        )
        .await;
    if s.stats_on_exit {
        output.send(Line::Json(
            cap.pipe.stats_json("procfs", Some(cap.kernel_stats())),
        ));
    }
    res
}
