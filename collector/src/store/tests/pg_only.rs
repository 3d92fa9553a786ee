//! What only the PostgreSQL backend has: consumer offsets stored with the data, the shared
//! CA, LISTEN/NOTIFY, reconnection, migrations racing, and an outage.
use std::time::{Duration, Instant};

use cordon_wire::FlowEvent;
use serde_json::json;

use super::*;
use crate::store::{
    postgres::{Notice, PgListener, listen},
    *,
};

/// A PostgreSQL fixture, or return (the variant is skipped).
macro_rules! pg {
    ($name:literal) => {
        match Fixture::postgres($name) {
            Some(f) => f,
            None => return,
        }
    };
}

fn with_app(cfg: &PgConfig, name: &str) -> PgConfig {
    PgConfig {
        application_name: name.into(),
        ..cfg.clone()
    }
}

/// Terminates the sessions named `app` and waits until they are gone.
fn terminate(f: &Fixture, app: &str) {
    let mut c = f.pg_client();
    let n = c
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[&app],
        )
        .expect("terminate")
        .len();
    assert!(n > 0, "no session named {app}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while c
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
            &[&app],
        )
        .expect("count")
        .get::<_, i64>(0)
        > 0
    {
        assert!(Instant::now() < deadline, "{app} still there");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn count(c: &mut ::postgres::Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).expect(sql).get(0)
}

#[test]
fn consumed_batches_and_their_offsets_commit_together() {
    let f = pg!("consumed_batches_and_their_offsets_commit_together");
    let mut s = f.pg_store();
    s.host_connected("h1-agent", "h1", "0.1.0", "ebpf", T0)
        .expect("host");
    let mut raw = f.pg_client();
    // A row trigger that fails the COPY when it meets a poisoned record.
    raw.batch_execute(
        "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN IF NEW.exe = '/poison' THEN RAISE EXCEPTION 'poisoned'; END IF; RETURN NEW; END $$;
         CREATE TRIGGER poison BEFORE INSERT ON flows FOR EACH ROW EXECUTE FUNCTION poison();",
    )
    .expect("trigger");
    let good = batch(1, vec![rec(FlowEvent::Start, 443, "/usr/bin/curl", T0)]);
    let bad = batch(2, vec![rec(FlowEvent::Start, 443, "/poison", T0)]);
    let failed = s.store_consumed(
        "workers",
        "flows",
        &[(0, 10), (1, 7)],
        &[("h1-agent", &good), ("h1-agent", &bad)],
        &mut Compliance::none(),
    );
    assert!(failed.is_err(), "{failed:?}");
    assert!(
        s.consumer_offsets("workers", "flows")
            .expect("offsets")
            .is_empty()
    );
    assert_eq!(count(&mut raw, "SELECT count(*) FROM flows"), 0);
    assert_eq!(count(&mut raw, "SELECT max(last_seq) FROM hosts"), 0);
    // The same group without the poison: rows, sequence and offsets, all at once.
    let stored = s
        .store_consumed(
            "workers",
            "flows",
            &[(0, 10), (1, 7), (0, 9)],
            &[("h1-agent", &good), ("nobody", &good)],
            &mut Compliance::none(),
        )
        .expect("store");
    assert!(matches!(stored[0], Ok(Stored::New { records: 1 })));
    assert!(matches!(stored[1], Err(StoreError::UnknownAgent(_))));
    let offsets = s.consumer_offsets("workers", "flows").expect("offsets");
    assert_eq!(offsets, [(0, 10), (1, 7)].into_iter().collect());
    assert_eq!(count(&mut raw, "SELECT count(*) FROM flows"), 1);
    // Offsets never go back; other groups and topics are apart.
    s.store_consumed(
        "workers",
        "flows",
        &[(0, 3), (2, 1)],
        &[],
        &mut Compliance::none(),
    )
    .expect("older");
    let offsets = s.consumer_offsets("workers", "flows").expect("offsets");
    assert_eq!(offsets, [(0, 10), (1, 7), (2, 1)].into_iter().collect());
    assert!(
        s.consumer_offsets("other", "flows")
            .expect("other")
            .is_empty()
    );
    assert!(
        s.consumer_offsets("workers", "x")
            .expect("topic")
            .is_empty()
    );
}

