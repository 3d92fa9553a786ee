//! `cordon-agent watch`: the capture on its own, printing live flows.
use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context;

use crate::{
    capture::{self, Settings, Stop},
    config::{AgentConfig, CaptureMode},
    output,
};

pub struct WatchArgs {
    pub config: Option<PathBuf>,
    pub json: bool,
    pub cgroup: Option<PathBuf>,
    pub capture: Option<CaptureMode>,
    pub host: Option<String>,
    pub stats_on_exit: bool,
    pub duration: Option<Duration>,
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
