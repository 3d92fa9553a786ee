//! systemd readiness and watchdog (`Type=notify`, `WatchdogSec=`) for `cordon-agent run`.
//!
//! READY=1 is sent once the capture runs and the uplink has started; WATCHDOG=1 only while
//! the pipeline makes progress: every stage that must keep moving (the capture's periodic
//! poll, the batcher that feeds the uplink) bumps its own [`Progress`] counter, and the
//! watchdog task feeds systemd only when each counter advanced since its last check. A
//! stuck stage therefore lets the watchdog expire and systemd restarts the agent.
//!
//! Everything here is a no-op when the agent does not run under systemd (no
//! `NOTIFY_SOCKET`, no `WATCHDOG_USEC`).
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use sd_notify::NotifyState;

/// A counter a pipeline stage bumps each time it does a round of work.
#[derive(Clone, Debug, Default)]
pub struct Progress(Arc<AtomicU64>);

impl Progress {
    /// One more round of work done.
    pub fn beat(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn value(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The stages watched, by name (the name appears in the log when one stalls).
#[derive(Clone, Debug, Default)]
pub struct Stages(pub Vec<(&'static str, Progress)>);

impl Stages {
    /// Current value of every counter, in order.
    pub fn snapshot(&self) -> Vec<u64> {
        self.0.iter().map(|(_, p)| p.value()).collect()
    }

    /// The first stage whose counter did not move between `before` and `now`.
    pub fn stalled(&self, before: &[u64], now: &[u64]) -> Option<&'static str> {
        self.0
            .iter()
            .zip(before.iter().zip(now))
            .find(|(_, (b, n))| n <= b)
            .map(|((name, _), _)| *name)
    }
}

fn notify(state: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!(error = %e, "could not notify systemd");
    }
}

/// Tells systemd the agent is up (capture running, uplink started).
pub fn ready(capture: &str) {
    notify(&[
        NotifyState::Ready,
        NotifyState::Status(&format!(
            "capturing ({capture}), streaming to the collector"
        )),
    ]);
}

/// Set once the agent shuts down: the watchdog is not fed any more.
static STOPPING: AtomicBool = AtomicBool::new(false);

/// Tells systemd the agent is shutting down, and stops feeding the watchdog.
pub fn stopping() {
    STOPPING.store(true, Ordering::Relaxed);
    notify(&[NotifyState::Stopping]);
}

/// How often progress is checked for a watchdog timeout: half of it, as sd_watchdog_enabled(3)
/// advises, so one late check does not cost a restart.
pub fn check_interval(timeout: Duration) -> Duration {
    (timeout / 2).max(Duration::from_millis(1))
}

/// Feeds the systemd watchdog while every stage progresses; returns at once when systemd
/// set no watchdog. `slowest_round` is the longest a healthy stage may go without a beat
/// (the capture's poll interval); a warning says so when the watchdog is too short for it.
pub async fn run(stages: Stages, slowest_round: Duration) {
    let Some(timeout) = sd_notify::watchdog_enabled() else {
        return;
    };
    let every = check_interval(timeout);
    if slowest_round >= every {
        tracing::warn!(
            watchdog = ?timeout,
            round = ?slowest_round,
            "WatchdogSec is too short for capture.poll_interval_ms: systemd will restart the agent; make it more than twice the poll interval"
        );
    }
    tracing::info!(watchdog = ?timeout, check_every = ?every, "systemd watchdog enabled");
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut before = stages.snapshot();
    let mut stalled_logged = false;
    loop {
        tick.tick().await;
        if STOPPING.load(Ordering::Relaxed) {
            return;
        }
        let now = stages.snapshot();
        match stages.stalled(&before, &now) {
            None => {
                notify(&[NotifyState::Watchdog]);
                stalled_logged = false;
            }
            Some(stage) if !stalled_logged => {
                tracing::error!(
                    stage,
                    "no progress since the last watchdog check: not feeding the systemd watchdog"
                );
                stalled_logged = true;
            }
            Some(_) => {}
        }
        before = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_stages_must_advance() {
        let (a, b) = (Progress::default(), Progress::default());
        let stages = Stages(vec![("capture", a.clone()), ("batcher", b.clone())]);
        let t0 = stages.snapshot();
        a.beat();
        let t1 = stages.snapshot();
        assert_eq!(stages.stalled(&t0, &t1), Some("batcher"));
        b.beat();
        b.beat();
        let t2 = stages.snapshot();
        assert_eq!(stages.stalled(&t1, &t2), Some("capture"));
        a.beat();
        b.beat();
        let t3 = stages.snapshot();
        assert_eq!(stages.stalled(&t2, &t3), None);
        assert_eq!(stages.stalled(&t3, &t3), Some("capture"));
    }

    #[test]
    fn checks_twice_per_timeout() {
        assert_eq!(
            check_interval(Duration::from_secs(30)),
            Duration::from_secs(15)
        );
        assert_eq!(check_interval(Duration::ZERO), Duration::from_millis(1));
    }
}
