//! nftables backend: drives the real `nft` program with JSON (`nft -j -f -`), one atomic
//! transaction per change, and only ever touches the table `inet cordon`.

pub mod refused;
pub mod ruleset;

use std::ffi::OsString;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::NFT_TABLE;
use crate::backend::{Backend, DropCounters};
use crate::error::EnforcerError;
use crate::model::{Exceptions, Isolation};
use crate::refused::Refused;
use ruleset::{CHAIN_PRIORITY, CHAINS, END_COMMENT_PREFIX, drop_counter_name};

/// Where `nft` usually lives; the first that exists is used, else `nft` from `PATH`.
const NFT_CANDIDATES: [&str; 3] = ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"];

/// The nftables isolation backend.
#[derive(Debug, Clone)]
pub struct NftBackend {
    /// Program and leading arguments; `nft`'s own arguments are appended.
    command: Vec<OsString>,
    /// Last counters read from the refused-flow sets.
    refused: refused::Deltas,
}

impl Default for NftBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl NftBackend {
    /// Runs the system `nft` (in the caller's network namespace).
    pub fn new() -> Self {
        let nft = NFT_CANDIDATES
            .iter()
            .find(|p| Path::new(p).exists())
            .copied()
            .unwrap_or("nft");
        NftBackend {
            command: vec![nft.into()],
            refused: refused::Deltas::default(),
        }
    }

    /// Runs `nft` through a command prefix: `command[0]` is the program, the rest its
    /// leading arguments, and the last of them should be `nft` itself. Tests use
    /// `["nsenter", "--net=/run/netns/NAME", "nft"]` to enforce inside a network namespace.
    pub fn with_command<I, S>(command: I) -> Result<Self, EnforcerError>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let command: Vec<OsString> = command.into_iter().map(Into::into).collect();
        if command.is_empty() {
            return Err(EnforcerError::Invalid {
                field: "nft command",
                detail: "empty command".into(),
            });
        }
        Ok(NftBackend {
            command,
            refused: refused::Deltas::default(),
        })
    }

    /// True when `nft` can be run at all (used to pick the default backend).
    pub fn available(&self) -> bool {
        self.cmd()
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn program(&self) -> String {
        self.command
            .iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(&self.command[0]);
        c.args(&self.command[1..]);
        c
    }

    /// Feed one JSON transaction to `nft -j -f -` (atomic: all of it or nothing).
    fn run_json(&self, action: &'static str, payload: &str) -> Result<(), EnforcerError> {
        let spawn_err = |source| EnforcerError::NftSpawn {
            program: self.program(),
            action,
            source,
        };
        let mut child = self
            .cmd()
            .args(["-j", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_err)?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(payload.as_bytes()).map_err(spawn_err)?;
        }
        let out = child.wait_with_output().map_err(spawn_err)?;
        if !out.status.success() {
            return Err(EnforcerError::NftFailed {
                action,
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(())
    }

    /// `nft -j list table inet cordon`; `None` when the table does not exist.
    pub fn list_table(&self) -> Result<Option<Value>, EnforcerError> {
        const ACTION: &str = "list table inet cordon";
        let out = self
            .cmd()
            .args(["-j", "list", "table", "inet", NFT_TABLE])
            .stdin(Stdio::null())
            .output()
            .map_err(|source| EnforcerError::NftSpawn {
                program: self.program(),
                action: ACTION,
                source,
            })?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            if stderr.contains("No such file or directory") {
                return Ok(None);
            }
            return Err(EnforcerError::NftFailed {
                action: ACTION,
                status: out.status.to_string(),
                stderr: stderr.trim().to_string(),
            });
        }
        serde_json::from_slice(&out.stdout)
            .map(Some)
            .map_err(|e| EnforcerError::NftOutput {
                action: ACTION,
                detail: e.to_string(),
            })
    }
}

/// The objects (`{"chain": {...}}`, `{"rule": {...}}`, ...) of a `nft -j list` answer.
fn list_objects(v: &Value) -> &[Value] {
    v.get("nftables")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// Is the listed table our complete isolation ruleset? Every base chain must exist with
/// its hook, priority and drop policy, and hold exactly the number of rules its final
/// rule's comment records (so a flushed or edited chain does not count as in force).
pub fn ruleset_intact(listing: &Value) -> bool {
    let objs = list_objects(listing);
    CHAINS.iter().all(|(name, hook)| {
        let hook = serde_json::to_value(hook).unwrap_or(Value::Null);
        let chain_ok = objs.iter().filter_map(|o| o.get("chain")).any(|c| {
            c["name"] == *name
                && c["hook"] == hook
                && c["policy"] == "drop"
                && c["type"] == "filter"
                && c["prio"] == CHAIN_PRIORITY
        });
        let rules: Vec<&Value> = objs
            .iter()
            .filter_map(|o| o.get("rule"))
            .filter(|r| r["chain"] == *name)
            .collect();
        let expected = rules
            .last()
            .and_then(|r| r["comment"].as_str())
            .and_then(|c| c.strip_prefix(END_COMMENT_PREFIX))
            .and_then(|n| n.parse::<usize>().ok());
        chain_ok && expected == Some(rules.len())
    })
}

/// Drop counters out of a table listing.
pub fn drop_counters_of(listing: &Value) -> DropCounters {
    let packets = |chain: &str| {
        let name = drop_counter_name(chain);
        list_objects(listing)
            .iter()
            .filter_map(|o| o.get("counter"))
            .find(|c| c["name"] == name.as_str())
            .and_then(|c| c["packets"].as_u64())
            .unwrap_or(0)
    };
    DropCounters {
        input_packets: packets("input"),
        output_packets: packets("output"),
        forward_packets: packets("forward"),
    }
}

impl Backend for NftBackend {
    fn name(&self) -> &'static str {
        "nftables"
    }

    fn apply(&mut self, _iso: &Isolation, exc: &Exceptions) -> Result<(), EnforcerError> {
        let payload = ruleset::isolation_payload(exc)
            .map(|v| v.to_string())
            .map_err(|e| EnforcerError::NftOutput {
                action: "serialize the isolation ruleset",
                detail: e.to_string(),
            })?;
        // The table is recreated, and its sets' counters with it.
        self.refused.reset();
        self.run_json("apply the isolation ruleset", &payload)
    }

    fn clear(&mut self) -> Result<(), EnforcerError> {
        let payload = serde_json::to_string(&ruleset::clear_ruleset()).map_err(|e| {
            EnforcerError::NftOutput {
                action: "serialize the clear transaction",
                detail: e.to_string(),
            }
        })?;
        self.refused.reset();
        self.run_json("delete table inet cordon", &payload)
    }

    fn in_force(&self) -> Result<bool, EnforcerError> {
        Ok(self.list_table()?.is_some_and(|v| ruleset_intact(&v)))
    }

    fn drop_counters(&self) -> Result<Option<DropCounters>, EnforcerError> {
        Ok(self.list_table()?.map(|v| drop_counters_of(&v)))
    }

    fn take_refused(&mut self) -> Result<Vec<Refused>, EnforcerError> {
        Ok(match self.list_table()? {
            Some(v) => self.refused.take(&v),
            None => Vec::new(),
        })
    }
}
