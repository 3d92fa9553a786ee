//! Time to isolation: in the fleet lab (root), `POST /api/v1/hosts/h2/isolate` (through
//! the `cordon` CLI in the collector's namespace), then a probe from h2 tries a TCP
//! connection to h1 every few milliseconds until one fails; the time from the API call
//! to the first failed probe is the figure. Then release, and wait until probes succeed
//! again. Repeated `--cycles` times; prints p50 and p99.
//!
//!   cordon-isolate-bench [--cycles 30] [--backend nftables|ebpf]
use std::{
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use clap::Parser;
use cordon_tests::{
    cluster::{Cluster, ok, stop_agent},
    in_netns, servers_py,
};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 30)]
    cycles: usize,
    /// The agents' enforcer backend.
    #[arg(long, default_value = "nftables", value_parser = ["nftables", "ebpf"])]
    backend: String,
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[(((sorted.len() as f64) - 1.0) * p).round() as usize]
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let mut c = Cluster::start("isolate-bench", 2, "");
    c.enforcer_backend = if a.backend == "ebpf" {
        "ebpf"
    } else {
        "nftables"
    };
    c.enroll_all();
    let (h1, h2) = (c.fleet.host("h1"), c.fleet.host("h2"));
    let agents: Vec<_> = [h1, h2].iter().map(|h| c.start_agent(h, 1)).collect();
    c.fleet.start_server(
        &h1.ns,
        Some(&h1.cgroup),
        &["python3", &servers_py(), "tcp-serve", &h1.ip, "8080"],
        &c.dir.join("server.log"),
    );
    let target: SocketAddr = format!("{}:8080", h1.ip).parse()?;
    // One probe: a TCP connection from h2's namespace, 50 ms to succeed.
    let probe = || {
        in_netns(&h2.ns, || {
            TcpStream::connect_timeout(&target, Duration::from_millis(50)).is_ok()
        })
    };
    anyhow::ensure!(probe(), "h2 cannot reach h1 before isolation");
    let mut lat = Vec::new();
    for cycle in 0..a.cycles {
        let start = Instant::now();
        ok(
            c.cordon_raw(&["isolate", "h2", "--reason", &format!("bench {cycle}")]),
            "isolate",
        );
        while probe() {
            anyhow::ensure!(
                start.elapsed() < Duration::from_secs(10),
                "cycle {cycle}: still reachable 10 s after the isolate call"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        lat.push(start.elapsed());
        ok(c.cordon_raw(&["release", "h2"]), "release");
        let back = Instant::now();
        while !probe() {
            anyhow::ensure!(
                back.elapsed() < Duration::from_secs(10),
                "cycle {cycle}: not reachable 10 s after release"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    for (pid, log) in agents {
        stop_agent(pid, &log, false);
    }
    lat.sort();
    println!(
        "time to isolation (API call via `cordon isolate` → first failing probe from h2), {} cycles:",
        lat.len()
    );
    println!(
        "  p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        pct(&lat, 0.5).as_secs_f64() * 1e3,
        pct(&lat, 0.9).as_secs_f64() * 1e3,
        pct(&lat, 0.99).as_secs_f64() * 1e3,
        lat[lat.len() - 1].as_secs_f64() * 1e3
    );
    Ok(())
}
