//! The detection-latency probe the two detection benchmarks share (`cordon-detect-bench`
//! on one collector, `cordon-cluster-detect-bench` on a cluster): a policy that allows
//! nothing from the clients to the web group but tcp/8080, a connect() from a client host
//! to a new port each time, a consumer following the alerts topic that notes when each
//! violation's alert arrived, and the percentile report.
use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::{
    fleet::{Fleet, FleetHost},
    in_netns,
    kafka_broker::{ALERTS_TOPIC, Broker},
};

/// web (role=web) may be reached by clients (role=client) on tcp/8080 only; anything else
/// is a HIGH alert.
pub const POLICY: &str = "name: bench\ngroups:\n  web:\n    label: {role: web}\n  clients:\n    label: {role: client}\nrules:\n  - name: clients-to-web\n    consumer: clients\n    provider: web\n    ports: [tcp/8080]\n    action: allow\ncatch_all:\n  - action: deny\n    severity: HIGH\n";

/// How long a violation's alert may take before it counts as missed.
pub const ALERT_TIMEOUT: Duration = Duration::from_secs(10);

/// Follows the alerts topic from inside namespace `ns` and notes the arrival time of the
/// first alert for each remote port of a flow from host `from`.
pub struct KafkaAlerts {
    seen: Arc<Mutex<HashMap<u64, Instant>>>,
    stop: Arc<AtomicBool>,
    follower: Option<JoinHandle<()>>,
}

impl KafkaAlerts {
    pub fn follow(broker: &Broker, ns: &str, from: &str) -> Self {
        let seen: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st, from) = (seen.clone(), stop.clone(), from.to_string());
        let follower = in_netns(ns, || {
            broker.follow(ALERTS_TOPIC, st, move |_, v| {
                let now = Instant::now();
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(v) {
                    let d = &v["event"]["alert_details_json"];
                    if d["host"]["name"] == from.as_str()
                        && let Some(p) = d["flow"]["remote_port"].as_u64()
                        && let Ok(mut m) = s.lock()
                    {
                        m.entry(p).or_insert(now);
                    }
                }
            })
        });
        KafkaAlerts {
            seen,
            stop,
            follower: Some(follower),
        }
    }

    /// Time from `start` to the arrival of the alert for `port`, waiting at most
    /// `ALERT_TIMEOUT` after `start`.
    pub fn wait(&self, port: u16, start: Instant) -> Option<Duration> {
        poll(start, || {
            self.seen
                .lock()
                .ok()
                .and_then(|m| m.get(&u64::from(port)).copied())
                .map(|t| t.duration_since(start))
        })
    }
}

impl Drop for KafkaAlerts {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(f) = self.follower.take() {
            let _ = f.join();
        }
    }
}

/// Polls `f` every 2 ms until it gives a value or `ALERT_TIMEOUT` has passed since `start`.
pub fn poll(start: Instant, mut f: impl FnMut() -> Option<Duration>) -> Option<Duration> {
    loop {
        if let Some(d) = f() {
            return Some(d);
        }
        if start.elapsed() > ALERT_TIMEOUT {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// One violation: a process on `from` (in its cgroup) connects to `to_ip:port`. Nothing
/// listens there: the SYN goes out and is refused; the attempt is the flow.
pub fn violate(fleet: &Fleet, from: &FleetHost, to_ip: &str, port: u16) {
    let _ = fleet.run_in(
        &from.ns,
        Some(&from.cgroup),
        &[
            "python3",
            "-c",
            &format!(
                "import socket\ns=socket.socket()\ns.settimeout(2)\ntry: s.connect(('{to_ip}', {port}))\nexcept OSError: pass"
            ),
        ],
    );
}

/// The `p` quantile of sorted latencies (nearest rank).
pub fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Prints `what`'s latency percentiles over `violations` attempts; returns how many of
/// them got no alert.
pub fn report(what: &str, mut lat: Vec<Duration>, violations: u16) -> usize {
    let missed = usize::from(violations).saturating_sub(lat.len());
    lat.sort();
    let Some(max) = lat.last().copied() else {
        println!("{what}: no alert arrived");
        return missed;
    };
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("detection latency, {what} ({violations} violations, {missed} missed):");
    println!(
        "  p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(pct(&lat, 0.5)),
        ms(pct(&lat, 0.9)),
        ms(pct(&lat, 0.99)),
        ms(max)
    );
    missed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let l: Vec<_> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(pct(&l, 0.5), Duration::from_millis(51));
        assert_eq!(pct(&l, 0.99), Duration::from_millis(99));
        assert_eq!(pct(&l, 1.0), Duration::from_millis(100));
        assert_eq!(
            pct(&[Duration::from_millis(7)], 0.9),
            Duration::from_millis(7)
        );
    }

    #[test]
    fn report_counts_the_missed() {
        let l = vec![Duration::from_millis(3), Duration::from_millis(1)];
        assert_eq!(report("test", l, 5), 3);
        assert_eq!(report("test", Vec::new(), 2), 2);
    }
}
