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
    ];
    for (text, field) in cases {
        let err = parse(text).expect_err(text);
        match &err {
            ConfigError::Invalid { field: f, .. } => assert_eq!(*f, field, "{err}"),
            other => panic!("expected Invalid for {text:?}, got {other}"),
        }
    }
}
