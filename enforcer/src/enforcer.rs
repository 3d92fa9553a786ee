//! The enforcer: one backend plus the state file, and the rules for changing them.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tracing::{info, warn};

use crate::backend::{Backend, DropCounters};
use crate::error::EnforcerError;
use crate::model::{Exceptions, Isolation};
use crate::state::{Action, Change, State, StateStore};

/// Who automatic changes (expiry, re-assertion, restore) are recorded as.
pub const SELF_NAME: &str = "cordon-enforcer";

/// What `status` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    /// The isolation the state file says is in force.
    pub isolated: Option<Isolation>,
    /// Backend name (`nftables`).
    pub backend: &'static str,
    /// Is the backend's isolation ruleset present and intact right now?
    pub in_force: bool,
    /// Packets dropped by the ruleset, when the backend counts them.
    pub drops: Option<DropCounters>,
}

/// Seconds since the Unix epoch from the system clock.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Owns a backend and the state file; every change is logged, recorded and returned.
pub struct Enforcer {
    backend: Box<dyn Backend>,
    store: StateStore,
    state: State,
    clock: Box<dyn Fn() -> u64 + Send>,
}

impl Enforcer {
    /// Load the state file (missing = not isolated). Nothing is applied yet: call
    /// [`Enforcer::restore`] at start, before connecting out.
    pub fn new(backend: Box<dyn Backend>, state_path: &Path) -> Result<Self, EnforcerError> {
        let store = StateStore::new(state_path);
        let state = store.load()?;
        Ok(Enforcer {
            backend,
            store,
            state,
            clock: Box::new(now_unix),
        })
    }

    /// Use another clock (tests).
    pub fn with_clock(mut self, clock: impl Fn() -> u64 + Send + 'static) -> Self {
        self.clock = Box::new(clock);
        self
    }

    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn state_path(&self) -> &Path {
        self.store.path()
    }

    fn change(&self, action: Action, command_id: Option<u64>, reason: &str, by: &str) -> Change {
        Change {
            at_unix: (self.clock)(),
            action,
            command_id,
            reason: reason.to_string(),
            by: by.to_string(),
        }
    }

    fn log(&self, c: &Change) {
        let backend = self.backend.name();
        match c.action {
            Action::Reassert => warn!(
                action = ?c.action, command_id = ?c.command_id, reason = %c.reason, by = %c.by,
                backend, "isolation ruleset was missing or altered; re-asserted"
            ),
            Action::Unchanged => info!(
                action = ?c.action, command_id = ?c.command_id, reason = %c.reason, backend,
                "isolation unchanged"
            ),
            _ => info!(
                action = ?c.action, command_id = ?c.command_id, reason = %c.reason, by = %c.by,
                backend, "isolation changed"
            ),
        }
    }

    /// Record a change in the history, save the state file and log it.
    fn commit(&mut self, change: Change) -> Result<Change, EnforcerError> {
        self.state.record(change.clone());
        self.store.save(&self.state)?;
        self.log(&change);
        Ok(change)
    }

    /// Pick up changes another process made to the state file (a local break-glass
    /// `cordon-enforcer release` while the agent runs). Returns the other process's last
    /// change when it lifted the isolation we had, so the caller can report it.
    fn sync(&mut self) -> Result<Option<Change>, EnforcerError> {
        let disk = self.store.load()?;
        if disk == self.state {
            return Ok(None);
        }
        let lifted = self.state.isolated.is_some() && disk.isolated.is_none();
        self.state = disk;
        if lifted {
            let c = self.state.history.last().cloned();
            if let Some(c) = &c {
                info!(action = ?c.action, by = %c.by, reason = %c.reason,
                    "isolation lifted by another process (state file)");
            }
            return Ok(c);
        }
        Ok(None)
    }

    fn seen_before(&self, command_id: u64) -> bool {
        self.state
            .history
            .iter()
            .any(|c| c.action == Action::Isolate && c.command_id == Some(command_id))
    }

    /// Put `iso` in force with `exc`. Idempotent by command id: the isolation in force, or
    /// one already handled and since released (a re-delivered command), is a no-op (the
    /// ruleset is re-asserted if it went missing). The management list must not be empty:
    /// without it the host could only be released locally.
    pub fn isolate(&mut self, iso: Isolation, exc: &Exceptions) -> Result<Change, EnforcerError> {
        if exc.management.is_empty() {
            return Err(EnforcerError::Invalid {
                field: "management",
                detail: "isolation needs at least one collector address to stay reachable".into(),
            });
        }
        let id = iso.command_id;
        if self
            .state
            .isolated
            .as_ref()
            .is_some_and(|cur| cur.command_id == id)
        {
            if !self.backend.in_force()? {
                return self.reassert();
            }
            let c = self.change(Action::Unchanged, Some(id), "already in force", &iso.by);
            self.log(&c);
            return Ok(c);
        }
        if self.seen_before(id) {
            let c = self.change(
                Action::Unchanged,
                Some(id),
                "command already handled",
                &iso.by,
            );
            self.log(&c);
            return Ok(c);
        }
        if iso.is_expired((self.clock)()) {
            return Err(EnforcerError::Invalid {
                field: "expires_at_unix",
                detail: format!("already passed ({:?})", iso.expires_at_unix),
            });
        }
        // Persist the intent first: if we die between the two steps, restore applies it.
        let previous = self.state.clone();
        self.state.isolated = Some(iso.clone());
        self.state.exceptions = Some(exc.clone());
        self.store.save(&self.state)?;
        if let Err(e) = self.backend.apply(&iso, exc) {
            self.state = previous;
            // Best effort: the error that matters is the apply failure.
            let _ = self.store.save(&self.state);
            warn!(command_id = id, error = %e, "isolation failed");
            return Err(e);
        }
        let c = self.change(Action::Isolate, Some(id), &iso.reason, &iso.by);
        self.commit(c)
    }

