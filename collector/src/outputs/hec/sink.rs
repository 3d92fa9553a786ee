//! [`HecSink`]: delivers envelopes to Splunk HEC, with retries and indexer acks.
use std::{
    collections::VecDeque,
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    thread,
    time::{Duration, Instant},
};

use super::{
    HecConfig,
    backoff::{Backoff, uuid_v4},
    batch::{self, Request},
    http,
    protocol::{ACK_PATH, CHANNEL_HEADER, EVENT_PATH, HEALTH_PATH, Reply, Verdict},
};
use crate::outputs::{Envelope, Sink, SinkError};

/// What the sink has done since it was created, for the dispatcher's metrics. Shared
/// (`HecSink::counters`) so another thread can read it while the sink works.
#[derive(Debug, Default)]
pub struct HecCounters {
    /// Batches (`deliver` calls) fully accepted (and acked, with `use_ack`).
    pub batches_sent: AtomicU64,
    /// Events accepted by HEC (acked, with `use_ack`); a resent event counts again.
    pub events_sent: AtomicU64,
    /// HTTP requests made to the event endpoint, retries included.
    pub requests_sent: AtomicU64,
    /// Retries after 429/500/503, connection errors and timeouts (event and ack requests).
    pub retries: AtomicU64,
    /// Requests whose ack did not come within `ack_timeout_secs` (each is resent).
    pub acks_timed_out: AtomicU64,
    /// `deliver` calls that ended `Permanent` (the dispatcher dead-letters the batch).
    pub permanent_failures: AtomicU64,
    /// Request body bytes put on the wire (after gzip), retries included.
    pub bytes_sent: AtomicU64,
}

/// A plain copy of [`HecCounters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HecCountersSnapshot {
    pub batches_sent: u64,
    pub events_sent: u64,
    pub requests_sent: u64,
    pub retries: u64,
    pub acks_timed_out: u64,
    pub permanent_failures: u64,
    pub bytes_sent: u64,
}

impl HecCounters {
    pub fn snapshot(&self) -> HecCountersSnapshot {
        HecCountersSnapshot {
            batches_sent: self.batches_sent.load(Relaxed),
            events_sent: self.events_sent.load(Relaxed),
            requests_sent: self.requests_sent.load(Relaxed),
            retries: self.retries.load(Relaxed),
            acks_timed_out: self.acks_timed_out.load(Relaxed),
            permanent_failures: self.permanent_failures.load(Relaxed),
            bytes_sent: self.bytes_sent.load(Relaxed),
        }
    }
}

/// The Splunk HEC output. Blocking: call it from its own thread.
pub struct HecSink {
    cfg: HecConfig,
    base: String,
    /// `Splunk <token>`: never printed.
    auth: String,
    /// `X-Splunk-Request-Channel`: one random GUID per sink.
    channel: String,
    agent: ureq::Agent,
    backoff: Backoff,
    counters: Arc<HecCounters>,
    warned_no_ack: bool,
}

impl fmt::Debug for HecSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HecSink")
            .field("cfg", &self.cfg)
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

/// A request sent with `use_ack`, waiting for its ack.
struct Pending {
    request: usize,
    ack_id: u64,
    sent: Instant,
}

impl HecSink {
    /// Checks `cfg` (errors name the field) and builds the HTTP client (reads `ca_file`).
    /// Makes no request: see [`Sink::health`].
    pub fn new(cfg: HecConfig) -> anyhow::Result<Self> {
        cfg.validate()?;
        let base = cfg.base_url()?;
        if base.starts_with("http://") {
            tracing::warn!(url = %base, "outputs.hec.url is plain http: the token crosses the network in clear");
        }
        let agent = http::agent(&cfg)?;
        Ok(Self {
            auth: format!("Splunk {}", cfg.token),
            channel: uuid_v4(),
            backoff: Backoff {
                initial: Duration::from_millis(cfg.backoff_initial_ms),
                max: Duration::from_millis(cfg.backoff_max_ms),
            },
            base,
            agent,
            cfg,
            counters: Arc::default(),
            warned_no_ack: false,
        })
    }

    /// The counters, to read from another thread.
    pub fn counters(&self) -> Arc<HecCounters> {
        Arc::clone(&self.counters)
    }

