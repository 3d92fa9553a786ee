//! `cordon-collector run`: the CA, the store, the ingest endpoint and the API, until a
//! signal.
use std::{
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::Context;

use crate::{
    api::{self, ApiState},
    cluster::{
        membership::{Health, Membership},
        node::{CA_NAME, Location},
    },
    config::CollectorConfig,
    ingest::{self, FlowIntake, Ingest, Live, WriterCompliance},
    metrics::Metrics,
    outputs::{Sink, Wake, dispatch::Dispatcher, hec::HecSink, kafka::KafkaSink},
    pki,
    policy::state::PolicyState,
    store::{Store, postgres::PgStore},
};

/// What start-up opens synchronously (off the async threads: a PostgreSQL connection
/// must not be made on one).
struct Opened {
    ca: pki::Ca,
    store: Arc<Mutex<Store>>,
    api_store: Arc<Mutex<Store>>,
    outputs_store: Arc<Mutex<Store>>,
    engine_store: Arc<Mutex<Store>>,
    beat_store: Arc<Mutex<Store>>,
    policy: Arc<PolicyState>,
}

fn open_all(cfg: &CollectorConfig, at: &Location) -> anyhow::Result<Opened> {
    if let Location::Sqlite(db) = at
        && let Some(dir) = db.parent()
    {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the data directory {}", dir.display()))?;
    }
    let open = || {
        at.open()
            .map(|s| Arc::new(Mutex::new(s)))
            .with_context(|| format!("opening the store ({})", at.describe()))
    };
    // The first connection migrates the schema (under a lock, on PostgreSQL).
    let store = open()?;
    let ca = match at {
        Location::Sqlite(_) => pki::load_or_create(&cfg.data_dir.join("pki"), CA_NAME)?,
        Location::Postgres(pg) => {
            let mut s = PgStore::connect(pg)
                .with_context(|| format!("opening the store ({})", at.describe()))?;
            crate::cluster::node::shared_ca(&mut s, &cfg.data_dir)?
        }
    };
    let policy = PolicyState::new();
    match store.lock() {
        Ok(s) => policy.reload(&**s)?,
        Err(_) => anyhow::bail!("store lock poisoned"),
    }
    Ok(Opened {
        ca,
        store,
        // The API reads through its own connection, so it does not queue behind ingest.
        api_store: open()?,
        outputs_store: open()?,
        engine_store: open()?,
        beat_store: open()?,
        policy,
    })
}

pub async fn run(cfg: CollectorConfig) -> anyhow::Result<()> {
    let node = cfg.node_name();
    let at = match &cfg.cluster {
        None => Location::Sqlite(cfg.data_dir.join("cordon.db")),
        Some(c) => Location::Postgres(c.pg_config(&node).map_err(|e| anyhow::anyhow!(e))?),
    };
    let opened = {
        let (cfg, at) = (cfg.clone(), at.clone());
        tokio::task::spawn_blocking(move || open_all(&cfg, &at)).await??
    };
    let Opened {
        ca,
        store,
        api_store,
        outputs_store,
        engine_store,
        beat_store,
        policy,
    } = opened;
    let console_key = Arc::new(crate::console::session::key_from_ca(&ca.key_pem()));
    let ca = Arc::new(ca);
    let (cert, key) = ca.issue_server(&cfg.server_names)?;
    // Enrolling agents check the CA, sent after the collector's own certificate, against
    // the fingerprint they were given.
    let chain = format!("{cert}{}", ca.cert_pem);
    let tls = cordon_wire::transport::server_config(&ca.cert_pem, &chain, &key)?;
    let endpoint = quinn::Endpoint::server(tls, cfg.listen)
        .with_context(|| format!("listening on {} (udp)", cfg.listen))?;
    let listener = tokio::net::TcpListener::bind(cfg.api.listen)
        .await
        .with_context(|| format!("api.listen {} (tcp)", cfg.api.listen))?;
    let metrics = Arc::new(Metrics::new());
    let metrics_for_outputs = metrics.clone();
    let health = Arc::new(Health::default());
    let live = Arc::new(Live::default());
    let live_for_response = live.clone();
    if let Some(ctx) = policy.current() {
        tracing::info!(version = ctx.version, name = %ctx.policy.name, "published policy in force");
    }
    let compliance = WriterCompliance {
        policy: policy.clone(),
        alerts: cfg.alerts.clone(),
        outbox: Arc::new(Wake::default()),
    };
    let stop_outputs = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (flows, cluster_threads) = match (&cfg.cluster, &at) {
        (Some(c), Location::Postgres(pg)) => {
            crate::cluster::node::start(c, &node, pg, &live, &compliance, &metrics, &stop_outputs)
                .await?
        }
        _ => (FlowIntake::Store, Vec::new()),
    };
    tracing::info!(
        listen = %endpoint.local_addr()?,
        api = %listener.local_addr()?,
        node = %node,
        store = %at.describe(),
        ca_fingerprint = %ca.fingerprint(),
        "collector listening"
    );
    let ingest = tokio::spawn(ingest::serve(
        endpoint.clone(),
        Ingest {
            store: store.clone(),
            ca,
            metrics: metrics.clone(),
            live: live.clone(),
            agent_cert_days: cfg.agent_cert_days,
            compliance: compliance.clone(),
            flows,
            node: node.clone(),
            health: health.clone(),
        },
    ));
    let (stop_api, api_stopped) = tokio::sync::oneshot::channel::<()>();
    let api = tokio::spawn(api::serve(
        listener,
        ApiState {
            store: api_store,
            live,
            metrics,
            metrics_need_token: cfg.api.metrics_need_token,
            policy,
            node: node.clone(),
            clustered: cfg.cluster.is_some(),
            console_key,
        },
        async {
            let _ = api_stopped.await;
        },
    ));
    let outputs = start_outputs(
        &cfg,
        outputs_store,
        &compliance,
        &metrics_for_outputs,
        &stop_outputs,
    )?;
    let engine = start_response(
        &cfg,
        engine_store,
        &live_for_response,
        &compliance,
        &stop_outputs,
    )?;
    let retention = tokio::spawn(retention(store, cfg.retention_hours, node.clone()));
    let beat_metrics = metrics_for_outputs.clone();
    let heartbeat = Membership {
        store: beat_store,
        node: node.clone(),
        agent_addr: endpoint.local_addr()?.to_string(),
        api_addr: cfg.api.listen.to_string(),
        health,
        stats: Box::new(move || node_stats(&beat_metrics)),
    }
    .spawn(stop_outputs.clone())?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("stopping");
    endpoint.close(0u32.into(), b"collector stopping");
    let _ = stop_api.send(());
    ingest.abort();
    retention.abort();
    let _ = tokio::time::timeout(Duration::from_secs(5), api).await;
    endpoint.wait_idle().await;
    stop_outputs.store(true, std::sync::atomic::Ordering::Relaxed);
    compliance.outbox.notify();
    let threads = outputs
        .into_iter()
        .chain(engine)
        .chain([heartbeat])
        .chain(cluster_threads);
    for t in threads {
        let _ = tokio::task::spawn_blocking(move || t.join()).await;
    }
    Ok(())
}

/// The playbook engine, when a playbook directory is configured. A playbook that does not
/// validate is skipped with an error naming its file, line and reason (`cordon-collector
/// validate` refuses it); the others run.
fn start_response(
    cfg: &CollectorConfig,
    store: Arc<Mutex<Store>>,
    live: &Arc<Live>,
    compliance: &WriterCompliance,
    stop: &Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<Option<std::thread::JoinHandle<()>>> {
    let r = &cfg.response;
    if r.playbook_dir.as_os_str().is_empty() {
        return Ok(None);
    }
    let integrations = crate::response::connect::integrations(r)?;
    let (playbooks, errors) =
        crate::response::playbook::load_dir(&r.playbook_dir, &integrations.available());
    for e in &errors {
        tracing::error!(error = %e, "playbook refused");
    }
    for p in &playbooks {
        tracing::info!(playbook = %p.name, steps = p.steps.len(), "playbook loaded");
    }
    let engine = crate::response::engine::Engine {
        store,
        live: live.clone(),
        playbooks,
        integrations,
        outbox: compliance.outbox.clone(),
        alerts: cfg.alerts.clone(),
        public_url: (!r.public_url.is_empty()).then(|| r.public_url.clone()),
        clock: Box::new(crate::ingest::now_ns),
        node: cfg.node_name(),
    };
    Ok(Some(engine.spawn(stop.clone(), compliance.outbox.clone())?))
}

/// One dispatcher thread per configured output.
fn start_outputs(
    cfg: &CollectorConfig,
    store: Arc<Mutex<Store>>,
    compliance: &WriterCompliance,
    metrics: &Arc<Metrics>,
    stop: &Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<Vec<std::thread::JoinHandle<()>>> {
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    if let Some(hec) = &cfg.outputs.hec {
        sinks.push(Box::new(HecSink::new(hec.clone()).context("outputs.hec")?));
    }
    if let Some(kafka) = &cfg.outputs.kafka {
        sinks.push(Box::new(
            KafkaSink::new(kafka).map_err(|e| anyhow::anyhow!("outputs.kafka: {e}"))?,
        ));
    }
    let dispatcher = Dispatcher {
        node: cfg.node_name(),
        store,
        wake: compliance.outbox.clone(),
        metrics: metrics.clone(),
        stop: stop.clone(),
        // The playbook engine reads the outbox too: entries stay until it has them.
        all_sinks: sinks
            .iter()
            .map(|s| s.name())
            .chain(
                (!cfg.response.playbook_dir.as_os_str().is_empty())
                    .then_some(crate::response::engine::SINK),
            )
            .collect(),
    };
    let mut threads = Vec::new();
    for s in sinks {
        threads.push(dispatcher.spawn(s)?);
    }
    if threads.is_empty() {
        tracing::info!("no outputs configured: alerts are kept in the store only");
    }
    Ok(threads)
}

/// This node's figures in its heartbeat (what `cordon cluster status` shows).
fn node_stats(m: &Metrics) -> serde_json::Value {
    let rebalances: u64 = ["assign", "revoke", "error"]
        .into_iter()
        .map(|reason| {
            m.worker_rebalances
                .get_or_create(&crate::metrics::Reason { reason })
                .get()
        })
        .sum();
    serde_json::json!({
        "agents_connected": m.agents_connected.get(),
        "worker_partitions": m.worker_partitions.get(),
        "worker_lag": m.worker_lag.get(),
        "worker_rebalances": rebalances,
        "batches_stored": m.batches_stored.get(),
        "batches_appended": m.batches_appended.get(),
        "records_stored": m.records_stored.get(),
        "records_appended": m.records_appended.get(),
    })
}

/// Deletes flows past the retention period, on one node of a cluster at a time (lease
/// `retention`).
async fn retention(store: ingest::SharedStore, hours: u64, node: String) {
    let mut tick = tokio::time::interval(Duration::from_secs(600));
    loop {
        tick.tick().await;
        let keep = Duration::from_secs(hours * 3600);
        let before = SystemTime::now()
            .checked_sub(keep)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as u64);
        let (store, node) = (store.clone(), node.clone());
        let res = tokio::task::spawn_blocking(move || match store.lock() {
            Ok(mut s) => {
                let now = crate::ingest::now_ns();
                // Held for a whole round: the holder keeps it while it beats.
                let ttl = crate::cluster::ns(Duration::from_secs(900));
                match s.try_lease("retention", &node, now, ttl) {
                    Ok(true) => s.apply_retention(before).map_err(|e| e.to_string()),
                    Ok(false) => Ok(0),
                    Err(e) => Err(e.to_string()),
                }
            }
            Err(_) => Err("store lock poisoned".into()),
        })
        .await;
        match res {
            Ok(Ok(n)) if n > 0 => tracing::info!(deleted = n, "retention"),
            Ok(Err(e)) => tracing::warn!(error = %e, "retention failed"),
            _ => {}
        }
    }
}
