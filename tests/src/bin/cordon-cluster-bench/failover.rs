//! `failover`: a 3-node cluster under a paced load; the node with the most agents is
//! killed with SIGKILL, the time until every agent that was on it has a Welcome from
//! another node and until the first (and the last) of them has a new batch stored in
//! PostgreSQL is taken, the node is restarted, and again. At the end every batch must be
//! stored exactly once.
use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use anyhow::bail;
use clap::Args;
use cordon_tests::{
    bench_check::{Stored, check},
    bench_rig::{Kind, Rig, pg_connect},
    simagent::{
        Window,
        roam::{NOWHERE, Placement, RoamLoad},
    },
};
use serde_json::json;

use super::{Common, Swarm, quantile};

#[derive(Args, Clone, Debug)]
pub struct Opts {
    #[command(flatten)]
    common: Common,
    /// Kills (each followed by a restart of the killed node).
    #[arg(long, default_value_t = 12)]
    kills: usize,
    /// Simulated agents.
    #[arg(long, default_value_t = 30)]
    agents: usize,
    /// Records per batch.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Records/s offered in total.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// Seconds of load before the first kill, and after each restart.
    #[arg(long, default_value_t = 5)]
    settle: u64,
}

/// One kill.
#[derive(Debug)]
struct Kill {
    victim: String,
    moved: usize,
    /// Kill → the first and the last moved agent noticing its session was dead.
    noticed_s: (f64, f64),
    /// Kill → every moved agent welcomed by another node.
    reconnected_s: f64,
    /// Kill → the first and the last moved agent's first new batch stored.
    stored_s: (f64, f64),
}

