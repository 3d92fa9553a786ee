//! Storing flow batches (sequence dedup, group commit), querying flows and conversations,
//! retention, and schema versions.
use cordon_wire::{Direction, FlowEvent};

use super::*;
use crate::store::*;

fn batches_are_stored_once_and_resends_are_recognised(f: &Fixture) {
    let mut s = store_with_h1(f);
    let b = batch(1, vec![rec(FlowEvent::Start, 443, "/usr/bin/curl", T0)]);
    assert_eq!(
        s.store_batch("h1-agent", &b).expect("store"),
        Stored::New { records: 1 }
    );
    assert_eq!(
        s.store_batch("h1-agent", &b).expect("resend"),
        Stored::Duplicate
    );
    assert_eq!(s.flows(&FlowFilter::default()).expect("query").len(), 1);
    // The stored sequence survives a reconnect.
    let (_, seq) = s
        .host_connected("h1-agent", "h1", "0.1.1", "ebpf", T0 + 5)
        .expect("host");
    assert_eq!(seq, 1);
    assert!(matches!(
        s.store_batch("nobody", &b),
        Err(StoreError::UnknownAgent(_))
    ));
    // An older batch (a resend of one before the last) is a duplicate too.
    let b2 = batch(2, vec![rec(FlowEvent::Start, 443, "/usr/bin/curl", T0)]);
    s.store_batch("h1-agent", &b2).expect("store");
    assert_eq!(
        s.store_batch("h1-agent", &b).expect("old"),
        Stored::Duplicate
    );
    // Another connection sees the same.
    let other = f.open();
    assert_eq!(other.flows(&FlowFilter::default()).expect("query").len(), 2);
    assert_eq!(
        other.host("h1-agent").expect("host").expect("h1").last_seq,
        2
    );
}

fn a_group_commit_stores_each_batch_once_and_fails_only_the_bad_one(f: &Fixture) {
    let mut s = store_with_h1(f);
    s.host_connected("h2-agent", "h2", "0.1.0", "ebpf", T0)
        .expect("host");
    let one = batch(1, vec![rec(FlowEvent::Start, 443, "/usr/bin/curl", T0)]);
    let two = batch(
        2,
        vec![rec(FlowEvent::Start, 443, "/usr/bin/curl", T0 + 1); 3],
    );
    let results = s
        .store_batches(
            &[
                ("h1-agent", &one),
                ("nobody", &one),
                ("h1-agent", &one), // a resend within the same group
                ("h2-agent", &one),
                ("h1-agent", &two),
            ],
            &mut Compliance::none(),
        )
        .expect("commit");
    assert!(matches!(results[0], Ok(Stored::New { records: 1 })));
    assert!(matches!(results[1], Err(StoreError::UnknownAgent(_))));
    assert!(matches!(results[2], Ok(Stored::Duplicate)));
    assert!(matches!(results[3], Ok(Stored::New { records: 1 })));
    assert!(matches!(results[4], Ok(Stored::New { records: 3 })));
    assert_eq!(results.len(), 5);
    assert_eq!(s.flows(&FlowFilter::default()).expect("query").len(), 5);
    let (_, seq) = s
        .host_connected("h1-agent", "h1", "0.1.0", "ebpf", T0 + 5)
        .expect("host");
    assert_eq!(seq, 2);
    // Both agents' edges were counted once per start record.
    assert_eq!(s.conversations("h1-agent").expect("edges")[0].flows, 4);
    assert_eq!(s.conversations("h2-agent").expect("edges")[0].flows, 1);
    // An empty group and a group of duplicates store nothing.
    assert!(
        s.store_batches(&[], &mut Compliance::none())
            .expect("empty")
            .is_empty()
    );
    let dup = s
        .store_batches(&[("h1-agent", &one)], &mut Compliance::none())
        .expect("dup");
    assert!(matches!(dup[..], [Ok(Stored::Duplicate)]));
    assert_eq!(s.flows(&FlowFilter::default()).expect("query").len(), 5);
}