    /// The request channel GUID this sink sends (`X-Splunk-Request-Channel`).
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// One POST, no retry.
    fn post(&self, path: &str, body: &[u8], gzip: bool) -> http::Outcome {
        let mut req = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Authorization", &self.auth)
            .header(CHANNEL_HEADER, &self.channel)
            .header("Content-Type", "application/json");
        if gzip {
            req = req.header("Content-Encoding", "gzip");
        }
        if path == EVENT_PATH {
            self.counters.requests_sent.fetch_add(1, Relaxed);
            self.counters
                .bytes_sent
                .fetch_add(body.len() as u64, Relaxed);
        }
        http::answer(req.send(body))
    }

    /// POSTs until HEC accepts, retrying on 429/500/503 and transport errors up to
    /// `retries` times with backoff (or the server's `Retry-After`).
    fn post_with_retries(
        &self,
        what: &str,
        path: &str,
        body: &[u8],
        gzip: bool,
    ) -> Result<Reply, SinkError> {
        let mut attempt: u32 = 0;
        loop {
            match self.post(path, body, gzip).verdict {
                Verdict::Ok(reply) => return Ok(reply),
                Verdict::Fatal(why) => {
                    return Err(SinkError::Permanent(format!("HEC {what}: {why}")));
                }
                Verdict::Retry { why, after } => {
                    if attempt >= self.cfg.retries {
                        return Err(SinkError::Retryable(format!(
                            "HEC {what}: {why} (gave up after {} attempts)",
                            attempt + 1
                        )));
                    }
                    let wait = match after {
                        Some(a) => a.min(Duration::from_secs(self.cfg.retry_after_max_secs)),
                        None => self.backoff.delay(attempt),
                    };
                    tracing::warn!(
                        what,
                        attempt = attempt + 1,
                        wait_ms = wait.as_millis() as u64,
                        "HEC: {why}; retrying"
                    );
                    self.counters.retries.fetch_add(1, Relaxed);
                    attempt += 1;
                    thread::sleep(wait);
                }
            }
        }
    }

    /// Polls the ack endpoint until at most `target` requests still await their ack.
    /// Acked requests leave `pending`; those past `ack_timeout_secs` go back to `queue`
    /// (to be resent), at most `retries` times each.
    fn await_acks(
        &self,
        requests: &[Request],
        resends: &mut [u32],
        pending: &mut VecDeque<Pending>,
        queue: &mut VecDeque<usize>,
        target: usize,
    ) -> Result<(), SinkError> {
        let timeout = Duration::from_secs(self.cfg.ack_timeout_secs);
        let poll = Duration::from_millis(self.cfg.ack_poll_ms);
        while pending.len() > target {
            thread::sleep(poll);
            let ids: Vec<u64> = pending.iter().map(|p| p.ack_id).collect();
            let body = serde_json::json!({ "acks": ids }).to_string();
            let reply = self.post_with_retries("ack", ACK_PATH, body.as_bytes(), false)?;
            let acks = reply.acks.unwrap_or_default();
            pending.retain(|p| {
                let done = acks.get(&p.ack_id.to_string()).copied().unwrap_or(false);
                if done {
                    self.counters
                        .events_sent
                        .fetch_add(requests[p.request].events as u64, Relaxed);
                }
                !done
            });
            let now = Instant::now();
            while let Some(pos) = pending
                .iter()
                .position(|p| now.duration_since(p.sent) >= timeout)
            {
                let Some(p) = pending.remove(pos) else { break };
                self.counters.acks_timed_out.fetch_add(1, Relaxed);
                resends[p.request] += 1;
                if resends[p.request] > self.cfg.retries {
                    return Err(SinkError::Retryable(format!(
                        "HEC ack: ackId {} not indexed within {} s, {} times",
                        p.ack_id, self.cfg.ack_timeout_secs, resends[p.request]
                    )));
                }
                tracing::warn!(
                    ack_id = p.ack_id,
                    "HEC: no ack within {} s; resending that request",
                    self.cfg.ack_timeout_secs
                );
                queue.push_back(p.request);
            }
        }
        Ok(())
    }