pub async fn run(o: Opts) -> anyhow::Result<bool> {
    if o.agents == 0 || o.batch == 0 || o.batch > cordon_wire::MAX_BATCH_RECORDS || o.rate == 0 {
        bail!("--agents, --batch (1..=1000) and --rate must be > 0");
    }
    let bin = o.common.collector()?;
    let mut rig = Rig::start(
        Kind::Cluster(3),
        &bin,
        o.common.partitions,
        !o.common.pg_fast,
    )
    .await?;
    let db = rig
        .db
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no database"))?;
    let start = Instant::now();
    let window = Window {
        start,
        from: start,
        until: start + Duration::from_secs(24 * 3600),
    };
    let load = RoamLoad {
        batch: o.batch,
        window: 8,
        batches_per_s: Some(o.rate as f64 / (o.agents * o.batch) as f64),
    };
    let swarm = Swarm::start(
        &rig.ca,
        rig.addrs(),
        o.agents,
        load,
        window,
        o.common.endpoints,
    )
    .await?;
    let mut kills = Vec::new();
    for k in 0..o.kills {
        tokio::time::sleep(Duration::from_secs(o.settle)).await;
        // Everyone placed, then the busiest live node.
        let deadline = Instant::now() + Duration::from_secs(30);
        while swarm
            .placements
            .iter()
            .any(|p| p.node.load(Ordering::Acquire) == NOWHERE)
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut by_node: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (a, p) in swarm.placements.iter().enumerate() {
            by_node
                .entry(p.node.load(Ordering::Acquire))
                .or_default()
                .push(a);
        }
        let Some((victim, moved)) = by_node
            .iter()
            .filter(|(n, _)| **n != NOWHERE)
            .max_by_key(|(_, a)| a.len())
            .map(|(n, a)| (*n, a.clone()))
        else {
            bail!("no agent is connected");
        };
        let before: HashMap<usize, usize> = moved
            .iter()
            .map(|a| (*a, sessions(&swarm.placements[*a])))
            .collect();
        let watched: Vec<(String, Arc<Placement>, usize)> = moved
            .iter()
            .map(|a| {
                (
                    format!("loadgen-{a:04}"),
                    swarm.placements[*a].clone(),
                    before[a],
                )
            })
            .collect();
        eprintln!(
            "kill {}/{}: {} ({} agents on it)",
            k + 1,
            o.kills,
            rig.nodes[victim].name,
            moved.len()
        );
        let t_kill = Instant::now();
        rig.kill(victim);
        let poll_db = db.clone();
        let stored = tokio::task::spawn_blocking(move || stored_times(&poll_db, &watched, t_kill));
        // Every moved agent welcomed elsewhere.
        let mut noticed = Vec::new();
        let mut welcomed = Vec::new();
        let deadline = t_kill + Duration::from_secs(60);
        for a in &moved {
            loop {
                let s = new_session(&swarm.placements[*a], before[a]);
                if let Some(s) = s.filter(|s| s.node != victim) {
                    noticed.push(s.lost_at.map_or(f64::NAN, |l| secs(l, t_kill)));
                    welcomed.push(secs(s.at, t_kill));
                    break;
                }
                if Instant::now() > deadline {
                    bail!("agent {a} did not reconnect within 60 s of the kill");
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        let stored = stored.await??;
        let kill = Kill {
            victim: rig.nodes[victim].name.clone(),
            moved: moved.len(),
            noticed_s: min_max(&noticed),
            reconnected_s: min_max(&welcomed).1,
            stored_s: min_max(&stored),
        };
        eprintln!("  {kill:?}");
        kills.push(kill);
        rig.spawn(victim)?;
        rig.wait(victim).await?;
        if !rig.wait_assigned(victim, Duration::from_secs(30)).await {
            eprintln!(
                "  {} has no partitions 30 s after its restart",
                rig.nodes[victim].name
            );
        }
    }
    eprintln!("draining");
    let (agents, errors) = swarm.finish().await;
    let acked: u64 = agents.iter().map(|a| a.records_acked).sum();
    let counted = {
        let db = db.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<i64> {
            let mut c = pg_connect(&db)?;
            let deadline = Instant::now() + Duration::from_secs(180);
            loop {
                let n: i64 = c.query_one("SELECT count(*) FROM flows", &[])?.get(0);
                if u64::try_from(n).ok() >= Some(acked) || Instant::now() > deadline {
                    return Ok(n);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
        .await??
    };
    eprintln!("{counted} records stored, {acked} acknowledged");
    let warnings = rig.stop_nodes();
    let stored =
        tokio::task::spawn_blocking(move || Stored::postgres(&mut pg_connect(&db)?)).await??;
    let mut chk = check(&stored, &agents, o.batch);
    chk.problems.extend(errors);
    let resent: u64 = agents.iter().map(|a| a.resent).sum();
    drop(tokio::task::spawn_blocking(move || drop(rig)).await);
    report(&o, &kills, resent, &chk, warnings.len());
    Ok(chk.ok())
}

fn report(
    o: &Opts,
    kills: &[Kill],
    resent: u64,
    chk: &cordon_tests::bench_check::Check,
    warnings: usize,
) {
    println!();
    println!(
        "== failover: 3 nodes, {} agents, {} records/s offered ({} records/batch), {} kills",
        o.agents,
        o.rate,
        o.batch,
        kills.len()
    );
    println!(
        "| kill | node | agents moved | noticed (first–last) | all reconnected | first new batch stored | last moved agent's stored |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (i, k) in kills.iter().enumerate() {
        println!(
            "| {} | {} | {} | {:.2}–{:.2} s | {:.2} s | {:.2} s | {:.2} s |",
            i + 1,
            k.victim,
            k.moved,
            k.noticed_s.0,
            k.noticed_s.1,
            k.reconnected_s,
            k.stored_s.0,
            k.stored_s.1
        );
    }
    let col = |f: &dyn Fn(&Kill) -> f64| {
        let mut v: Vec<f64> = kills.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        (quantile(&v, 0.5), quantile(&v, 0.99))
    };
    let rows = [
        (
            "kill → every agent on it reconnected to another node",
            col(&|k| k.reconnected_s),
        ),
        (
            "kill → first new batch of a moved agent stored",
            col(&|k| k.stored_s.0),
        ),
        (
            "kill → every moved agent's new batches stored",
            col(&|k| k.stored_s.1),
        ),
        (
            "(kill → last moved agent noticed the dead session)",
            col(&|k| k.noticed_s.1),
        ),
    ];
    println!();
    println!("| measure ({} kills) | p50 | p99 |", kills.len());
    println!("|---|---|---|");
    for (what, (p50, p99)) in rows {
        println!("| {what} | {p50:.2} s | {p99:.2} s |");
    }
    println!();
    println!("batches sent again to a new node: {resent}");
    println!("loss check: {}", chk.line());
    for p in chk.problems.iter().take(10) {
        println!("  {p}");
    }
    println!("collector warnings: {warnings}");
    if let Some(p) = &o.common.json {
        let doc = json!({
            "agents": o.agents, "rate": o.rate, "batch": o.batch,
            "kills": kills.iter().map(|k| json!({"node": k.victim, "moved": k.moved,
                "noticed_s": [k.noticed_s.0, k.noticed_s.1], "reconnected_s": k.reconnected_s,
                "stored_s": [k.stored_s.0, k.stored_s.1]})).collect::<Vec<_>>(),
            "loss_check": {"ok": chk.ok(), "line": chk.line()},
        });
        let _ = std::fs::write(p, format!("{doc:#}\n"));
    }
}

fn sessions(p: &Placement) -> usize {
    p.sessions.lock().map_or(0, |s| s.len())
}

/// The first session an agent started after its first `before` ones.
fn new_session(p: &Placement, before: usize) -> Option<cordon_tests::simagent::roam::SessionStart> {
    p.sessions.lock().ok()?.get(before).cloned()
}

fn secs(t: Instant, since: Instant) -> f64 {
    t.saturating_duration_since(since).as_secs_f64()
}

fn min_max(v: &[f64]) -> (f64, f64) {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lo, hi)
}

/// Polls PostgreSQL until every watched agent's first new batch after its reconnection
/// is stored (`hosts.last_seq` reached it); returns kill → stored for each (blocking).
fn stored_times(
    db: &cordon_collector::store::postgres::PgConfig,
    watched: &[(String, Arc<Placement>, usize)],
    t_kill: Instant,
) -> anyhow::Result<Vec<f64>> {
    let mut c = pg_connect(db)?;
    let ids: Vec<String> = watched.iter().map(|w| w.0.clone()).collect();
    let mut done: HashMap<String, f64> = HashMap::new();
    let deadline = t_kill + Duration::from_secs(120);
    while done.len() < watched.len() {
        if Instant::now() > deadline {
            bail!("moved agents' new batches not stored within 120 s of the kill");
        }
        let rows = c.query(
            "SELECT agent_id, last_seq FROM hosts WHERE agent_id = ANY($1)",
            &[&ids],
        )?;
        let now = Instant::now();
        let seqs: HashMap<String, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        for (id, p, before) in watched {
            if done.contains_key(id) {
                continue;
            }
            let Some(s) = new_session(p, *before) else {
                continue;
            };
            if seqs
                .get(id)
                .is_some_and(|got| u64::try_from(*got).unwrap_or(0) >= s.first_new_seq)
            {
                done.insert(id.clone(), secs(now, t_kill));
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(done.into_values().collect())
}
