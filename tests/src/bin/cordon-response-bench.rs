//! Time from a violating connect() to isolation in force, when the approval is immediate
//! (root): the response lab (`cordon_tests::response_lab`) with the shipped playbook and
//! the Duo stand-in approving at the first status poll. Each cycle: a violating connection
//! from h2 to a new port on h1 (a new alert key) starts the clock; a probe from h2 to the
//! allowed h1:8080 every 20 ms stops it at its first failure; then the release is approved
//! on the CLI and the next cycle waits until h2 is reachable again. Prints p50 and p99.
//!
//!   cordon-response-bench [--cycles 20]
use std::{
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use clap::Parser;
use cordon_connectors::standin::duo::Behaviour;
use cordon_tests::{
    in_netns,
    response_lab::{ANALYST, ResponseLab},
};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 20)]
    cycles: u16,
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[(((sorted.len() as f64) - 1.0) * p).round() as usize]
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let mut lab = ResponseLab::start("response-bench");
    lab.duo.set_user(ANALYST, Behaviour::ApproveAfter(0));
    let (h1, h2) = (lab.h1(), lab.h2());
    let target: SocketAddr = format!("{}:8080", h1.ip).parse()?;
    let probe = || {
        in_netns(&h2.ns, || {
            TcpStream::connect_timeout(&target, Duration::from_millis(50)).is_ok()
        })
    };
    anyhow::ensure!(probe(), "h2 cannot reach h1 before the benchmark");
    let mut lat = Vec::new();
    for cycle in 0..a.cycles {
        let port = 20000 + cycle;
        let start = Instant::now();
        // Nothing listens there: the SYN and the RST are enough for a flow.
        lab.connect(h2, h1, port, "curl");
        while probe() {
            anyhow::ensure!(
                start.elapsed() < Duration::from_secs(15),
                "cycle {cycle}: h2 still reachable 15 s after the violation"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        lat.push(start.elapsed());
        let run = lab.wait_step(port, Some("ask-release"), 30);
        lab.approve_release(&run);
        lab.wait_step(port, None, 30);
        let back = Instant::now();
        while !probe() {
            anyhow::ensure!(
                back.elapsed() < Duration::from_secs(15),
                "cycle {cycle}: not released"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    lat.sort();
    println!(
        "violating connect() → isolation in force (Duo approves at once), {} cycles:\n  p50 {:.1?}, p90 {:.1?}, p99 {:.1?}, max {:.1?}",
        lat.len(),
        pct(&lat, 0.5),
        pct(&lat, 0.9),
        pct(&lat, 0.99),
        lat[lat.len() - 1]
    );
    lab.stop();
    Ok(())
}
