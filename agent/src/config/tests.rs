use super::*;

fn parse(text: &str) -> Result<AgentConfig, ConfigError> {
    AgentConfig::parse(text, Path::new("agent.toml"))
}

#[test]
fn empty_config_is_the_defaults() {
    let cfg = parse("").expect("defaults are valid");
    assert_eq!(cfg, AgentConfig::default());
}

#[test]
fn shipped_example_is_valid() {
    let text = include_str!("../../../packaging/agent.toml");
    let cfg = parse(text).expect("packaging/agent.toml must validate");
    // It says "the values below are the defaults": keep it true.
    assert_eq!(cfg, AgentConfig::default());
}

#[test]
fn unknown_field_is_named() {
    let err = parse("[capture]\npoll_interval = 5\n").expect_err("unknown field");
    let msg = err.to_string();
    assert!(msg.contains("poll_interval"), "{msg}");
    assert!(msg.contains("line 2"), "{msg}");
}

#[test]
fn wrong_type_is_named() {
    let err = parse("[capture]\nmode = \"pcap\"\n").expect_err("bad enum");
    assert!(err.to_string().contains("mode"), "{err}");
}

#[test]
fn semantic_errors_name_the_field() {
    let cases = [
        (
            "[capture]\npoll_interval_ms = 0\n",
            "capture.poll_interval_ms",
        ),
        (
            "[capture]\nring_buffer_bytes = 5000\n",
            "capture.ring_buffer_bytes",
        ),
        (
            "[capture]\npoll_interval_ms = 5000\nexport_interval_ms = 1000\n",
            "capture.export_interval_ms",
        ),
        (
            "[capture]\ncgroup_path = \"relative/dir\"\n",
            "capture.cgroup_path",
        ),
        (
            "[capture]\nflow_map_entries = 10\n",
            "capture.flow_map_entries",
        ),
        (
            "[capture]\nwakeup_bytes = 4194304\n",
            "capture.wakeup_bytes",
        ),
        (
            "[uplink]\ncollectors = [\"10.0.0.5\"]\n",
            "uplink.collectors",
        ),
        (
            "[uplink]\ncollectors = [\"10.0.0.5:7470\", \"collector:\"]\n",
            "uplink.collectors",
        ),
        (
            "[uplink]\ncollectors = [\"::1:7470\"]\n",
            "uplink.collectors",
        ),
        (
            "[uplink]\nserver_name = \"not a name\"\n",
            "uplink.server_name",
        ),
        ("[uplink]\ndead_after_ms = 999\n", "uplink.dead_after_ms"),
        ("[uplink]\ndead_after_ms = 10001\n", "uplink.dead_after_ms"),
    ];
    for (text, field) in cases {
        let err = parse(text).expect_err(text);
        match &err {
            ConfigError::Invalid { field: f, .. } => assert_eq!(*f, field, "{err}"),
            other => panic!("expected Invalid for {text:?}, got {other}"),
        }
    }
}

#[test]
fn collectors_are_ips_ipv6_or_names_each_with_its_own_certificate_name() {
    let cfg = parse(
        "[uplink]\ncollectors = [\"10.0.0.5:7470\", \"[2001:db8::5]:7470\", \"node-3.example:7470\"]\ndead_after_ms = 1000\n",
    )
    .expect("valid");
    let names: Vec<String> = cfg
        .uplink
        .collectors()
        .expect("collectors")
        .into_iter()
        .map(|c| c.server_name)
        .collect();
    assert_eq!(names, ["10.0.0.5", "2001:db8::5", "node-3.example"]);
    assert_eq!(cfg.uplink.dead_after(), std::time::Duration::from_secs(1));
    // A server_name, when set, still applies to every collector.
    let cfg = parse(
        "[uplink]\ncollectors = [\"10.0.0.5:7470\", \"node-3.example:7470\"]\nserver_name = \"collector.example\"\n",
    )
    .expect("valid");
    let collectors = cfg.uplink.collectors().expect("collectors");
    assert!(
        collectors
            .iter()
            .all(|c| c.server_name == "collector.example")
    );
    assert_eq!(cfg.uplink.dead_after_ms, DEFAULT_DEAD_AFTER_MS);
}

#[test]
fn a_bad_collector_says_which_entry_and_why() {
    let err =
        parse("[uplink]\ncollectors = [\"10.0.0.5:7470\", \"collector\"]\n").expect_err("no port");
    let msg = err.to_string();
    assert!(msg.contains("uplink.collectors"), "{msg}");
    assert!(msg.contains("`collector`: no port"), "{msg}");
}