fn flows_are_filtered_and_limited(f: &Fixture) {
    let mut s = store_with_h1(f);
    s.host_connected("h2-agent", "h2", "0.1.0", "procfs", T0)
        .expect("host");
    s.store_batch(
        "h1-agent",
        &batch(
            1,
            vec![
                rec(FlowEvent::Start, 443, "/usr/bin/curl", T0),
                rec(FlowEvent::End, 443, "/usr/bin/curl", T0 + 10),
                rec(FlowEvent::Start, 5432, "/usr/bin/psql", T0 + 20),
            ],
        ),
    )
    .expect("store");
    let mut ssh = rec(FlowEvent::Start, 22, "/usr/bin/ssh", T0);
    ssh.process = None;
    ssh.unattributed_reason = Some("exited".into());
    s.store_batch("h2-agent", &batch(1, vec![ssh]))
        .expect("store");
    let q = |f: FlowFilter| s.flows(&f).expect("query");
    let all = q(FlowFilter::default());
    assert_eq!(all.len(), 4);
    // Newest first; every column comes back as written.
    assert_eq!(
        all[0],
        FlowRow {
            id: all[0].id,
            host: "h1".into(),
            event: "start".into(),
            first_seen_ns: T0 + 20,
            last_seen_ns: T0 + 1_020,
            proto: "tcp".into(),
            direction: "outbound".into(),
            local_ip: "10.0.0.1".into(),
            local_port: 40000,
            remote_ip: "10.0.0.2".into(),
            remote_port: 5432,
            bytes_out: 100,
            bytes_in: 200,
            pid: Some(42),
            exe: Some("/usr/bin/psql".into()),
            verdict: "forwarded".into(),
            policy_verdict: None,
            policy_rule: None,
            policy_version: None,
        }
    );
    let h2 = q(FlowFilter {
        host: Some("h2".into()),
        ..Default::default()
    });
    assert_eq!(h2.len(), 1);
    assert_eq!((h2[0].pid, h2[0].exe.as_deref()), (None, None));
    assert_eq!(
        q(FlowFilter {
            host: Some("h1-agent".into()),
            ..Default::default()
        })
        .len(),
        3
    );
    assert_eq!(
        q(FlowFilter {
            port: Some(443),
            ..Default::default()
        })
        .len(),
        2
    );
    assert_eq!(
        q(FlowFilter {
            port: Some(40000),
            ..Default::default()
        })
        .len(),
        0,
        "the port is the service port: not the outbound flows' ephemeral local one"
    );
    let psql = q(FlowFilter {
        exe: Some("/usr/bin/psql".into()),
        ..Default::default()
    });
    assert_eq!(psql.len(), 1);
    assert_eq!((psql[0].remote_port, psql[0].pid), (5432, Some(42)));
    assert_eq!(
        q(FlowFilter {
            since_ns: Some(T0 + 1_015),
            ..Default::default()
        })
        .len(),
        1
    );
    assert_eq!(
        q(FlowFilter {
            until_ns: Some(T0 + 5),
            ..Default::default()
        })
        .len(),
        2
    );
    let newest = q(FlowFilter {
        limit: 1,
        ..Default::default()
    });
    assert_eq!(newest[0].remote_port, 5432);
    assert_eq!(
        q(FlowFilter {
            remote_ip: Some("10.0.0.9".parse().expect("ip")),
            ..Default::default()
        })
        .len(),
        0
    );
    assert_eq!(
        q(FlowFilter {
            remote_ip: Some("10.0.0.2".parse().expect("ip")),
            host: Some("h1".into()),
            port: Some(443),
            exe: Some("/usr/bin/curl".into()),
            since_ns: Some(T0),
            until_ns: Some(T0 + 11),
            limit: 10,
            ..Default::default()
        })
        .len(),
        2,
        "filters combine"
    );
}

