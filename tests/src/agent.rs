//! Running `cordon-agent watch --json` in a lab and reading what it reported.
use std::{
    fs,
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{Lab, workspace};

/// The agent binary under test: `CORDON_AGENT` or the workspace's debug build.
pub fn agent_bin() -> String {
    std::env::var("CORDON_AGENT").unwrap_or_else(|_| {
        workspace()
            .join("target/debug/cordon-agent")
            .to_string_lossy()
            .into_owned()
    })
}

/// The collector binary under test: `CORDON_COLLECTOR` or the workspace's debug build.
pub fn collector_bin() -> String {
    std::env::var("CORDON_COLLECTOR").unwrap_or_else(|_| {
        workspace()
            .join("target/debug/cordon-collector")
            .to_string_lossy()
            .into_owned()
    })
}

/// A binary of the workspace's debug build.
pub fn workspace_bin(name: &str) -> String {
    workspace()
        .join("target/debug")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// The operator CLI under test: `CORDON_CLI` or the workspace's debug build.
pub fn cli_bin() -> String {
    std::env::var("CORDON_CLI").unwrap_or_else(|_| {
        workspace()
            .join("target/debug/cordon")
            .to_string_lossy()
            .into_owned()
    })
}

pub struct Agent {
    pub pid: u32,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl Agent {
    /// Starts the agent on the lab host, inside its cgroup and watching it, and waits until
    /// it reports that capture started.
    pub fn start(lab: &Lab, dir: &std::path::Path, name: &str, extra: &[&str]) -> Agent {
        let stdout = dir.join(format!("{name}.jsonl"));
        let stderr = dir.join(format!("{name}.err"));
        let bin = agent_bin();
        let cgroup = lab.cgroup.to_string_lossy().into_owned();
        let mut cmd = vec![
            bin.as_str(),
            "watch",
            "--json",
            "--stats-on-exit",
            "--host",
            "h1",
            "--cgroup",
            cgroup.as_str(),
        ];
        cmd.extend_from_slice(extra);
        let pid = lab.spawn_host(
            &cmd,
            fs::File::create(&stdout).expect("agent stdout").into(),
            fs::File::create(&stderr).expect("agent stderr").into(),
        );
        wait_for_start(&stderr);
        Agent {
            pid,
            stdout,
            stderr,
        }
    }

    /// Stops the agent with SIGINT, waits for its final stats line, and returns every JSON
    /// line it printed.
    pub fn stop(&self) -> Vec<Value> {
        let _ = Command::new("kill")
            .args(["-INT", &self.pid.to_string()])
            .stderr(Stdio::null())
            .status();
        let start = Instant::now();
        loop {
            let text = fs::read_to_string(&self.stdout).unwrap_or_default();
            if text.contains("\"type\":\"stats\"") {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "agent did not stop; stderr:\n{}",
                fs::read_to_string(&self.stderr).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let text = fs::read_to_string(&self.stdout).expect("agent output");
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
            .collect()
    }
}

/// Waits for "capture started"; fails at once with the agent's stderr if it exits first.
fn wait_for_start(stderr: &std::path::Path) {
    let start = Instant::now();
    loop {
        let text = fs::read_to_string(stderr).unwrap_or_default();
        if text.contains("capture started") {
            return;
        }
        assert!(
            !text.contains("cordon-agent: ") && start.elapsed() < Duration::from_secs(30),
            "the agent did not start capturing:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Flow records only.
pub fn flows(lines: &[Value]) -> Vec<&Value> {
    lines.iter().filter(|v| v["type"] == "flow").collect()
}

/// The stats line.
pub fn stats(lines: &[Value]) -> &Value {
    lines
        .iter()
        .find(|v| v["type"] == "stats")
        .expect("a stats line")
}
