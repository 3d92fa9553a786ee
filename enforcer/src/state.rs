//! The enforcer's state file: what is in force, with what exceptions, and what happened.
//!
//! Written atomically (temporary file in the same directory, fsync, rename, fsync of the
//! directory) with mode 0600, so a crash leaves either the old or the new file.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::EnforcerError;
use crate::model::{Exceptions, Isolation};

/// Default location of the state file.
pub const DEFAULT_STATE_PATH: &str = "/var/lib/cordon/enforcer.json";

/// History entries kept in the file (oldest dropped first).
pub const HISTORY_LIMIT: usize = 200;

/// Current state file format version.
pub const STATE_VERSION: u32 = 1;

/// What a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Isolation put in force (or replaced by a new command).
    Isolate,
    /// Isolation lifted by a command or locally (break-glass).
    Release,
    /// Isolation lifted because its expiry time passed.
    Expire,
    /// The ruleset had gone (flushed, deleted) and was put back.
    Reassert,
    /// Isolation re-applied from the state file at start.
    Restore,
    /// Nothing to do (same command id again, release while not isolated, ...). Not recorded.
    Unchanged,
}

/// One change, as logged, recorded in the history and returned to the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub at_unix: u64,
    pub action: Action,
    /// The isolation command concerned, if any.
    pub command_id: Option<u64>,
    pub reason: String,
    /// Who did it: the operator or rule for commands, the local user for break-glass,
    /// `cordon-enforcer` for automatic changes.
    pub by: String,
}

/// Contents of the state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub version: u32,
    /// The isolation in force, if any.
    pub isolated: Option<Isolation>,
    /// The exceptions it was applied with.
    pub exceptions: Option<Exceptions>,
    /// Recent changes, oldest first.
    #[serde(default)]
    pub history: Vec<Change>,
}

impl Default for State {
    fn default() -> Self {
        State {
            version: STATE_VERSION,
            isolated: None,
            exceptions: None,
            history: Vec::new(),
        }
    }
}

impl State {
    /// Append to the history, keeping at most [`HISTORY_LIMIT`] entries.
    pub fn record(&mut self, change: Change) {
        self.history.push(change);
        if self.history.len() > HISTORY_LIMIT {
            let extra = self.history.len() - HISTORY_LIMIT;
            self.history.drain(..extra);
        }
    }
}

/// Reads and writes one state file.
#[derive(Debug, Clone)]
pub struct StateStore {
    path: PathBuf,
}

impl StateStore {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        StateStore { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, source: std::io::Error) -> EnforcerError {
        EnforcerError::StateIo {
            path: self.path.clone(),
            source,
        }
    }

    /// The stored state; a missing file is the empty state (never isolated).
    pub fn load(&self) -> Result<State, EnforcerError> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::default()),
            Err(e) => return Err(self.io(e)),
        };
        let state: State =
            serde_json::from_slice(&bytes).map_err(|e| EnforcerError::StateInvalid {
                path: self.path.clone(),
                detail: e.to_string(),
            })?;
        if state.version != STATE_VERSION {
            return Err(EnforcerError::StateInvalid {
                path: self.path.clone(),
                detail: format!("unsupported version {}", state.version),
            });
        }
        Ok(state)
    }

    /// Replace the file atomically (temp + fsync + rename + fsync dir), mode 0600.
    pub fn save(&self, state: &State) -> Result<(), EnforcerError> {
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|e| self.io(e))?;
        }
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "enforcer.json".into());
        let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
        let json = serde_json::to_vec_pretty(state).map_err(|e| EnforcerError::StateInvalid {
            path: self.path.clone(),
            detail: e.to_string(),
        })?;
        let write = || -> std::io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            // The mode above only applies when the file is created.
            f.set_permissions(fs::Permissions::from_mode(0o600))?;
            f.write_all(&json)?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            fs::rename(&tmp, &self.path)?;
            File::open(&dir)?.sync_all()
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            self.io(e)
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use super::*;
    use crate::testutil::temp_dir;

    #[test]
    fn round_trip_with_0600_and_missing_is_empty() {
        let dir = temp_dir("state");
        let store = StateStore::new(dir.join("sub/enforcer.json"));
        assert_eq!(store.load().unwrap(), State::default());
        let mut st = State {
            isolated: Some(Isolation {
                command_id: 7,
                reason: "beaconing".into(),
                by: "alice".into(),
                since_unix: 1000,
                expires_at_unix: Some(2000),
            }),
            exceptions: Some(Exceptions {
                management: vec!["10.0.0.1:4433".parse().unwrap()],
                allow: vec!["10.0.0.9:22/tcp".parse().unwrap()],
            }),
            ..State::default()
        };
        st.record(Change {
            at_unix: 1000,
            action: Action::Isolate,
            command_id: Some(7),
            reason: "beaconing".into(),
            by: "alice".into(),
        });
        store.save(&st).unwrap();
        assert_eq!(store.load().unwrap(), st);
        let mode = fs::metadata(store.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dmode = fs::metadata(dir.join("sub")).unwrap().permissions().mode() & 0o777;
        assert_eq!(dmode, 0o700);
        // Overwrite keeps 0600 and leaves no temporary file behind.
        st.isolated = None;
        store.save(&st).unwrap();
        assert_eq!(store.load().unwrap(), st);
        let names: Vec<_> = fs::read_dir(dir.join("sub")).unwrap().collect();
        assert_eq!(names.len(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn corrupt_file_is_a_clear_error() {
        let dir = temp_dir("corrupt");
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("enforcer.json");
        fs::write(&p, b"{not json").unwrap();
        let err = StateStore::new(&p).load().unwrap_err().to_string();
        assert!(
            err.contains("enforcer.json") && err.contains("not valid"),
            "{err}"
        );
        fs::write(&p, br#"{"version":9,"isolated":null,"exceptions":null}"#).unwrap();
        let err = StateStore::new(&p).load().unwrap_err().to_string();
        assert!(err.contains("version 9"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn history_is_bounded() {
        let mut st = State::default();
        for i in 0..(HISTORY_LIMIT as u64 + 5) {
            st.record(Change {
                at_unix: i,
                action: Action::Reassert,
                command_id: None,
                reason: String::new(),
                by: String::new(),
            });
        }
        assert_eq!(st.history.len(), HISTORY_LIMIT);
        assert_eq!(st.history[0].at_unix, 5);
    }
}
