//! The uplink across the lab: a collector in the peer namespace, an agent (`cordon-agent
//! run`, enrolled offline with `csr` / `sign-agent`) on the host, real traffic, and the
//! flows read back from the collector's store, with their process.
use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use cordon_collector::store::{FlowFilter, Store};
use cordon_tests::{
    HOST_IP, Lab, PEER_IP,
    agent::{agent_bin, collector_bin},
    interrupt, servers_py, wait_for, workspace,
};

fn run(cmd: &[&str]) -> String {
    let out = Command::new(cmd[0]).args(&cmd[1..]).output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn flows_reach_the_collector_store_over_mtls() {
    let lab = Lab::new();
    let dir = workspace()
        .join("target/lab-logs")
        .join(format!("uplink-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let data = dir.join("collector");
    let collector_cfg = dir.join("collector.toml");
    std::fs::write(
        &collector_cfg,
        format!(
            "listen = \"{PEER_IP}:7443\"\ndata_dir = \"{}\"\nserver_names = [\"{PEER_IP}\"]\n",
            data.display()
        ),
    )
    .expect("collector config");
    let ccfg = collector_cfg.to_string_lossy().into_owned();
    let collector_bin = collector_bin();
    let collector_log = dir.join("collector.err");
    let collector = lab.spawn_peer(
        &[&collector_bin, "run", "--config", &ccfg],
        Stdio::null(),
        std::fs::File::create(&collector_log).expect("log").into(),
    );
    wait_for(
        &collector_log,
        "collector listening",
        Duration::from_secs(20),
    );

    // Offline enrollment: the key is made on the host, the collector signs the request.
    let agent_dir = dir.join("agent");
    let agent_bin = agent_bin();
    run(&[&agent_bin, "csr", "--out-dir", &agent_dir.to_string_lossy()]);
    run(&[
        &collector_bin,
        "sign-agent",
        "--config",
        &ccfg,
        "--id",
        "h1-agent",
        "--csr",
        &agent_dir.join("agent.csr").to_string_lossy(),
        "--out",
        &agent_dir.join("agent.pem").to_string_lossy(),
        "--ca-out",
        &agent_dir.join("ca.pem").to_string_lossy(),
    ]);
    let agent_cfg = dir.join("agent.toml");
    std::fs::write(
        &agent_cfg,
        format!(
            "host_name = \"h1\"\n[capture]\ncgroup_path = \"{cg}\"\npoll_interval_ms = 200\nclose_linger_ms = 200\n\
             [uplink]\ncollectors = [\"{PEER_IP}:7443\"]\nca_file = \"{d}/ca.pem\"\ncert_file = \"{d}/agent.pem\"\n\
             key_file = \"{d}/agent.key\"\nspool_dir = \"{d}/spool\"\nbatch_interval_ms = 100\n\
             [enforcer]\nbackend = \"none\"\nstate_file = \"{d}/enforcer.json\"\n",
            cg = lab.cgroup.display(),
            d = agent_dir.display()
        ),
    )
    .expect("agent config");
    let agent_log = dir.join("agent.err");
    let agent = lab.spawn_host(
        &[&agent_bin, "run", "--config", &agent_cfg.to_string_lossy()],
        Stdio::null(),
        std::fs::File::create(&agent_log).expect("log").into(),
    );
    wait_for(
        &agent_log,
        "connected to the collector",
        Duration::from_secs(30),
    );

    let py = servers_py();
    lab.start_server(
        false,
        &["python3", &py, "tcp-serve", PEER_IP, "8080"],
        &dir.join("peer-tcp.log"),
    );
    let (curl_pid, out) = lab.run_host(&[
        "curl",
        "-sS",
        "--max-time",
        "5",
        &format!("http://{PEER_IP}:8080/uplink"),
    ]);
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The flow, with its process, lands in the collector's store within seconds.
    let store = Store::open(&data.join("cordon.db")).expect("store");
    let start = Instant::now();
    let row = loop {
        let rows = store
            .flows(&FlowFilter {
                host: Some("h1-agent".into()),
                port: Some(8080),
                limit: 100,
                ..Default::default()
            })
            .expect("query");
        if let Some(r) = rows.into_iter().find(|r| r.pid == Some(curl_pid)) {
            break r;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the curl flow never reached the collector; agent log:\n{}",
            std::fs::read_to_string(&agent_log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(row.host, "h1");
    assert_eq!(
        (row.local_ip.as_str(), row.remote_ip.as_str()),
        (HOST_IP, PEER_IP)
    );
    assert_eq!(row.direction, "outbound");
    assert!(
        row.exe.as_deref().is_some_and(|e| e.ends_with("/curl")),
        "{row:?}"
    );

    // Its inventory arrived too: the lab interface with the host's address.
    let inv = store
        .inventory("h1-agent")
        .expect("query")
        .expect("an inventory");
    assert!(
        inv.interfaces
            .iter()
            .any(|i| i.addresses.iter().any(|a| a.to_string() == HOST_IP)),
        "{inv:?}"
    );
    assert!(inv.cpus >= 1 && !inv.kernel.is_empty(), "{inv:?}");

    // The agent's own connection to the collector is not reported as a flow.
    let own = store
        .flows(&FlowFilter {
            port: Some(7443),
            limit: 100,
            ..Default::default()
        })
        .expect("query");
    assert!(own.is_empty(), "the uplink reported itself: {own:?}");

    interrupt(agent);
    wait_for(&agent_log, "uplink stopped", Duration::from_secs(20));
    let log = std::fs::read_to_string(&agent_log).expect("log");
    let stopped = log
        .lines()
        .rfind(|l| l.contains("uplink stopped"))
        .unwrap_or_default();
    assert!(
        stopped.contains(" pending=0 "),
        "batches left unacknowledged: {stopped}\n{log}"
    );
    interrupt(collector);
}