fn exclusions_leave_values_out_and_keep_unattributed_flows(f: &Fixture) {
    let mut s = store_with_h1(f);
    let mut anon = rec(FlowEvent::Start, 53, "", T0 + 30);
    anon.process = None;
    let mut inbound = rec(FlowEvent::Start, 51000, "/usr/sbin/sshd", T0 + 40);
    inbound.direction = Direction::Inbound;
    inbound.local = "10.0.0.1:443".parse().expect("addr");
    s.store_batch(
        "h1-agent",
        &batch(
            1,
            vec![
                rec(FlowEvent::Start, 443, "/usr/bin/curl", T0),
                rec(FlowEvent::Start, 5432, "/usr/bin/psql", T0 + 20),
                anon,
                inbound,
            ],
        ),
    )
    .expect("store");
    let ports = |x: FlowExclude| -> Vec<u16> {
        let mut v: Vec<u16> = s
            .flows(&FlowFilter {
                exclude: x,
                ..Default::default()
            })
            .expect("query")
            .iter()
            .map(|r| r.remote_port)
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        ports(FlowExclude {
            exe: Some("/usr/bin/curl".into()),
            ..Default::default()
        }),
        vec![53, 5432, 51000],
        "the unattributed flow stays"
    );
    assert_eq!(
        ports(FlowExclude {
            port: Some(443),
            ..Default::default()
        }),
        vec![53, 5432],
        "the service port excludes, the local one of an inbound flow"
    );
    assert_eq!(
        ports(FlowExclude {
            host: Some("h1".into()),
            ..Default::default()
        }),
        Vec::<u16>::new()
    );
    assert_eq!(
        ports(FlowExclude {
            remote_ip: Some("10.0.0.2".parse().expect("ip")),
            ..Default::default()
        }),
        Vec::<u16>::new()
    );
    // A port search finds the service port of both directions, newest first, within its
    // limit.
    let by_port = |limit| {
        s.flows(&FlowFilter {
            port: Some(443),
            limit,
            ..Default::default()
        })
        .expect("query")
        .iter()
        .map(|r| r.remote_port)
        .collect::<Vec<_>>()
    };
    assert_eq!(by_port(10), vec![51000, 443]);
    assert_eq!(by_port(1), vec![51000]);
}

fn protocol_and_host_set_filters(f: &Fixture) {
    let mut s = store_with_h1(f);
    s.host_connected("h2-agent", "h2", "0.1.0", "ebpf", T0)
        .expect("host");
    let mut udp = rec(FlowEvent::Start, 53, "/usr/sbin/unbound", T0 + 5);
    udp.proto = cordon_wire::Proto::Udp;
    s.store_batch(
        "h1-agent",
        &batch(
            1,
            vec![rec(FlowEvent::Start, 443, "/usr/bin/curl", T0), udp],
        ),
    )
    .expect("store");
    s.store_batch(
        "h2-agent",
        &batch(1, vec![rec(FlowEvent::Start, 22, "/usr/bin/ssh", T0)]),
    )
    .expect("store");
    let ports = |f: FlowFilter| -> Vec<u16> {
        let mut v: Vec<u16> = s
            .flows(&f)
            .expect("query")
            .iter()
            .map(|r| r.remote_port)
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        ports(FlowFilter {
            proto: Some("udp".into()),
            ..Default::default()
        }),
        vec![53]
    );
    assert_eq!(
        ports(FlowFilter {
            agents: Some(vec!["h2-agent".into()]),
            ..Default::default()
        }),
        vec![22]
    );
    assert_eq!(
        ports(FlowFilter {
            agents: Some(vec!["h1-agent".into(), "h2-agent".into()]),
            proto: Some("tcp".into()),
            ..Default::default()
        }),
        vec![22, 443]
    );
    assert!(
        ports(FlowFilter {
            agents: Some(vec![]),
            ..Default::default()
        })
        .is_empty(),
        "an empty group has no flows"
    );
}

fn pages_follow_one_another_without_gaps_or_repeats(f: &Fixture) {
    let mut s = store_with_h1(f);
    // Ten flows, pairs of them last seen at the same instant (ties broken by id).
    let recs: Vec<_> = (0..10u64)
        .map(|i| {
            rec(
                FlowEvent::Start,
                8000 + i as u16,
                "/usr/bin/curl",
                T0 + (i / 2) * 10,
            )
        })
        .collect();
    s.store_batch("h1-agent", &batch(1, recs)).expect("store");
    for port in [None, Some(8004)] {
        let mut seen = Vec::new();
        let mut before = None;
        loop {
            let page = s
                .flows(&FlowFilter {
                    limit: 3,
                    port,
                    before,
                    ..Default::default()
                })
                .expect("page");
            if page.is_empty() {
                break;
            }
            before = page.last().map(|r| (r.last_seen_ns, r.id));
            seen.extend(page.iter().map(|r| r.remote_port));
        }
        let mut want: Vec<u16> = match port {
            Some(p) => vec![p],
            None => (8000..8010).collect(),
        };
        want.reverse();
        let mut got = seen.clone();
        got.sort_by(|a, b| b.cmp(a));
        assert_eq!(got, want, "port {port:?}: every flow once: {seen:?}");
    }
}

