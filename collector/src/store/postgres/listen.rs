//! LISTEN/NOTIFY: how one node hears at once what another changed. [`PgStore`] methods
//! send a `NOTIFY` inside their transaction, so it is delivered when (and only if) the
//! change commits. The channels and their payloads:
//!
//! | channel | sent by | payload |
//! |---|---|---|
//! | [`COMMANDS`] `cordon_commands` | `create_command`, `run_command` | the agent id |
//! | [`OUTBOX`] `cordon_outbox` | alerts queued by `store_batches`/`store_consumed`, `queue_envelope` | the newest outbox id |
//! | [`POLICY`] `cordon_policy` | `apply_policy`, `apply_learned_policy` (`draft:<version>`), `publish_policy` (`published:<version>`), `set_label` (`label:<agent id>`), `store_inventory` (`inventory:<agent id>`) | what changed |
//! | [`REVOKED`] `cordon_revoked` | `revoke` | the agent id |
//! | [`RUNS`] `cordon_runs` | `start_run`, `decide_approval` | the run id |
//!
//! PostgreSQL folds identical notifications of one transaction into one. A
//! [`PgListener`] has its own connection; when it was lost it connects again, LISTENs
//! again and says so ([`Notice::Reconnected`]): notifications sent meanwhile are lost, so
//! the caller re-reads whatever it follows.
//!
//! [`PgStore`]: super::PgStore
use std::time::{Duration, Instant};

use ::postgres::{Client, fallible_iterator::FallibleIterator};

use super::conn::{self, PgConfig};
use crate::store::StoreError;

/// Commands queued for an agent (payload: the agent id).
pub const COMMANDS: &str = "cordon_commands";
/// Envelopes added to the alert outbox (payload: the newest outbox id).
pub const OUTBOX: &str = "cordon_outbox";
/// Policy versions, labels or inventories changed (payload: `draft:<version>`,
/// `published:<version>`, `label:<agent id>` or `inventory:<agent id>`).
pub const POLICY: &str = "cordon_policy";
/// An agent was revoked (payload: the agent id).
pub const REVOKED: &str = "cordon_revoked";
/// A playbook run started or an approval was decided (payload: the run id).
pub const RUNS: &str = "cordon_runs";

/// What a listener hears.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// A notification on one of the channels listened to.
    Notify { channel: String, payload: String },
    /// The connection was lost and is back, listening again: notifications sent in
    /// between were missed.
    Reconnected,
}

/// A connection that LISTENs on some channels.
pub struct PgListener {
    config: ::postgres::Config,
    channels: Vec<String>,
    /// `None` while the connection is lost.
    client: Option<Client>,
}

impl Drop for PgListener {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            conn::close(c);
        }
    }
}

impl PgListener {
    /// Connects (its own connection) and listens on `channels`.
    pub fn connect(cfg: &PgConfig, channels: &[&str]) -> Result<Self, StoreError> {
        let config = conn::client_config(cfg)?;
        let channels: Vec<String> = channels.iter().map(|c| c.to_string()).collect();
        let client = listen_on(&config, &channels)?;
        Ok(Self {
            config,
            channels,
            client: Some(client),
        })
    }

    /// The next notice, waiting at most `timeout` (`None`: nothing came). A lost
    /// connection is opened again at once and reported as [`Notice::Reconnected`]; if
    /// PostgreSQL cannot be reached, this waits out `timeout` and returns the error, so
    /// a caller looping on `next` tries about once per `timeout`.
    pub fn next(&mut self, timeout: Duration) -> Result<Option<Notice>, StoreError> {
        let started = Instant::now();
        let Some(client) = self.client.as_mut() else {
            return self.reconnect(started, timeout);
        };
        let got = client.notifications().timeout_iter(timeout).next();
        let closed = client.is_closed();
        match got {
            Ok(Some(n)) => Ok(Some(Notice::Notify {
                channel: n.channel().to_string(),
                payload: n.payload().to_string(),
            })),
            Ok(None) if !closed => Ok(None),
            Ok(None) => self.lost(started, timeout, "connection closed".into()),
            Err(e) => self.lost(started, timeout, conn::describe(&e)),
        }
    }

    fn lost(
        &mut self,
        started: Instant,
        timeout: Duration,
        why: String,
    ) -> Result<Option<Notice>, StoreError> {
        tracing::warn!(server = %conn::target(&self.config), error = %why,
            "the PostgreSQL listener lost its connection; reconnecting");
        self.client = None;
        self.reconnect(started, timeout)
    }

    fn reconnect(
        &mut self,
        started: Instant,
        timeout: Duration,
    ) -> Result<Option<Notice>, StoreError> {
        match listen_on(&self.config, &self.channels) {
            Ok(c) => {
                self.client = Some(c);
                Ok(Some(Notice::Reconnected))
            }
            Err(e) => {
                std::thread::sleep(timeout.saturating_sub(started.elapsed()));
                Err(e)
            }
        }
    }
}

/// A new connection listening on `channels`.
fn listen_on(config: &::postgres::Config, channels: &[String]) -> Result<Client, StoreError> {
    let mut c = conn::open(config)?;
    let sql: String = channels
        .iter()
        .map(|ch| format!("LISTEN \"{}\";", ch.replace('"', "\"\"")))
        .collect();
    if !sql.is_empty() {
        c.batch_execute(&sql)?;
    }
    Ok(c)
}
