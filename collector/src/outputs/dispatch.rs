//! The dispatcher: one thread per sink, reading the alert outbox in order from the sink's
//! saved position, delivering batches, and saving the new position only once the sink
//! has accepted them. A retryable failure is retried with exponential backoff (the
//! outbox keeps everything meanwhile); a permanent one is counted as dead-lettered for
//! that sink and skipped. At-least-once: after a crash, a batch delivered but not yet
//! recorded is delivered again; each delivery carries the outbox entry's id as its
//! idempotency key ([`with_delivery_id`]), so consumers can drop the repeat.
//!
//! Each sink's delivery is one job in a cluster: the thread delivers only while it holds
//! the lease `output.<sink>` (renewed by the node's heartbeat), so two nodes never send the
//! same outbox entries; when the holder dies, another node takes the lease over once it
//! expires and resumes from the saved position.
use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use super::{Sink, SinkError, Wake};
use crate::{
    cluster::{LEASE_TTL, ns},
    metrics::{Metrics, SinkLabel},
    store::Store,
};

/// Envelopes per delivery at most.
const BATCH: usize = 500;
/// The outbox is looked at this often even without a wake-up.
const IDLE_POLL: Duration = Duration::from_millis(500);
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

pub struct Dispatcher {
    pub store: Arc<Mutex<Store>>,
    pub wake: Arc<Wake>,
    pub metrics: Arc<Metrics>,
    pub stop: Arc<AtomicBool>,
    /// Every configured sink's name, so delivered entries can be pruned.
    pub all_sinks: Vec<&'static str>,
    /// This collector's node name: the holder of the sinks' leases.
    pub node: String,
}

impl Dispatcher {
    /// Starts the thread for `sink`.
    pub fn spawn(&self, mut sink: Box<dyn Sink>) -> std::io::Result<thread::JoinHandle<()>> {
        let ctx = Ctx {
            store: self.store.clone(),
            wake: self.wake.clone(),
            metrics: self.metrics.clone(),
            stop: self.stop.clone(),
            all: self.all_sinks.clone(),
            node: self.node.clone(),
        };
        thread::Builder::new()
            .name(format!("cordon-out-{}", sink.name()))
            .spawn(move || run(&mut *sink, &ctx))
    }
}

fn sleep_unless_stopped(d: Duration, stop: &AtomicBool) {
    let until = Instant::now() + d;
    while !stop.load(Ordering::Relaxed) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        thread::sleep(left.min(Duration::from_millis(100)));
    }
}

/// The idempotency key of a delivery: the outbox entry's id, the same whichever node
/// delivers it and however often, as the HEC indexed field `cordon_delivery_id` (so also
/// in the Kafka message value, plus a header there). A consumer that sees an id again
/// has a redelivery after a crash between the send and the saved position.
pub fn with_delivery_id(mut env: super::Envelope, id: i64) -> super::Envelope {
    if !env.hec["fields"].is_object() {
        env.hec["fields"] = serde_json::json!({});
    }
    env.hec["fields"]["cordon_delivery_id"] = serde_json::Value::from(id.to_string());
    env
}

struct Ctx {
    store: Arc<Mutex<Store>>,
    wake: Arc<Wake>,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
    all: Vec<&'static str>,
    node: String,
}

/// Whether this node holds (or now took) the sink's lease.
fn hold(store: &Mutex<Store>, lease: &str, node: &str) -> bool {
    let now = crate::ingest::now_ns();
    match store.lock() {
        Ok(mut s) => match s.try_lease(lease, node, now, ns(LEASE_TTL)) {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(lease, error = %e, "taking the output's lease failed");
                false
            }
        },
        Err(_) => false,
    }
}

fn run(sink: &mut dyn Sink, ctx: &Ctx) {
    let (store, wake, metrics, stop, all) = (
        &*ctx.store,
        &*ctx.wake,
        &*ctx.metrics,
        &*ctx.stop,
        ctx.all.as_slice(),
    );
    let name = sink.name();
    let label = SinkLabel { sink: name };
    let lease = format!("output.{name}");
    let mut seen = 0u64;
    let mut backoff = BACKOFF_MIN;
    let mut last_prune = Instant::now();
    let mut holding = false;
    tracing::info!(sink = name, "output started");
    while !stop.load(Ordering::Relaxed) {
        if !hold(store, &lease, &ctx.node) {
            if holding {
                tracing::warn!(sink = name, "output lease lost; another node delivers");
            }
            holding = false;
            sleep_unless_stopped(IDLE_POLL, stop);
            continue;
        }
        if !holding {
            tracing::info!(sink = name, node = %ctx.node, "this node delivers the output");
            holding = true;
        }
        let batch = match store.lock() {
            Ok(s) => s
                .sink_position(name)
                .and_then(|pos| s.outbox_after(pos, BATCH)),
            Err(_) => return,
        };
        let batch = match batch {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(sink = name, error = %e, "reading the outbox failed");
                sleep_unless_stopped(BACKOFF_MIN, stop);
                continue;
            }
        };
        let Some(&(last_id, _)) = batch.last() else {
            wake.wait(&mut seen, IDLE_POLL);
            if last_prune.elapsed() > Duration::from_secs(30) {
                last_prune = Instant::now();
                if let Ok(mut s) = store.lock() {
                    let _ = s.prune_outbox(all);
                }
                // While idle, the health check keeps `output_up` true to the far side.
                let up = match sink.health() {
                    Ok(()) => 1,
                    Err(e) => {
                        tracing::warn!(sink = name, error = %e, "output health check failed");
                        0
                    }
                };
                metrics.sink_up.get_or_create(&label).set(up);
            }
            continue;
        };
        let envelopes: Vec<_> = batch
            .into_iter()
            .map(|(id, e)| with_delivery_id(e, id))
            .collect();
        let n = envelopes.len() as u64;
        match sink.deliver(&envelopes) {
            Ok(()) => {
                backoff = BACKOFF_MIN;
                metrics.sink_delivered.get_or_create(&label).inc_by(n);
                metrics.sink_up.get_or_create(&label).set(1);
                if let Ok(mut s) = store.lock()
                    && let Err(e) = s.set_sink_position(name, last_id, 0)
                {
                    tracing::warn!(sink = name, error = %e, "saving the sink position failed (the batch will be sent again)");
                }
            }
            Err(SinkError::Retryable(e)) => {
                metrics.sink_failures.get_or_create(&label).inc();
                metrics.sink_up.get_or_create(&label).set(0);
                tracing::warn!(sink = name, error = %e, retry_in = ?backoff, pending = n, "output failed; retrying");
                sleep_unless_stopped(backoff, stop);
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
            Err(SinkError::Permanent(e)) => {
                metrics.sink_dead_lettered.get_or_create(&label).inc_by(n);
                tracing::error!(sink = name, error = %e, dropped = n, "output refused a batch for good; dead-lettered");
                if let Ok(mut s) = store.lock() {
                    let _ = s.set_sink_position(name, last_id, n);
                }
            }
        }
    }
    if let Ok(mut st) = store.lock() {
        let _ = st.release_lease(&lease, &ctx.node);
    }
}
