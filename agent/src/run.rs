//! `cordon-agent run`: the capture streaming to the collector. Records leave the capture
//! through the same bounded queue `watch` prints from; a batcher thread groups them
//! (`batch_max_records`, `batch_interval_ms`) in their wire form and hands the batches to
//! the uplink, which spools each one before sending it.
use std::{
    path::Path,
    sync::{Arc, mpsc::RecvTimeoutError},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use tokio::sync::mpsc;

use crate::{
    capture::{self, Settings, Stop},
    config::AgentConfig,
    output::{Line, Output},
    spool::Spool,
    uplink::{Backoff, Identity, KnownAddrs, Uplink, convert::to_wire},
    watch::host_name,
    watchdog::{self, Progress, Stages},
};

fn read(path: &Path, what: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {what} {}", path.display()))
}

/// Groups records into batches and passes them on; ends when the capture's queue closes.
/// Bumps `progress` at every round (at least every `every`) unless the uplink stops taking
/// batches.
fn batcher(
    rx: std::sync::mpsc::Receiver<Line>,
    tx: mpsc::Sender<Vec<cordon_wire::FlowRecord>>,
    max: usize,
    every: Duration,
    isolation: &crate::enforce::IsolationView,
    progress: Progress,
) {
    let mut batch = Vec::with_capacity(max);
    let mut since = Instant::now();
    loop {
        progress.beat();
        let wait = every.saturating_sub(since.elapsed());
        let closed = match rx.recv_timeout(wait) {
            Ok(Line::Flow(rec)) => {
                let mut w = to_wire(&rec);
                // Captured while isolated and not permitted: the enforcer drops it (the
                // capture sees egress packets before the eBPF backend's tc drop).
                if isolation.refuses(
                    rec.proto.number(),
                    w.local,
                    w.remote,
                    rec.direction == crate::record::Direction::Outbound,
                    w.last_seen_ns,
                ) {
                    w.verdict = cordon_wire::Verdict::Dropped;
                }
                batch.push(w);
                false
            }
            Ok(Line::Json(v)) => {
                tracing::info!(stats = %v, "capture statistics");
                false
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => true,
        };
        if !batch.is_empty() && (closed || batch.len() >= max || since.elapsed() >= every) {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(max));
            if tx.blocking_send(full).is_err() {
                return;
            }
        }
        if batch.is_empty() {
            since = Instant::now();
        }
        if closed {
            return;
        }
    }
}

pub fn run(config: &Path) -> anyhow::Result<()> {
    let cfg = AgentConfig::load(config)?;
    let u = &cfg.uplink;
    let collectors = u
        .collectors()
        .map_err(|(field, msg)| anyhow::anyhow!("{}: field `{field}`: {msg}", config.display()))?;
    if collectors.is_empty() {
        bail!(
            "{}: field `uplink.collectors`: at least one collector is needed to run",
            config.display()
        );
    }
    let cert = read(&u.cert_file, "the agent certificate")?;
    // Transport settings (dead-peer detection) are the uplink's, from dead_after.
    let tls = cordon_wire::transport::client_config(
        &read(&u.ca_file, "the collector CA")?,
        &cert,
        &read(&u.key_file, "the agent key")?,
    )
    .context("TLS set-up (enroll the agent first)")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    // The collectors' addresses now, for the isolation's exceptions (names are looked up
    // again at every connection round, and the enforcer learns each address found).
    let known = KnownAddrs::default();
    let start_addrs: Vec<_> = rt
        .block_on(known.resolve(&collectors))
        .into_iter()
        .map(|c| c.addr)
        .collect();
    let spool = Spool::open(&u.spool_dir, u.spool_max_bytes)?;
    let host = if cfg.host_name.is_empty() {
        host_name()
    } else {
        cfg.host_name.clone()
    };
    let agent_id = crate::enroll::agent_id(&cert).unwrap_or_else(|| {
        tracing::warn!(cert = %u.cert_file.display(), "no common name in the agent certificate; the host name picks the first collector");
        host.clone()
    });
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    // Isolation first: a persisted one is in force again before anything connects out.
    let enforcer = crate::enforce::open(&cfg)?;
    let isolation = Arc::new(crate::enforce::IsolationView::default());
    let commands: Box<dyn crate::uplink::CommandHandler> = match &enforcer {
        Some(enf) => {
            let exc = crate::enforce::exceptions(&start_addrs, &cfg.enforcer);
            crate::enforce::restore(enf, &exc, &isolation)?;
            Box::new(crate::enforce::EnforcerHandler {
                enforcer: enf.clone(),
                exceptions: exc,
                view: isolation.clone(),
                known: known.clone(),
            })
        }
        None => Box::new(crate::uplink::NoEnforcer),
    };
    let (inventory_tx, inventory_rx) = tokio::sync::watch::channel(None);
    let mut uplink = Uplink {
        inventory: inventory_rx,
        collectors,
        agent_id,
        dead_after: u.dead_after(),
        known,
        tls,
        identity: Identity {
            host_name: host.clone(),
            // Set to the capture that actually runs once it has started.
            capture: String::new(),
            boot_id,
        },
        spool,
        backoff: Backoff::new(Duration::from_millis(500), Duration::from_secs(30)),
        stats: Default::default(),
        commands,
        isolation: isolation.clone(),
    };
    let (out, lines) = Output::channel(cfg.capture.output_queue);
    let (batches_tx, batches_rx) = mpsc::channel(64);
    let (max, every) = (
        u.batch_max_records,
        Duration::from_millis(u.batch_interval_ms),
    );
    let view = isolation.clone();
    let stages = Stages(vec![
        ("capture", Progress::default()),
        ("batcher", Progress::default()),
    ]);
    let batcher_progress = stages.0[1].1.clone();
    let batch_thread = std::thread::Builder::new()
        .name("cordon-batcher".into())
        .spawn(move || batcher(lines, batches_tx, max, every, &view, batcher_progress))
        .context("starting the batcher")?;
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    // Refused traffic from the enforcer, attributed by the capture's process cache.
    let (attribute_tx, attribute_rx) = mpsc::channel(16);
    let settings = Settings {
        host: Arc::from(host.as_str()),
        cgroup: (!cfg.capture.cgroup_path.as_os_str().is_empty())
            .then(|| cfg.capture.cgroup_path.clone()),
        capture: cfg.capture.clone(),
        stats_on_exit: true,
        selftest_connect: None,
        started: Some(started_tx),
        attribute: Some(attribute_rx),
        progress: stages.0[0].1.clone(),
    };
    let poll_interval = Duration::from_millis(cfg.capture.poll_interval_ms);
    rt.block_on(async move {
        let uplink_task = tokio::spawn(async move {
            // Connect once the capture runs, so the Hello names it; if it never starts,
            // the batches channel closes and the uplink ends at once.
            if let Ok(capture) = started_rx.await {
                uplink.identity.capture = capture.into();
                // Capture running, uplink starting: ready for systemd (Type=notify), and
                // the watchdog is fed from now on while the pipeline makes progress.
                watchdog::ready(capture);
                tokio::spawn(watchdog::run(stages, poll_interval.max(every)));
            }
            let res = uplink.run(batches_rx).await;
            (res, uplink)
        });
        // Host facts now and every minute; sent when they change.
        let inventory_host = host.clone();
        let inventory_task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                let h = inventory_host.clone();
                let Ok(inv) = tokio::task::spawn_blocking(move || crate::inventory::collect(&h)).await
                else {
                    continue;
                };
                inventory_tx.send_if_modified(|cur| {
                    let changed = cur.as_ref() != Some(&inv);
                    if changed {
                        *cur = Some(inv);
                    }
                    changed
                });
            }
        });
        let ticker = enforcer.map(|e| {
            let (out, host) = (out.clone(), Arc::from(host.as_str()));
            tokio::spawn(crate::enforce::supervise(e, isolation, out, attribute_tx, host))
        });
        let stop = Stop::on_signals(None)?;
        let captured = capture::run(settings, out, stop).await;
        watchdog::stopping();
        inventory_task.abort();
        if let Some(t) = ticker {
            t.abort();
        }
        // The capture dropped its queue: the batcher flushes and closes the uplink's input.
        let (sent, uplink) = uplink_task.await.context("uplink task")?;
        tracing::info!(stats = ?uplink.stats, pending = uplink.spool.pending_batches(), drops = ?uplink.spool.drops, "uplink stopped");
        captured.and(sent)
    })?;
    let _ = batch_thread.join();
    Ok(())
}