#[test]
fn a_replayed_batch_is_stored_once() {
    let f = pg!("a_replayed_batch_is_stored_once");
    let mut s = f.pg_store();
    s.host_connected("h1-agent", "h1", "0.1.0", "ebpf", T0)
        .expect("host");
    let b = batch(5, vec![rec(FlowEvent::Start, 443, "/usr/bin/curl", T0); 3]);
    let first = s
        .store_consumed(
            "w",
            "flows",
            &[(3, 101)],
            &[("h1-agent", &b)],
            &mut Compliance::none(),
        )
        .expect("first");
    assert!(matches!(first[..], [Ok(Stored::New { records: 3 })]));
    // Another worker replays it after a rebalance (from an older committed offset).
    let mut other = f.pg_store();
    let again = other
        .store_consumed(
            "w",
            "flows",
            &[(3, 101)],
            &[("h1-agent", &b)],
            &mut Compliance::none(),
        )
        .expect("replay");
    assert!(matches!(again[..], [Ok(Stored::Duplicate)]));
    assert_eq!(s.flows(&FlowFilter::default()).expect("flows").len(), 3);
    assert_eq!(s.conversations("h1-agent").expect("edges")[0].flows, 3);
    assert_eq!(
        other.consumer_offsets("w", "flows").expect("offsets")[&3],
        101
    );
}

#[test]
fn nodes_racing_at_first_start_agree_on_one_ca() {
    let f = pg!("nodes_racing_at_first_start_agree_on_one_ca");
    assert_eq!(f.pg_store().ca().expect("none"), None);
    let got = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for i in 0..2 {
            let mut s = f.pg_store();
            let got = &got;
            scope.spawn(move || {
                let mine = (format!("CERT {i}"), format!("KEY {i}"));
                let stored = s.put_ca_if_absent(&mine.0, &mine.1).expect("put");
                got.lock().expect("lock").push(stored);
            });
        }
    });
    let got = got.into_inner().expect("got");
    assert_eq!(got.len(), 2);
    assert_eq!(got[0], got[1], "one CA for both");
    assert_eq!(f.pg_store().ca().expect("ca"), Some(got[0].clone()));
    let mut s = f.pg_store();
    assert_eq!(s.put_ca_if_absent("late", "late").expect("late"), got[0]);
}

#[test]
fn nodes_starting_together_migrate_once() {
    let Some(cfg) = crate::testing::postgres::test_database("nodes_starting_together_migrate_once")
    else {
        return;
    };
    let barrier = std::sync::Barrier::new(4);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            let (cfg, barrier) = (&cfg, &barrier);
            scope.spawn(move || {
                barrier.wait();
                PgStore::connect(cfg).expect("connect and migrate");
            });
        }
    });
    let f = Fixture::on_pg(cfg);
    let mut raw = f.pg_client();
    let rows = raw
        .query("SELECT version FROM schema_migrations", &[])
        .expect("versions");
    let mut versions: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    versions.sort();
    // Each step once, however many nodes started together.
    let every: Vec<i64> = (1..=crate::store::postgres::SCHEMA_VERSION).collect();
    assert_eq!(versions, every);
}