fn one_flow_reads_whole_and_a_summary_counts_the_window(f: &Fixture) {
    let mut s = store_with_h1(f);
    s.host_connected("h2-agent", "h2", "0.1.0", "ebpf", T0)
        .expect("host");
    let sec = 1_000_000_000;
    // Whole minutes from a minute's start, where the per-minute counts and the flows agree.
    let base = (T0 / (60 * sec) + 1) * 60 * sec;
    let at = |i: u64| base + i * 60 * sec;
    s.store_batch(
        "h1-agent",
        &batch(
            1,
            vec![
                rec(FlowEvent::Start, 443, "/usr/bin/curl", at(0)),
                rec(FlowEvent::Start, 443, "/usr/bin/curl", at(5)),
                rec(FlowEvent::Start, 22, "/usr/bin/ssh", at(12)),
            ],
        ),
    )
    .expect("store");
    s.store_batch(
        "h2-agent",
        &batch(1, vec![rec(FlowEvent::End, 8080, "/usr/bin/wget", at(25))]),
    )
    .expect("store");
    let newest = &s.flows(&FlowFilter::default()).expect("query")[0];
    let d = s.flow(newest.id).expect("read").expect("the flow");
    assert_eq!(&d.row, newest);
    assert_eq!(d.agent_id, "h2-agent");
    assert_eq!((d.packets_out, d.packets_in, d.closed), (2, 2, true));
    assert_eq!(d.uid, Some(0));
    assert_eq!(d.user.as_deref(), Some("root"));
    assert_eq!(d.cmdline.as_deref(), Some("curl x"));
    assert_eq!(d.cgroup.as_deref(), Some("/"));
    assert_eq!(d.comm.as_deref(), Some("curl"));
    assert!(s.flow(newest.id + 1000).expect("read").is_none());

    // 30 minutes in 3 buckets of 10, from the per-minute counts (nothing but time is
    // asked), and the same from the flows (a filter the counts do not have: a port to
    // leave out that no flow uses).
    let window = FlowFilter {
        since_ns: Some(base),
        until_ns: Some(at(30)),
        ..Default::default()
    };
    let sum = s.flow_summary(&window, 3).expect("summary");
    assert_eq!((sum.start_ns, sum.width_ns), (base, 600 * sec));
    let totals: Vec<u64> = sum.buckets.iter().map(|b| b.total()).collect();
    assert_eq!(totals, vec![2, 1, 1]);
    let mut raw_filter = window.clone();
    raw_filter.exclude.port = Some(1);
    let raw = s.flow_summary(&raw_filter, 3).expect("summary");
    assert_eq!((raw.start_ns, raw.width_ns), (sum.start_ns, sum.width_ns));
    assert_eq!(raw.buckets, sum.buckets, "the counts agree with the flows");
    assert_eq!(raw.top_hosts, sum.top_hosts);
    // A day's window is counted by the hour, the same flows.
    let day = FlowFilter {
        since_ns: Some(base),
        until_ns: Some(base + 24 * 3600 * sec),
        ..Default::default()
    };
    let by_hour = s.flow_summary(&day, 24).expect("summary");
    assert_eq!(by_hour.width_ns % (3600 * sec), 0, "whole hours");
    assert_eq!(by_hour.start_ns % (3600 * sec), 0, "whole hours");
    let mut raw_day = day.clone();
    raw_day.exclude.port = Some(1);
    let raw = s.flow_summary(&raw_day, 24).expect("summary");
    let total = |x: &FlowSummary| x.buckets.iter().map(|b| b.total()).sum::<u64>();
    assert_eq!((total(&by_hour), total(&raw)), (4, 4));
    assert_eq!(by_hour.top_hosts, raw.top_hosts);
    assert_eq!(sum.buckets[0].unchecked, 2, "no policy was published");
    assert_eq!(
        sum.top_hosts,
        vec![
            TopHost {
                host: "h1".into(),
                flows: 3,
            },
            TopHost {
                host: "h2".into(),
                flows: 1,
            },
        ]
    );
    assert!(sum.top_escaped_ports.is_empty());
    // The filters apply: one host, one (service) port.
    let h2 = s
        .flow_summary(
            &FlowFilter {
                host: Some("h2".into()),
                ..window.clone()
            },
            3,
        )
        .expect("summary");
    assert_eq!(h2.buckets.iter().map(|b| b.total()).sum::<u64>(), 1);
    let p443 = s
        .flow_summary(
            &FlowFilter {
                port: Some(443),
                ..window.clone()
            },
            3,
        )
        .expect("summary");
    assert_eq!(p443.top_hosts[0].flows, 2);
    let none = s
        .flow_summary(
            &FlowFilter {
                host: Some("nobody".into()),
                ..window
            },
            3,
        )
        .expect("summary");
    assert_eq!(none.buckets.len(), 3);
    assert!(none.top_hosts.is_empty());
    // Retention takes the minutes with their flows.
    s.apply_retention(at(13)).expect("retention");
    let after = s
        .flow_summary(
            &FlowFilter {
                since_ns: Some(base),
                until_ns: Some(at(30)),
                ..Default::default()
            },
            3,
        )
        .expect("summary");
    assert_eq!(
        after.buckets.iter().map(|b| b.total()).collect::<Vec<_>>(),
        vec![0, 0, 1]
    );
}

