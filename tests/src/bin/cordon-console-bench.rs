//! Console page times on a large store: the synthetic data center of the learning
//! benchmark (`cordon_tests::synth_dc`, 1,000 hosts) writes 10 million flow records into a
//! SQLite store file; then the collector's API and console (the same router the collector
//! serves, in this process, release build) answer on loopback and each screen is fetched
//! over HTTP with a signed-in session, sequentially, `--requests` times: p50, p95 and max
//! of the whole request (server render + transfer).
//!
//!   cordon-console-bench [--flows 10000000] [--hosts 1000] [--db console-bench.sqlite] [--reuse] [--requests 40]
use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use clap::Parser;
use cordon_collector::{
    api::{ApiState, NewToken, create_token, serve},
    console::session,
    ingest::Live,
    metrics::Metrics,
    policy::state::PolicyState,
    store::Store,
};
use cordon_tests::synth_dc::{T0, dc, generate};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 10_000_000)]
    flows: u64,
    #[arg(long, default_value_t = 1000)]
    hosts: usize,
    /// The store file (created; with --reuse an existing one is used as it is).
    #[arg(long, default_value = "console-bench.sqlite")]
    db: PathBuf,
    #[arg(long)]
    reuse: bool,
    /// Requests per page.
    #[arg(long, default_value_t = 40)]
    requests: usize,
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn rfc3339(ns: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_nanos(ns)).to_string()
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let d = dc(a.hosts);
    if !a.reuse {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", a.db.display()));
        }
        let mut store = Store::open(&a.db)?;
        let t = Instant::now();
        let n = generate(&d, &mut store, a.flows)?;
        println!(
            "generated {n} flow records for {} hosts in {:.1} s",
            d.hosts.len(),
            t.elapsed().as_secs_f64()
        );
    }
    let mut store = Store::open(&a.db)?;
    let token = create_token(
        &mut store,
        &NewToken {
            name: "bench".into(),
            scope: "admin".into(),
            expires_in: Some("1h".into()),
            uses: None,
        },
    )
    .map_err(|e| anyhow::anyhow!("token: {}", e.message()))?
    .token;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let key = Arc::new(session::key_from_ca("console bench"));
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let base = format!("http://{}", listener.local_addr()?);
    let state = ApiState {
        store: Arc::new(Mutex::new(store)),
        live: Arc::new(Live::default()),
        metrics: Arc::new(Metrics::new()),
        metrics_need_token: false,
        policy: PolicyState::new(),
        node: "bench".into(),
        clustered: false,
        console_key: key.clone(),
    };
    rt.spawn(serve(listener, state, std::future::pending()));
    let hash = cordon_collector::tokens::hash(&token);
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let cookie = format!("{}={}", session::COOKIE, session::issue(&key, &hash, now_s));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let (web, batch) = (&d.hosts[d.apps[0][0][0]], &d.hosts[d.batch[0]]);
    let hour = 3_600_000_000_000u64;
    let pages: Vec<(String, String)> = vec![
        ("hosts (all)".into(), "/console/hosts".into()),
        ("one host".into(), format!("/console/hosts/{}", web.agent)),
        ("flows, newest 100".into(), "/console/flows".into()),
        (
            "flows of one host".into(),
            format!("/console/flows?host={}", web.agent),
        ),
        ("flows, port 5432".into(), "/console/flows?port=5432".into()),
        (
            "flows, one remote IP".into(),
            format!("/console/flows?remote_ip={}", batch.ip),
        ),
        (
            "flows, one executable".into(),
            "/console/flows?exe=/usr/sbin/nginx".into(),
        ),
        (
            "flows, an hour's window".into(),
            format!(
                "/console/flows?since={}&until={}",
                rfc3339(T0 + 12 * hour),
                rfc3339(T0 + 13 * hour)
            ),
        ),
        (
            "flows, host + port + window".into(),
            format!(
                "/console/flows?host={}&port=9100&since={}&until={}",
                web.agent,
                rfc3339(T0 + 12 * hour),
                rfc3339(T0 + 13 * hour)
            ),
        ),
        (
            "flows, a day's window".into(),
            format!(
                "/console/flows?since={}&until={}",
                rfc3339(T0),
                rfc3339(T0 + 24 * hour)
            ),
        ),
        (
            "flows of one host, a day's window".into(),
            format!(
                "/console/flows?host={}&since={}&until={}",
                web.agent,
                rfc3339(T0),
                rfc3339(T0 + 24 * hour)
            ),
        ),
        (
            "flows, a page in the middle (Older →)".into(),
            format!("/console/flows?before={}.{}", T0 + 12 * hour, i64::MAX),
        ),
        (
            "flows, all but one executable".into(),
            "/console/flows?not_exe=/usr/sbin/nginx".into(),
        ),
        (
            "flows, verdict escaped".into(),
            "/console/flows?verdict=escaped".into(),
        ),
        (
            "flows, an executable nobody runs".into(),
            "/console/flows?exe=/tmp/x".into(),
        ),
        (
            "flows, a protocol nobody uses".into(),
            "/console/flows?proto=icmpv6".into(),
        ),
        ("flows, UDP".into(), "/console/flows?proto=udp".into()),
        (
            "flows, a port nobody uses".into(),
            "/console/flows?port=31337".into(),
        ),
        (
            "one flow, whole record".into(),
            format!("/console/flows/{}", a.flows / 2),
        ),
        ("alerts".into(), "/console/alerts".into()),
        ("policy versions".into(), "/console/policy".into()),
        ("response".into(), "/console/response".into()),
        ("audit".into(), "/console/audit".into()),
    ];
    println!("| page | request | rows | p50 | p95 | max |\n|---|---|---|---|---|---|");
    let mut worst = Duration::ZERO;
    for (name, path) in &pages {
        let mut lat = Vec::new();
        let mut rows = 0;
        for i in 0..=a.requests {
            let t = Instant::now();
            let mut res = agent
                .get(&format!("{base}{path}"))
                .header("Cookie", &cookie)
                .call()?;
            let status = res.status().as_u16();
            let body = res.body_mut().read_to_string()?;
            let d = t.elapsed();
            anyhow::ensure!(status == 200, "{path}: {status}: {body}");
            // Flow rows, or else the table's rows (the flow screen has other tables too).
            rows = match body.matches("<tr data-port").count() {
                0 if !body.contains("flow-rows") => body.matches("<tr").count().saturating_sub(1),
                n => n,
            };
            // The first request warms SQLite's page cache; it is not counted.
            if i > 0 {
                lat.push(d);
            }
        }
        lat.sort();
        let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
        worst = worst.max(pct(&lat, 0.95));
        println!(
            "| {name} | `{path}` | {rows} | {} | {} | {} |",
            ms(pct(&lat, 0.5)),
            ms(pct(&lat, 0.95)),
            ms(*lat.last().unwrap_or(&Duration::ZERO))
        );
    }
    println!("worst p95: {:.1} ms", worst.as_secs_f64() * 1e3);
    Ok(())
}