#[test]
fn listeners_hear_committed_changes_and_say_when_they_reconnected() {
    let f = pg!("listeners_hear_committed_changes_and_say_when_they_reconnected");
    let cfg = with_app(f.pg(), "cordon-test-listener");
    let mut l = PgListener::connect(
        &cfg,
        &[
            listen::COMMANDS,
            listen::OUTBOX,
            listen::POLICY,
            listen::REVOKED,
            listen::RUNS,
        ],
    )
    .expect("listen");
    let wait = Duration::from_secs(5);
    let notice = |ch: &str, payload: &str| Notice::Notify {
        channel: ch.into(),
        payload: payload.into(),
    };
    assert_eq!(l.next(Duration::from_millis(100)).expect("quiet"), None);
    let mut s = f.pg_store();
    s.host_connected("h1-agent", "h1", "0.1.0", "ebpf", T0)
        .expect("host");
    let cmd = NewCommand {
        kind: "isolate",
        body: json!({}),
        by: "ops".into(),
    };
    // Nothing for a command that was not created.
    assert!(
        s.create_command("nobody", &cmd, T0)
            .expect("none")
            .is_none()
    );
    s.create_command("h1-agent", &cmd, T0).expect("create");
    assert_eq!(
        l.next(wait).expect("next"),
        Some(notice(listen::COMMANDS, "h1-agent"))
    );
    assert_eq!(l.next(Duration::from_millis(100)).expect("quiet"), None);
    // Every other channel.
    let v = s.apply_policy("p", "name: p\n", "ops", T0).expect("apply");
    assert_eq!(
        l.next(wait).expect("next"),
        Some(notice(listen::POLICY, &format!("draft:{v}")))
    );
    s.publish_policy(v, "ops", T0)
        .expect("store")
        .expect("publish");
    assert_eq!(
        l.next(wait).expect("next"),
        Some(notice(listen::POLICY, &format!("published:{v}")))
    );
    s.set_label("h1-agent", "env", Some("prod")).expect("label");
    assert_eq!(
        l.next(wait).expect("next"),
        Some(notice(listen::POLICY, "label:h1-agent"))
    );
    let run = s
        .start_run("p", "k", "h1-agent", "h1", &json!({}), "ask", T0)
        .expect("start")
        .expect("run");
    assert_eq!(
        l.next(wait).expect("next"),
        Some(notice(listen::RUNS, &run.to_string()))
    );
    let env = crate::outputs::Envelope {
        key: "k".into(),
        hec: json!({}),
    };
    s.queue_envelope(&env, T0).expect("queue");
    let Some(Notice::Notify { channel, payload }) = l.next(wait).expect("next") else {
        panic!("no outbox notice");
    };
    assert_eq!(channel, listen::OUTBOX);
    let id: i64 = payload.parse().expect("outbox id");
    assert_eq!(s.outbox_after(id - 1, 1).expect("outbox")[0].0, id);
    assert!(s.revoke("h1-agent").expect("revoke"));
    assert_eq!(
        l.next(wait).expect("next"),
        Some(notice(listen::REVOKED, "h1-agent"))
    );

    // Its session is terminated: it says so, and hears again.
    terminate(&f, "cordon-test-listener");
    assert_eq!(l.next(wait).expect("reconnect"), Some(Notice::Reconnected));
    s.create_command("h1-agent", &cmd, T0).expect("create");
    assert_eq!(
        l.next(wait).expect("next"),
        Some(notice(listen::COMMANDS, "h1-agent"))
    );
}

#[test]
fn a_store_reconnects_after_its_session_was_terminated() {
    let f = pg!("a_store_reconnects_after_its_session_was_terminated");
    let mut s = PgStore::connect(&with_app(f.pg(), "cordon-test-store")).expect("store");
    s.host_connected("h1-agent", "h1", "0.1.0", "ebpf", T0)
        .expect("host");
    terminate(&f, "cordon-test-store");
    // The next call after a pause (an idle connection, as after a server restart or an
    // idle timeout) notices and connects again by itself.
    std::thread::sleep(Duration::from_millis(1_100));
    assert_eq!(s.hosts().expect("after reconnect").len(), 1);
    let b = batch(1, vec![rec(FlowEvent::Start, 443, "/usr/bin/curl", T0)]);
    assert_eq!(
        s.store_batch("h1-agent", &b).expect("store"),
        Stored::New { records: 1 }
    );
    // Killed again and used at once: that call may fail, as unavailable, and the one
    // after it works.
    terminate(&f, "cordon-test-store");
    if let Err(e) = s.store_batch("h1-agent", &batch(2, vec![])) {
        assert!(e.is_unavailable(), "{e}");
    }
    assert_eq!(s.flows(&FlowFilter::default()).expect("flows").len(), 1);
}

#[test]
fn while_postgresql_is_down_calls_fail_fast_and_recover_after() {
    if crate::testing::postgres::skip_requested() {
        println!("while_postgresql_is_down_calls_fail_fast_and_recover_after: skipped");
        return;
    }
    let server = crate::testing::postgres::PgServer::start();
    let cfg = server.database();
    let mut s = PgStore::connect(&cfg).expect("store");
    s.host_connected("h1-agent", "h1", "0.1.0", "ebpf", T0)
        .expect("host");
    let mut l = PgListener::connect(&cfg, &[listen::COMMANDS]).expect("listen");
    server.stop();
    for _ in 0..3 {
        let started = Instant::now();
        let e = s.hosts().expect_err("down");
        assert!(e.is_unavailable(), "{e}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "slow: {:?}",
            started.elapsed()
        );
        assert!(!e.to_string().contains(server.password()), "{e}");
    }
    let e = PgStore::connect(&cfg).err().expect("down");
    assert!(e.is_unavailable(), "{e}");
    assert!(!e.to_string().contains(server.password()), "{e}");
    assert!(e.to_string().contains("dbname="), "names the target: {e}");
    let e = l
        .next(Duration::from_millis(200))
        .expect_err("listener down");
    assert!(e.is_unavailable(), "{e}");
    server.resume();
    assert_eq!(s.hosts().expect("back").len(), 1);
    assert_eq!(
        l.next(Duration::from_secs(5)).expect("back"),
        Some(Notice::Reconnected)
    );
}