fn conversations_count_flow_starts_per_edge(f: &Fixture) {
    let mut s = store_with_h1(f);
    let recs = vec![
        rec(FlowEvent::Start, 443, "/usr/bin/curl", T0),
        rec(FlowEvent::End, 443, "/usr/bin/curl", T0),
        rec(FlowEvent::Start, 443, "/usr/bin/curl", T0 + 1),
        rec(FlowEvent::Start, 5432, "/usr/bin/psql", T0 + 2),
    ];
    s.store_batch("h1-agent", &batch(1, recs)).expect("store");
    let mut inbound = rec(FlowEvent::Start, 51000, "/usr/sbin/sshd", T0 + 3);
    inbound.direction = Direction::Inbound;
    inbound.local = "10.0.0.1:22".parse().expect("addr");
    let mut anon = rec(FlowEvent::Start, 443, "", T0 + 4);
    anon.process = None;
    s.store_batch("h1-agent", &batch(2, vec![inbound, anon.clone(), anon]))
        .expect("store");
    let edges = s.conversations("h1-agent").expect("edges");
    assert_eq!(edges.len(), 4, "{edges:?}");
    assert_eq!(
        edges[0],
        Conversation {
            direction: "outbound".into(),
            proto: "tcp".into(),
            remote_ip: "10.0.0.2".into(),
            port: 443,
            exe: "".into(),
            flows: 2,
        }
    );
    assert_eq!(
        edges[1],
        Conversation {
            direction: "outbound".into(),
            proto: "tcp".into(),
            remote_ip: "10.0.0.2".into(),
            port: 443,
            exe: "/usr/bin/curl".into(),
            flows: 2,
        }
    );
    // Inbound: the service port is the local one.
    assert!(
        edges
            .iter()
            .any(|e| e.direction == "inbound" && e.port == 22 && e.exe == "/usr/sbin/sshd")
    );
    assert!(s.conversations("nobody").expect("none").is_empty());
}

fn retention_removes_old_flows(f: &Fixture) {
    {
        let mut s = store_with_h1(f);
        s.store_batch(
            "h1-agent",
            &batch(
                1,
                vec![
                    rec(FlowEvent::Start, 1, "/a", T0),
                    rec(FlowEvent::Start, 2, "/b", T0 + 1_000_000),
                ],
            ),
        )
        .expect("store");
        assert_eq!(s.apply_retention(T0 + 500_000).expect("retention"), 1);
        assert_eq!(s.apply_retention(T0 + 500_000).expect("again"), 0);
        s.set_cache_kib(64 * 1024).expect("cache");
    }
    let s = f.open();
    let left = s.flows(&FlowFilter::default()).expect("query");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].remote_port, 2);
    // Edges are aggregates, not flows: they stay.
    assert_eq!(s.conversations("h1-agent").expect("edges").len(), 2);
}

fn a_newer_schema_is_refused(f: &Fixture) {
    drop(f.open());
    f.bump_schema(99);
    let refused = f.open_err();
    assert!(
        matches!(refused, Some(StoreError::TooNew { found: 99, .. })),
        "{refused:?}"
    );
}

both!(
    batches_are_stored_once_and_resends_are_recognised,
    a_group_commit_stores_each_batch_once_and_fails_only_the_bad_one,
    flows_are_filtered_and_limited,
    exclusions_leave_values_out_and_keep_unattributed_flows,
    one_flow_reads_whole_and_a_summary_counts_the_window,
    pages_follow_one_another_without_gaps_or_repeats,
    protocol_and_host_set_filters,
    conversations_count_flow_starts_per_edge,
    retention_removes_old_flows,
    a_newer_schema_is_refused,
);
