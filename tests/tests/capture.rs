//! The agent's capture on the real kernel: flows made by real processes in a lab host are
//! reported with the right process, direction, ports and bytes.
use std::{path::PathBuf, process::Stdio, thread::sleep, time::Duration};

use cordon_tests::{
    HOST_IP, Lab, PEER_IP, VOID_IP,
    agent::{Agent, flows, stats},
    servers_py, workspace,
};
use serde_json::Value;

fn logs(name: &str) -> PathBuf {
    let dir = workspace()
        .join("target/lab-logs")
        .join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("log dir");
    dir
}

fn dump(flows: &[&Value]) -> String {
    flows.iter().map(|f| format!("{f}\n")).collect()
}

/// The final ("end") record of the flow matching `pred`.
fn end_of<'a>(flows: &[&'a Value], what: &str, pred: impl Fn(&Value) -> bool) -> &'a Value {
    flows
        .iter()
        .copied()
        .find(|f| f["event"] == "end" && pred(f))
        .unwrap_or_else(|| panic!("no end record for {what}; flows:\n{}", dump(flows)))
}

/// The executable `name` runs as (following symlinks; for python3, through any shim to the
/// interpreter itself).
fn exe_of(name: &str) -> String {
    let script = if name == "python3" {
        "python3 -c 'import os, sys; print(os.path.realpath(sys.executable))'".to_string()
    } else {
        format!("readlink -f \"$(command -v {name})\"")
    };
    let out = std::process::Command::new("sh")
        .args(["-c", &script])
        .output()
        .expect("resolving an executable");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn assert_process(f: &Value, pid: u32, exe: &str) {
    let p = &f["process"];
    assert_eq!(p["pid"], pid, "pid in {f}");
    assert_eq!(p["exe"], exe, "exe in {f}");
    assert_eq!(p["uid"], 0, "uid in {f}");
    assert_eq!(p["user"], "root", "user in {f}");
    assert!(p["ppid"].as_u64().is_some_and(|v| v > 0), "ppid in {f}");
    assert!(
        p["cgroup"]
            .as_str()
            .is_some_and(|c| c.starts_with("/cordon-test-")),
        "cgroup in {f}"
    );
}

fn assert_bytes_both_ways(f: &Value) {
    for k in ["bytes_out", "bytes_in", "packets_out", "packets_in"] {
        assert!(f[k].as_u64().is_some_and(|v| v > 0), "{k} > 0 in {f}");
    }
}

#[test]
fn ebpf_capture_reports_flows_with_their_processes() {
    let lab = Lab::new();
    let dir = logs("ebpf");
    let py = servers_py();
    let peer_tcp = dir.join("peer-tcp.log");
    lab.start_server(
        false,
        &["python3", &py, "tcp-serve", PEER_IP, "8080"],
        &peer_tcp,
    );
    lab.start_server(
        false,
        &["python3", &py, "udp-echo", PEER_IP, "9090"],
        &dir.join("peer-udp.log"),
    );
    let selftest = format!("{PEER_IP}:8080");
    // --capture ebpf: a program the verifier refuses fails here, with its log, instead of
    // falling back to procfs and failing later on what procfs cannot see.
    let agent = Agent::start(
        &lab,
        &dir,
        "agent",
        &["--capture", "ebpf", "--selftest-connect", &selftest],
    );
    // A server on the host, started after the agent.
    let server_pid = lab.start_server(
        true,
        &["python3", &py, "tcp-serve", HOST_IP, "8081"],
        &dir.join("host-tcp.log"),
    );

    let url = format!("http://{PEER_IP}:8080/curl");
    let (curl_pid, out) = lab.run_host(&["curl", "-sS", "--max-time", "5", &url]);
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A client that exits right after sending.
    let script =
        format!("exec 3<>/dev/tcp/{PEER_IP}/8080; printf 'GET /bash HTTP/1.0\\r\\n\\r\\n' >&3");
    let (bash_pid, out) = lab.run_host(&["bash", "-c", &script]);
    assert!(
        out.status.success(),
        "bash client: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (udp_pid, out) = lab.run_host(&["python3", &py, "udp-send", PEER_IP, "9090", "ping"]);
    assert!(
        out.status.success(),
        "udp client: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let inbound = lab.run_peer(&[
        "curl",
        "-sS",
        "--max-time",
        "5",
        &format!("http://{HOST_IP}:8081/in"),
    ]);
    assert!(inbound.status.success(), "inbound curl failed");
    // Refused (closed port, answered with RST) and dropped (nobody owns the address).
    let (refused_pid, out) = lab.run_host(&[
        "curl",
        "-sS",
        "--max-time",
        "3",
        &format!("http://{PEER_IP}:8099/"),
    ]);
    assert!(
        !out.status.success(),
        "connecting to a closed port must fail"
    );
    let (dropped_pid, out) = lab.run_host(&[
        "curl",
        "-sS",
        "--connect-timeout",
        "1",
        &format!("http://{VOID_IP}:8080/"),
    ]);
    assert!(
        !out.status.success(),
        "connecting to a void address must fail"
    );
    // Let the agent see the closes and the linger pass.
    sleep(Duration::from_millis(2500));
    let lines = agent.stop();
    let flows = flows(&lines);

    let curl = exe_of("curl");
    let python = exe_of("python3");
    let bash = exe_of("bash");
    let peer = |port: u16| move |f: &Value| f["remote_ip"] == PEER_IP && f["remote_port"] == port;

    let f = end_of(&flows, "curl → peer:8080", |f| {
        peer(8080)(f) && f["process"]["pid"] == curl_pid
    });
    assert_eq!(
        (f["proto"].as_str(), f["direction"].as_str()),
        (Some("tcp"), Some("outbound"))
    );
    assert_eq!(f["local_ip"], HOST_IP);
    assert_eq!(f["state"], "closed");
    assert_eq!(f["verdict"], "forwarded");
    assert_process(f, curl_pid, &curl);
    assert_eq!(
        f["process"]["cmdline"],
        format!("curl -sS --max-time 5 {url}"),
        "{f}"
    );
    assert_bytes_both_ways(f);

    let f = end_of(&flows, "bash → peer:8080", |f| {
        peer(8080)(f) && f["process"]["pid"] == bash_pid
    });
    assert_process(f, bash_pid, &bash);
    assert!(f["bytes_out"].as_u64().is_some_and(|b| b > 0), "{f}");
    // Usually gone before /proc could be read: the exec event carries the arguments.
    let cmdline = f["process"]["cmdline"].as_str().unwrap_or_default();
    assert!(
        cmdline.starts_with("bash -c exec 3<>/dev/tcp/"),
        "cmdline in {f}"
    );

    let f = end_of(&flows, "udp → peer:9090", |f| peer(9090)(f));
    assert_eq!(
        (f["proto"].as_str(), f["direction"].as_str()),
        (Some("udp"), Some("outbound"))
    );
    assert_process(f, udp_pid, &python);
    assert_bytes_both_ways(f);

    let f = end_of(&flows, "peer → host:8081", |f| {
        f["local_port"] == 8081 && f["remote_ip"] == PEER_IP
    });
    assert_eq!(f["direction"], "inbound");
    assert_process(f, server_pid, &python);
    assert_bytes_both_ways(f);

    let f = end_of(&flows, "refused → peer:8099", |f| peer(8099)(f));
    assert_process(f, refused_pid, &curl);
    assert!(
        f["tcp_flags_in"]
            .as_str()
            .is_some_and(|s| s.contains("RST")),
        "{f}"
    );

    let f = end_of(&flows, "dropped → void:8080", |f| {
        f["remote_ip"] == VOID_IP
    });
    assert_process(f, dropped_pid, &curl);
    assert!(f["packets_out"].as_u64().is_some_and(|p| p >= 1), "{f}");
    assert_eq!(f["packets_in"], 0, "{f}");

    // The agent's own connection happened, and is not reported.
    let served = std::fs::read_to_string(&peer_tcp).expect("peer log");
    assert!(
        served.contains("GET /selftest"),
        "the agent's self-test connection did not reach the peer:\n{served}"
    );
    assert!(
        flows.iter().all(|f| f["process"]["pid"] != agent.pid),
        "the agent reported its own traffic:\n{}",
        dump(&flows)
    );
    let to_8080: Vec<_> = flows
        .iter()
        .filter(|f| f["event"] == "start" && peer(8080)(f))
        .collect();
    assert_eq!(
        to_8080.len(),
        2,
        "exactly curl and bash connect to :8080 besides the agent:\n{}",
        dump(&flows)
    );

    // Every flow the kernel created was reported, nothing dropped.
    let st = stats(&lines);
    let k = &st["kernel"];
    assert_eq!(k["flows_created"], st["agent"]["flows_reported"], "{st}");
    for drop in [
        "ringbuf_full_flow",
        "ringbuf_full_exec",
        "flow_map_full",
        "owner_map_full",
    ] {
        assert_eq!(k[drop], 0, "{drop} in {st}");
    }
    assert_eq!(st["output_dropped"], 0, "{st}");
    // Every flow in this lab has an owner.
    assert_eq!(st["agent"]["unattributed"], 0, "{st}\n{}", dump(&flows));
}

#[test]
fn procfs_fallback_reports_the_same_tcp_flows() {
    let lab = Lab::new();
    let dir = logs("procfs");
    let py = servers_py();
    lab.start_server(
        false,
        &["python3", &py, "tcp-serve", PEER_IP, "8080"],
        &dir.join("peer-tcp.log"),
    );
    let server_pid = lab.start_server(
        true,
        &["python3", &py, "tcp-serve", HOST_IP, "8081"],
        &dir.join("host-tcp.log"),
    );
    let cfg = dir.join("procfs.toml");
    std::fs::write(
        &cfg,
        "[capture]\npoll_interval_ms = 100\nclose_linger_ms = 300\n",
    )
    .expect("config");
    let cfg = cfg.to_string_lossy().into_owned();
    let ebpf = Agent::start(&lab, &dir, "ebpf", &["--capture", "ebpf"]);
    let procfs = Agent::start(
        &lab,
        &dir,
        "procfs",
        &["--capture", "procfs", "--config", &cfg],
    );
    let stderr = std::fs::read_to_string(&procfs.stderr).expect("procfs stderr");
    assert!(
        stderr.contains("capture=\"procfs\""),
        "procfs agent must say which capture it runs:\n{stderr}"
    );

    // Long-lived flows: two outbound, one inbound, each open for a second.
    let mut clients = Vec::new();
    for _ in 0..2 {
        clients.push(lab.spawn_host(
            &["python3", &py, "tcp-hold", PEER_IP, "8080", "1.0"],
            Stdio::null(),
            Stdio::null(),
        ));
    }
    let inbound = lab.run_peer(&["python3", &py, "tcp-hold", HOST_IP, "8081", "1.0"]);
    assert!(inbound.status.success(), "inbound client failed");
    sleep(Duration::from_millis(2000));
    let p_lines = procfs.stop();
    let e_lines = ebpf.stop();
    let (p_flows, e_flows) = (flows(&p_lines), flows(&e_lines));

    let python = exe_of("python3");
    for pid in &clients {
        let e = end_of(&e_flows, "ebpf: long outbound", |f| {
            f["process"]["pid"] == *pid
        });
        let p = end_of(&p_flows, "procfs: the same flow", |f| {
            f["local_port"] == e["local_port"]
                && f["remote_ip"] == PEER_IP
                && f["remote_port"] == 8080
        });
        assert_eq!(p["capture"], "procfs");
        assert_eq!(p["direction"], "outbound");
        assert_process(p, *pid, &python);
        assert_bytes_both_ways(p);
    }
    let e = end_of(&e_flows, "ebpf: long inbound", |f| f["local_port"] == 8081);
    let p = end_of(&p_flows, "procfs: the inbound flow", |f| {
        f["local_port"] == 8081 && f["remote_port"] == e["remote_port"]
    });
    assert_eq!(p["direction"], "inbound");
    assert_process(p, server_pid, &python);
}
