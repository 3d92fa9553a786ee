//! `cordon-agent watch`: the capture on its own, printing live flows.
use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context;

use crate::{
    capture::{self, Settings, Stop},
    config::{AgentConfig, CaptureMode},
    output,
};

/// `cordon-agent watch` options.
#[derive(Clone, Debug, clap::Args)]
pub struct WatchArgs {
    /// Agent configuration file (TOML); defaults apply without one.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
    /// cgroup v2 directory to watch instead of the whole host.
    #[arg(long)]
    pub cgroup: Option<PathBuf>,
    /// Capture to use (overrides capture.mode).
    #[arg(long, value_enum)]
    pub capture: Option<CaptureMode>,
    /// Host name to report (overrides host_name).
    #[arg(long)]
    pub host: Option<String>,
    /// Print a statistics line (counts and drops) when stopping.
    #[arg(long)]
    pub stats_on_exit: bool,
    /// Stop after this long (e.g. "30s"); default: until SIGINT/SIGTERM.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Test hook: make one TCP connection of the agent's own to ADDR once capturing.
    #[arg(long, hide = true, value_name = "ADDR")]
    pub selftest_connect: Option<std::net::SocketAddr>,
}

pub fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

pub fn run(args: WatchArgs) -> anyhow::Result<()> {
    let mut cfg = match &args.config {
        Some(p) => AgentConfig::load(p)?,
        None => AgentConfig::default(),
    };
    if let Some(mode) = args.capture {
        cfg.capture.mode = mode;
    }
    let cgroup = args.cgroup.clone().or_else(|| {
        (!cfg.capture.cgroup_path.as_os_str().is_empty()).then(|| cfg.capture.cgroup_path.clone())
    });
    let host = args
        .host
        .clone()
        .or_else(|| (!cfg.host_name.is_empty()).then(|| cfg.host_name.clone()))
        .unwrap_or_else(host_name);
    let (out, printer) = output::spawn(args.json, cfg.capture.output_queue);
    let settings = Settings {
        host: Arc::from(host),
        capture: cfg.capture,
        cgroup,
        stats_on_exit: args.stats_on_exit,
        selftest_connect: args.selftest_connect,
        started: None,
        attribute: None,
        progress: Default::default(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let res = rt.block_on(async move {
        let stop = Stop::on_signals(args.duration)?;
        capture::run(settings, out, stop).await
    });
    // All senders are gone once the capture returns: the printer drains and exits.
    let _ = printer.join();
    res
}