    fn deliver_inner(&mut self, batch: &[Envelope]) -> Result<(), SinkError> {
        let requests = batch::split(batch, self.cfg.max_batch_bytes, self.cfg.gzip)?;
        let mut resends = vec![0u32; requests.len()];
        let mut queue: VecDeque<usize> = (0..requests.len()).collect();
        let mut pending: VecDeque<Pending> = VecDeque::new();
        loop {
            while let Some(i) = queue.pop_front() {
                let req = &requests[i];
                let what = format!(
                    "event request (events {}..{} of {}, {} bytes)",
                    req.first,
                    req.first + req.events,
                    batch.len(),
                    req.raw_len
                );
                let reply = self.post_with_retries(&what, EVENT_PATH, &req.body, self.cfg.gzip)?;
                match (self.cfg.use_ack, reply.ack_id) {
                    (true, Some(ack_id)) => pending.push_back(Pending {
                        request: i,
                        ack_id,
                        sent: Instant::now(),
                    }),
                    (ack, _) => {
                        if ack && !self.warned_no_ack {
                            tracing::warn!(
                                "outputs.hec.use_ack is set but HEC returned no ackId: the \
                                 token has indexer acknowledgement off; replies are final"
                            );
                            self.warned_no_ack = true;
                        }
                        self.counters
                            .events_sent
                            .fetch_add(req.events as u64, Relaxed);
                    }
                }
                if pending.len() >= self.cfg.max_in_flight {
                    let target = self.cfg.max_in_flight - 1;
                    self.await_acks(&requests, &mut resends, &mut pending, &mut queue, target)?;
                }
            }
            if pending.is_empty() {
                return Ok(());
            }
            self.await_acks(&requests, &mut resends, &mut pending, &mut queue, 0)?;
            if queue.is_empty() {
                return Ok(());
            }
        }
    }
}

impl Sink for HecSink {
    fn name(&self) -> &'static str {
        "hec"
    }

    /// Splits the batch into requests of at most `max_batch_bytes`, sends them in order
    /// and, with `use_ack`, waits until each is indexed. `Retryable` once the retries are
    /// spent (some requests may already be in Splunk: at-least-once), `Permanent` on any
    /// other 4xx (bad token, bad data, too large).
    fn deliver(&mut self, batch: &[Envelope]) -> Result<(), SinkError> {
        if batch.is_empty() {
            return Ok(());
        }
        let res = self.deliver_inner(batch);
        match &res {
            Ok(()) => {
                self.counters.batches_sent.fetch_add(1, Relaxed);
            }
            Err(SinkError::Permanent(_)) => {
                self.counters.permanent_failures.fetch_add(1, Relaxed);
            }
            Err(SinkError::Retryable(_)) => {}
        }
        res
    }

    /// `GET /services/collector/health` (503 → retryable), then checks the token with an
    /// empty POST to the event endpoint, which HEC answers 400 "No data" (code 5) when the
    /// token is good and 401/403 when it is not. No retries: this is a probe.
    fn health(&mut self) -> Result<(), SinkError> {
        let res = self
            .agent
            .get(format!("{}{HEALTH_PATH}", self.base))
            .header("Authorization", &self.auth)
            .call();
        match http::answer(res).verdict {
            Verdict::Ok(_) => {}
            Verdict::Retry { why, .. } => {
                return Err(SinkError::Retryable(format!("HEC health: {why}")));
            }
            Verdict::Fatal(why) => return Err(SinkError::Permanent(format!("HEC health: {why}"))),
        }
        let probe = self
            .agent
            .post(format!("{}{EVENT_PATH}", self.base))
            .header("Authorization", &self.auth)
            .header(CHANNEL_HEADER, &self.channel)
            .header("Content-Type", "application/json")
            .send(&[][..]);
        let out = http::answer(probe);
        match (out.status, out.code, out.verdict) {
            (_, _, Verdict::Ok(_)) | (Some(400), Some(5), _) => Ok(()),
            (_, _, Verdict::Retry { why, .. }) => {
                Err(SinkError::Retryable(format!("HEC token check: {why}")))
            }
            (_, _, Verdict::Fatal(why)) => {
                Err(SinkError::Permanent(format!("HEC token check: {why}")))
            }
        }
    }
}