#[test]
fn a_refused_login_is_not_an_outage_and_never_shows_the_password() {
    let f = pg!("a_refused_login_is_not_an_outage_and_never_shows_the_password");
    let secret = "s3cret-not-the-password";
    let wrong = PgConfig {
        password: Some(secret.into()),
        ..f.pg().clone()
    };
    let e = PgStore::connect(&wrong).err().expect("refused");
    assert!(!e.is_unavailable(), "{e}");
    assert!(!e.to_string().contains(secret), "{e}");
    assert!(!format!("{e:?}").contains(secret), "{e:?}");
    assert!(!format!("{wrong:?}").contains(secret), "{wrong:?}");
    let in_url = PgConfig {
        url: format!("{} password={secret}", f.pg().url),
        password: None,
        ..f.pg().clone()
    };
    assert!(!format!("{in_url:?}").contains(secret), "{in_url:?}");
    let bad = PgConfig {
        url: "host=x port=notaport".into(),
        ..f.pg().clone()
    };
    let e = PgStore::connect(&bad).err().expect("bad url");
    assert!(!e.is_unavailable() && e.to_string().contains("port"), "{e}");
}

#[test]
fn a_store_works_from_a_blocking_task_of_a_tokio_runtime() {
    // The collector calls its store through spawn_blocking (ingest, API): the blocking
    // client's own runtime must work there.
    let f = pg!("a_store_works_from_a_blocking_task_of_a_tokio_runtime");
    let mut s = f.pg_store();
    s.host_connected("h1-agent", "h1", "0.1.0", "ebpf", T0)
        .expect("host");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .expect("runtime");
    let n = rt
        .block_on(async { tokio::task::spawn_blocking(move || s.hosts().map(|h| h.len())).await })
        .expect("join")
        .expect("hosts");
    assert_eq!(n, 1);
}

#[test]
fn outbox_writers_wait_for_the_one_before_to_commit() {
    // An outbox id must not become visible before a smaller one that is still to
    // commit (a sink would pass it for good): writers take turns until their commit.
    let f = pg!("outbox_writers_wait_for_the_one_before_to_commit");
    let mut raw = f.pg_client();
    let mut other = raw.transaction().expect("begin");
    other
        .execute(
            "SELECT pg_advisory_xact_lock($1)",
            &[&crate::store::postgres::OUTBOX_LOCK_KEY],
        )
        .expect("an outbox writer in flight");
    let (done, finished) = std::sync::mpsc::channel();
    let mut s = f.pg_store();
    let writer = std::thread::spawn(move || {
        let env = crate::outputs::Envelope {
            key: "k".into(),
            hec: json!({}),
        };
        s.queue_envelope(&env, T0).expect("queue");
        let _ = done.send(());
    });
    assert!(
        finished.recv_timeout(Duration::from_millis(300)).is_err(),
        "queued while another outbox writer had not committed"
    );
    other.commit().expect("commit");
    finished
        .recv_timeout(Duration::from_secs(10))
        .expect("queued after it");
    writer.join().expect("writer");
}

#[test]
fn a_sink_reading_while_nodes_queue_misses_nothing() {
    let f = pg!("a_sink_reading_while_nodes_queue_misses_nothing");
    let mut s = f.pg_store();
    s.host_connected("h1-agent", "h1", "0.1.0", "ebpf", T0)
        .expect("host");
    let writing = std::sync::atomic::AtomicUsize::new(3);
    let mut seen = Vec::new();
    std::thread::scope(|scope| {
        for w in 0..3 {
            let mut s = f.pg_store();
            let writing = &writing;
            scope.spawn(move || {
                for n in 0..40u64 {
                    let env = crate::outputs::Envelope {
                        key: format!("w{w}"),
                        hec: json!({ "n": n }),
                    };
                    s.queue_envelope(&env, T0 + n).expect("queue");
                }
                writing.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            });
        }
        // The sink: reads after its position, moves to the last id it got.
        let mut pos = 0;
        loop {
            let last_round = writing.load(std::sync::atomic::Ordering::SeqCst) == 0;
            for (id, _) in s.outbox_after(pos, 1_000).expect("read") {
                seen.push(id);
                pos = id;
            }
            if last_round {
                break;
            }
        }
    });
    let all: Vec<i64> = s
        .outbox_after(0, 1_000)
        .expect("all")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(all.len(), 120);
    assert_eq!(seen, all, "the sink saw every envelope, in order");
}
