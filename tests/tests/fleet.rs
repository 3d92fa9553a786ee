//! The uplink across a fleet lab: a collector namespace and two hosts, each with its own
//! cgroup and its own agent, enrolled over the network with a join token. Real traffic
//! both ways between the hosts while the collector is killed and restarted and an agent is
//! restarted; then every record each agent produced is in the store exactly once, both
//! sides of the traffic are attributed to the right processes, and the inventory is
//! there. Then the hostile part: a certificate from another CA and a revoked agent are
//! refused, and random datagrams and an oversize frame do not take the collector down.
use std::{
    fs,
    net::{SocketAddr, UdpSocket},
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use cordon_collector::pki::Ca;
use cordon_tests::{
    agent::{agent_bin, cli_bin},
    cluster::{AGENT_PORT, Cluster, ok, stop_agent},
    fleet::{COLLECTOR_IP, Fleet},
    in_netns, interrupt, servers_py, wait_for,
};
use cordon_wire::{
    Hello, Message,
    transport::{client_config, read_message, write_message},
};
use serde_json::Value;

/// Records one agent run handed to its uplink: `records - output_dropped` from the
/// statistics it logs when it stops.
fn records_of_run(log: &Path) -> u64 {
    let text = fs::read_to_string(log).expect("agent log");
    let line = text
        .lines()
        .find(|l| l.contains("capture statistics"))
        .unwrap_or_else(|| panic!("no statistics in {}:\n{text}", log.display()));
    let json = &line[line.find("stats=").expect("stats=") + 6..];
    let json = &json[..json.rfind('}').expect("}") + 1];
    let v: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"));
    let records = v["agent"]["records"].as_u64().expect("records");
    let dropped = v["output_dropped"].as_u64().expect("output_dropped");
    assert_eq!(dropped, 0, "the agent dropped records in its output queue");
    records
}

#[test]
fn two_hosts_stream_exactly_once_through_a_collector_crash_and_an_agent_restart() {
    let setup = Cluster::start("fleet", 2, "");
    let (fleet, dir, data) = (&setup.fleet, setup.dir.clone(), setup.data.clone());
    let mut collector = setup.collector_pid;
    let join_file = setup.enroll_all();
    let fingerprint = setup.fingerprint.clone();

    // Each host enrolls over the network and starts its agent.
    let py = servers_py();
    let mut runs: Vec<(String, u32, PathBuf)> = Vec::new();
    for h in &fleet.hosts {
        let (pid, log) = setup.start_agent(h, 1);
        runs.push((h.name.clone(), pid, log));
        fleet.start_server(
            &h.ns,
            Some(&h.cgroup),
            &["python3", &py, "tcp-serve", &h.ip, "8080"],
            &dir.join(format!("server-{}.log", h.name)),
        );
    }
    // The join token was for two hosts: a third enrollment is refused.
    let (h1, h2) = (fleet.host("h1"), fleet.host("h2"));
    let d3 = dir.join("h3");
    fs::create_dir_all(&d3).expect("dir");
    let cfg3 = d3.join("agent.toml");
    fs::write(
        &cfg3,
        format!(
            "[uplink]\ncollectors = [\"{COLLECTOR_IP}:{AGENT_PORT}\"]\nca_file = \"{d}/ca.pem\"\n\
             cert_file = \"{d}/agent.pem\"\nkey_file = \"{d}/agent.key\"\nspool_dir = \"{d}/spool\"\n",
            d = d3.display()
        ),
    )
    .expect("config");
    let third = fleet.run(
        &h1.ns,
        &[
            &agent_bin(),
            "enroll",
            "--config",
            &cfg3.to_string_lossy(),
            "--token-file",
            &join_file.to_string_lossy(),
            "--ca-fingerprint",
            &fingerprint,
        ],
    );
    let err = String::from_utf8_lossy(&third.stderr);
    assert!(
        !third.status.success() && err.contains("used up"),
        "a used-up join token: {err}"
    );

    // Traffic both ways, continuously, from each host's cgroup.
    for (from, to) in [(h1, h2), (h2, h1)] {
        let script = format!(
            "while :; do curl -s -m 2 -o /dev/null http://{}:8080/{}; sleep 0.05; done",
            to.ip, from.name
        );
        fleet.spawn(
            &from.ns,
            Some(&from.cgroup),
            &["sh", "-c", &script],
            &dir.join(format!("traffic-{}.log", from.name)),
        );
    }
    std::thread::sleep(Duration::from_secs(2));

    // The collector crashes mid-stream (no clean shutdown), stays away, and comes back.
    let _ = std::process::Command::new("kill")
        .args(["-9", &collector.to_string()])
        .status();
    std::thread::sleep(Duration::from_secs(3));
    collector = setup.start_collector(2).0;
    // An agent restarts while traffic flows (whatever it could not deliver yet waits in
    // its spool for the next run).
    let (_, pid, log) = runs[0].clone();
    stop_agent(pid, &log, false);
    let (pid, log) = setup.start_agent(h1, 2);
    runs.push(("h1".into(), pid, log));
    // h2's agent notices the crashed collector only when its QUIC idle timeout runs out
    // (a SIGKILLed peer sends no close), then reconnects: wait for that before going on.
    let h2_log = runs[1].2.clone();
    let start = Instant::now();
    while fs::read_to_string(&h2_log)
        .unwrap_or_default()
        .matches("connected to the collector")
        .count()
        < 2
    {
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "h2's agent did not reconnect after the collector restart"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));

    // Traffic stops; the agents report their last flows and stop cleanly.
    for h in &fleet.hosts {
        let _ = std::process::Command::new("pkill")
            .args(["-f", &format!("/{}; sleep 0.05", h.name)])
            .status();
    }
    std::thread::sleep(Duration::from_secs(3));
    let live: Vec<(String, u32, PathBuf)> = vec![runs[1].clone(), runs[2].clone()];
    for (_, pid, log) in &live {
        stop_agent(*pid, log, true);
    }

    // Every record each agent produced is stored, once: totals and sequence numbers match.
    let db = rusqlite::Connection::open(data.join("cordon.db")).expect("db");
    for h in &fleet.hosts {
        let produced: u64 = runs
            .iter()
            .filter(|(name, _, _)| *name == h.name)
            .map(|(_, _, log)| records_of_run(log))
            .sum();
        let (stored, distinct, last_seq): (i64, i64, i64) = db
            .query_row(
                "SELECT (SELECT count(*) FROM flows f WHERE f.host_id = h.id),
                        (SELECT count(*) FROM (SELECT DISTINCT event, first_seen_ns,
                            last_seen_ns, proto, local_ip, local_port, remote_ip,
                            remote_port, bytes_out, bytes_in, packets_out, packets_in
                         FROM flows f WHERE f.host_id = h.id)),
                        h.last_seq
                 FROM hosts h WHERE h.agent_id = ?1",
                [&h.name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .expect("totals");
        assert!(produced > 50, "{}: only {produced} records", h.name);
        assert_eq!(stored as u64, produced, "{}: stored vs produced", h.name);
        assert_eq!(distinct, stored, "{}: duplicate records", h.name);
        let next_seq: u64 = fs::read_to_string(setup.agent_dir(h).join("spool/next_seq"))
            .expect("next_seq")
            .trim()
            .parse()
            .expect("number");
        assert_eq!(
            last_seq as u64,
            next_seq - 1,
            "{}: sequence numbers",
            h.name
        );
    }

    // Both sides of the traffic, with their processes, through the CLI.
    let out = setup.cordon(&[
        "flows", "--host", "h1", "--port", "8080", "--limit", "10000", "--json",
    ]);
    let flows = out.as_array().expect("flows");
    let side = |dir: &str, remote: &str, exe: &str| {
        flows.iter().any(|f| {
            f["direction"] == dir
                && f["remote_ip"] == remote
                && f["exe"].as_str().is_some_and(|e| e.contains(exe))
        })
    };
    assert!(
        side("outbound", &h2.ip, "curl"),
        "h1's curl to h2 is missing"
    );
    assert!(
        side("inbound", &h2.ip, "python3"),
        "h2's curl into h1's server is missing"
    );
    let out = setup.cordon(&[
        "flows", "--host", "h2", "--port", "8080", "--limit", "10000", "--json",
    ]);
    let flows = out.as_array().expect("flows");
    assert!(
        flows.iter().any(|f| f["direction"] == "inbound"
            && f["remote_ip"] == h1.ip.as_str()
            && f["exe"].as_str().is_some_and(|e| e.contains("python3"))),
        "h1's curl as seen by h2's server is missing"
    );
    let hosts = setup.cordon(&["hosts", "--json"]);
    let hosts = hosts.as_array().expect("hosts");
    assert_eq!(hosts.len(), 2, "{hosts:?}");
    for h in hosts {
        assert_eq!(h["capture"], "ebpf", "{h}");
        let detail = setup.cordon(&["hosts", h["id"].as_str().expect("id"), "--json"]);
        let ip = &fleet.host(h["id"].as_str().expect("id")).ip;
        let addrs = detail["inventory"]["interfaces"].to_string();
        assert!(addrs.contains(ip.as_str()), "{ip} not in {addrs}");
    }

    // A certificate from another CA is refused in the handshake.
    let stranger = Ca::generate("Some other CA").expect("ca");
    let (request, key) = csr();
    let foreign = (stranger.sign_agent(&request, "h9", 1).expect("sign"), key);
    let ca_pem = fs::read_to_string(data.join("pki/ca.pem")).expect("ca.pem");
    assert!(
        hello_over_quic(fleet, &ca_pem, &foreign).is_err(),
        "a certificate from another CA got in"
    );

    // A revoked agent is disconnected and refused.
    let (h2_pid, h2_log) = setup.start_agent(h2, 2);
    setup.cordon(&["revoke", "h2"]);
    let h2_log_text = || fs::read_to_string(&h2_log).unwrap_or_default();
    let start = Instant::now();
    while !h2_log_text().contains("collector connection lost") {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the revoked agent kept its connection:\n{}",
            h2_log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let clog = dir.join("collector-2.err");
    wait_for(&clog, "agent `h2` is revoked", Duration::from_secs(30));
    let detail = setup.cordon(&["hosts", "h2", "--json"]);
    assert_eq!(detail["revoked"], true);
    assert_eq!(detail["connected"], false);
    interrupt(h2_pid);

    // Garbage: random datagrams at the QUIC port, and an enrolled-looking agent sending
    // a frame longer than the limit. The collector stays up and keeps serving.
    let ca_key = fs::read_to_string(data.join("pki/ca.key")).expect("ca.key");
    let ca = Arc::new(Ca::from_pem(&ca_pem, &ca_key).expect("ca"));
    let (request, key) = csr();
    let insider = (ca.sign_agent(&request, "h7", 1).expect("sign"), key);
    in_netns(&fleet.collector_ns, || {
        let sock = UdpSocket::bind("0.0.0.0:0").expect("udp");
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in 0..2000usize {
            let len = 1 + (i * 37) % 1400;
            let junk: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = sock.send_to(&junk, (COLLECTOR_IP, AGENT_PORT));
        }
    });
    oversize_frame(fleet, &ca_pem, &insider);
    let health = ok(
        fleet.run(&fleet.collector_ns, &[&cli_bin(), "health"]),
        "health after garbage",
    );
    assert!(health.starts_with("ok"), "{health}");
    let metrics = ok(
        fleet.run(
            &fleet.collector_ns,
            &["curl", "-sS", "http://127.0.0.1:7480/metrics"],
        ),
        "metrics",
    );
    assert!(
        metrics.contains("connections_refused_total{reason=\"malformed\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("connections_refused_total{reason=\"revoked\"}"),
        "{metrics}"
    );
    // And h1's agent still streams after all that.
    let (pid, log) = setup.start_agent(h1, 3);
    stop_agent(pid, &log, true);
    interrupt(collector);
}

fn csr() -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())
        .expect("params")
        .serialize_request(&key)
        .expect("csr")
        .pem()
        .expect("pem");
    (csr, key.serialize_pem())
}

/// Connects from the collector's namespace with `identity`; Ok if a Hello gets a Welcome.
fn hello_over_quic(fleet: &Fleet, ca_pem: &str, identity: &(String, String)) -> Result<(), String> {
    quic(fleet, ca_pem, identity, |mut send, mut recv| async move {
        write_message(&mut send, &hello())
            .await
            .map_err(|e| e.to_string())?;
        match read_message(&mut recv).await {
            Ok(Some(Message::Welcome(_))) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
}

/// Says Hello, then sends a frame header announcing 64 MiB; the collector must close
/// the connection.
fn oversize_frame(fleet: &Fleet, ca_pem: &str, identity: &(String, String)) {
    let res = quic(fleet, ca_pem, identity, |mut send, mut recv| async move {
        write_message(&mut send, &hello())
            .await
            .map_err(|e| e.to_string())?;
        match read_message(&mut recv).await {
            Ok(Some(Message::Welcome(_))) => {}
            other => return Err(format!("no welcome: {other:?}")),
        }
        tokio::io::AsyncWriteExt::write_all(&mut send, &(64u32 << 20).to_be_bytes())
            .await
            .map_err(|e| e.to_string())?;
        tokio::io::AsyncWriteExt::write_all(&mut send, &[0u8; 4096])
            .await
            .map_err(|e| e.to_string())?;
        match read_message(&mut recv).await {
            Ok(None) | Err(_) => Ok(()),
            Ok(Some(m)) => Err(format!("the collector answered {m:?}")),
        }
    });
    res.expect("the oversize frame closed the connection");
}

fn hello() -> Message {
    Message::Hello(Hello {
        protocol_min: 1,
        protocol_max: 1,
        agent_version: "test".into(),
        host_name: "intruder".into(),
        capture: "none".into(),
        boot_id: "x".into(),
        last_seq: 0,
    })
}

fn quic<F, Fut>(
    fleet: &Fleet,
    ca_pem: &str,
    identity: &(String, String),
    talk: F,
) -> Result<(), String>
where
    F: FnOnce(quinn::SendStream, quinn::RecvStream) -> Fut + Send,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    in_netns(&fleet.collector_ns, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let cfg = client_config(ca_pem, &identity.0, &identity.1).map_err(|e| e.to_string())?;
            let mut ep = quinn::Endpoint::client(SocketAddr::from(([0, 0, 0, 0], 0)))
                .map_err(|e| e.to_string())?;
            ep.set_default_client_config(cfg);
            let addr = SocketAddr::new(COLLECTOR_IP.parse().expect("ip"), AGENT_PORT);
            let res = tokio::time::timeout(Duration::from_secs(10), async {
                let conn = ep
                    .connect(addr, COLLECTOR_IP)
                    .map_err(|e| e.to_string())?
                    .await
                    .map_err(|e| e.to_string())?;
                let (send, recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
                talk(send, recv).await
            })
            .await
            .unwrap_or_else(|_| Err("timed out".into()));
            ep.close(0u32.into(), b"done");
            res
        })
    })
}