    /// Lift isolation (by command, or locally by root). Always removes the backend's
    /// ruleset, even if the state file says nothing is in force (break-glass must work).
    pub fn release(&mut self, reason: &str, by: &str) -> Result<Change, EnforcerError> {
        self.sync()?;
        let was = self.state.isolated.clone();
        let present = self.backend.in_force().unwrap_or(true);
        self.backend.clear()?;
        if was.is_none() && !present {
            let c = self.change(Action::Unchanged, None, "not isolated", by);
            self.log(&c);
            return Ok(c);
        }
        self.state.isolated = None;
        self.state.exceptions = None;
        let c = self.change(Action::Release, was.map(|i| i.command_id), reason, by);
        self.commit(c)
    }

    /// Traffic the backend refused since the previous call, per flow.
    pub fn take_refused(&mut self) -> Result<Vec<crate::Refused>, EnforcerError> {
        self.backend.take_refused()
    }

    /// The exceptions of the isolation in force, `None` when not isolated.
    pub fn exceptions_in_force(&self) -> Option<&Exceptions> {
        self.state
            .isolated
            .as_ref()
            .and(self.state.exceptions.as_ref())
    }

    /// What the state file says and what the kernel has.
    pub fn status(&self) -> Result<Status, EnforcerError> {
        Ok(Status {
            isolated: self.state.isolated.clone(),
            backend: self.backend.name(),
            in_force: self.backend.in_force()?,
            drops: self.backend.drop_counters()?,
        })
    }

    /// At start, before connecting out: re-apply the stored isolation (its exceptions
    /// joined with `current`, the agent's configuration now, so a changed collector address
    /// stays reachable), or lift it if it expired while we were down.
    pub fn restore(&mut self, current: Option<&Exceptions>) -> Result<Change, EnforcerError> {
        let Some(iso) = self.state.isolated.clone() else {
            if self.backend.in_force().unwrap_or(false) {
                warn!(
                    "an isolation ruleset is in force but the state file records none; left alone"
                );
            }
            let c = self.change(Action::Unchanged, None, "not isolated", SELF_NAME);
            return Ok(c);
        };
        let now = (self.clock)();
        if iso.is_expired(now) {
            self.backend.clear()?;
            self.state.isolated = None;
            self.state.exceptions = None;
            let c = self.change(
                Action::Expire,
                Some(iso.command_id),
                "expired while stopped",
                SELF_NAME,
            );
            return self.commit(c);
        }
        let stored = self.state.exceptions.clone().unwrap_or_default();
        let exc = match current {
            Some(cur) => stored.union(cur),
            None => stored,
        };
        self.backend.apply(&iso, &exc)?;
        self.state.exceptions = Some(exc);
        let c = self.change(
            Action::Restore,
            Some(iso.command_id),
            "restored at start",
            SELF_NAME,
        );
        self.commit(c)
    }

    fn reassert(&mut self) -> Result<Change, EnforcerError> {
        let Some(iso) = self.state.isolated.clone() else {
            return Ok(self.change(Action::Unchanged, None, "not isolated", SELF_NAME));
        };
        let exc = self.state.exceptions.clone().unwrap_or_default();
        self.backend.apply(&iso, &exc)?;
        let c = self.change(
            Action::Reassert,
            Some(iso.command_id),
            "ruleset missing or altered",
            SELF_NAME,
        );
        self.commit(c)
    }

    /// Periodic check: lift an expired isolation, and put the ruleset back if someone
    /// flushed or deleted it. `None` when nothing changed.
    pub fn tick(&mut self, now_unix: u64) -> Result<Option<Change>, EnforcerError> {
        if let Some(c) = self.sync()? {
            return Ok(Some(c));
        }
        let Some(iso) = self.state.isolated.clone() else {
            return Ok(None);
        };
        if iso.is_expired(now_unix) {
            self.backend.clear()?;
            self.state.isolated = None;
            self.state.exceptions = None;
            let mut c = self.change(Action::Expire, Some(iso.command_id), "expired", SELF_NAME);
            c.at_unix = now_unix;
            return self.commit(c).map(Some);
        }
        if !self.backend.in_force()? {
            return self.reassert().map(Some);
        }
        Ok(None)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
#[path = "enforcer_tests.rs"]
mod tests;
