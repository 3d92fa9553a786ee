//! `cordon-collector run`: the CA, the store and the ingest endpoint, until a signal.
use std::{
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::Context;

use crate::{config::CollectorConfig, ingest, pki, store::Store};

pub async fn run(cfg: CollectorConfig) -> anyhow::Result<()> {
    let ca = pki::load_or_create(&cfg.data_dir.join("pki"), "Cordon collector CA")?;
    let (cert, key) = ca.issue_server(&cfg.server_names)?;
    let store = Store::open(&cfg.data_dir.join("cordon.db"))
        .with_context(|| format!("opening the store in {}", cfg.data_dir.display()))?;
    let store = Arc::new(Mutex::new(store));
    let tls = cordon_wire::transport::server_config(&ca.cert_pem, &cert, &key)?;
    let endpoint = quinn::Endpoint::server(tls, cfg.listen)
        .with_context(|| format!("listening on {}", cfg.listen))?;
    tracing::info!(listen = %endpoint.local_addr()?, ca_fingerprint = %ca.fingerprint(), "collector listening");
    let ingest = tokio::spawn(ingest::serve(endpoint.clone(), store.clone()));
    let retention = tokio::spawn(retention(store, cfg.retention_hours));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("stopping");
    endpoint.close(0u32.into(), b"collector stopping");
    ingest.abort();
    retention.abort();
    endpoint.wait_idle().await;
    Ok(())
}

async fn retention(store: ingest::SharedStore, hours: u64) {
    let mut tick = tokio::time::interval(Duration::from_secs(600));
    loop {
        tick.tick().await;
        let keep = Duration::from_secs(hours * 3600);
        let before = SystemTime::now()
            .checked_sub(keep)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as u64);
        let store = store.clone();
        let res = tokio::task::spawn_blocking(move || match store.lock() {
            Ok(mut s) => s.apply_retention(before).map_err(|e| e.to_string()),
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
