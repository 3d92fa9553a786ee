//! One store test suite, run against both backends so neither drifts: every test body is
//! a plain function of a [`Fixture`], and [`both!`] makes two tests of it,
//! `<file>::on_sqlite::<name>` and `<file>::on_postgres::<name>`. The PostgreSQL variant
//! gets a fresh database on the test process's own server (`testing::postgres`); with
//! `CORDON_SKIP_PG=1` it prints that it is skipped. Tests of what only PostgreSQL has
//! are in `pg_only`.
use std::path::PathBuf;

use cordon_wire::{Direction, FlowBatch, FlowEvent, FlowRecord, Process, Proto, Verdict};

use super::{Store, postgres::PgConfig, postgres::PgStore};

mod alerts;
mod bench;
mod cluster;
mod commands;
mod flows;
mod hosts;
mod learn;
mod pg_only;
mod policies;
mod runs;
mod tokens;

/// Makes an `on_sqlite` and an `on_postgres` test of each named body `fn(&Fixture)`.
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[test]
                fn $name() {
                    super::$name(&$crate::store::tests::Fixture::sqlite());
                }
            )*
        }
        mod on_postgres {
            $(
                #[test]
                fn $name() {
                    if let Some(f) = $crate::store::tests::Fixture::postgres(stringify!($name)) {
                        super::$name(&f);
                    }
                }
            )*
        }
    };
}
pub(crate) use both;

/// A test's database, on one backend; [`open`](Self::open) makes connections to it.
pub(crate) struct Fixture {
    db: Db,
}

enum Db {
    /// A database file (so that several connections share it), in a directory removed
    /// with the fixture.
    Sqlite(#[allow(dead_code)] tempfile::TempDir, PathBuf),
    /// A database of the shared test server, dropped with the fixture.
    Postgres(PgConfig),
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Db::Postgres(cfg) = &self.db
            && let Some(name) = cfg
                .url
                .parse::<::postgres::Config>()
                .ok()
                .and_then(|c| c.get_dbname().map(str::to_string))
        {
            crate::testing::postgres::PgServer::shared().drop_database(&name);
        }
    }
}

impl Fixture {
    pub(crate) fn sqlite() -> Fixture {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("cordon.db");
        Fixture {
            db: Db::Sqlite(dir, path),
        }
    }

    /// A fresh database on the test server, or `None` when the PostgreSQL variants are
    /// skipped.
    pub(crate) fn postgres(test: &str) -> Option<Fixture> {
        crate::testing::postgres::test_database(test).map(|cfg| Fixture {
            db: Db::Postgres(cfg),
        })
    }

    /// A fixture on a PostgreSQL database the test made itself.
    pub(crate) fn on_pg(cfg: PgConfig) -> Fixture {
        Fixture {
            db: Db::Postgres(cfg),
        }
    }

    /// Opening a store, when that is expected to fail.
    pub(crate) fn open_err(&self) -> Option<super::StoreError> {
        match &self.db {
            Db::Sqlite(_, path) => Store::open(path).err(),
            Db::Postgres(cfg) => Store::postgres(cfg).err(),
        }
    }

    /// A new connection (a new store) to this test's database.
    pub(crate) fn open(&self) -> Store {
        match &self.db {
            Db::Sqlite(_, path) => Store::open(path).expect("open sqlite"),
            Db::Postgres(cfg) => Store::postgres(cfg).expect("connect postgres"),
        }
    }

    /// The PostgreSQL configuration (only for PostgreSQL fixtures).
    pub(crate) fn pg(&self) -> &PgConfig {
        match &self.db {
            Db::Postgres(cfg) => cfg,
            Db::Sqlite(..) => panic!("not a PostgreSQL fixture"),
        }
    }

    /// A `PgStore` itself, for what only PostgreSQL has.
    pub(crate) fn pg_store(&self) -> PgStore {
        PgStore::connect(self.pg()).expect("connect postgres")
    }

    /// A plain client on this test's PostgreSQL database, behind the store's back.
    pub(crate) fn pg_client(&self) -> ::postgres::Client {
        let cfg = self.pg();
        let mut c: ::postgres::Config = cfg.url.parse().expect("url");
        if let Some(p) = &cfg.password {
            c.password(p);
        }
        c.application_name("cordon-test-raw");
        c.connect(::postgres::NoTls).expect("raw client")
    }

    /// Records a schema version newer than any this code knows, behind the store's back.
    pub(crate) fn bump_schema(&self, to: i64) {
        match &self.db {
            Db::Sqlite(_, path) => {
                let conn = rusqlite::Connection::open(path).expect("raw");
                conn.pragma_update(None, "user_version", to).expect("bump");
            }
            Db::Postgres(_) => {
                self.pg_client()
                    .execute(
                        "INSERT INTO schema_migrations (version, applied_ns) VALUES ($1, 0)",
                        &[&to],
                    )
                    .expect("bump");
            }
        }
    }
}

pub(crate) const T0: u64 = 1_700_000_000_000_000_000;

/// An outbound TCP record to 10.0.0.2:`port` by process `exe`, seen at `t`.
pub(crate) fn rec(event: FlowEvent, port: u16, exe: &str, t: u64) -> FlowRecord {
    FlowRecord {
        event,
        first_seen_ns: t,
        last_seen_ns: t + 1_000,
        proto: Proto::Tcp,
        direction: Direction::Outbound,
        local: "10.0.0.1:40000".parse().expect("addr"),
        remote: format!("10.0.0.2:{port}").parse().expect("addr"),
        bytes_out: 100,
        bytes_in: 200,
        packets_out: 2,
        packets_in: 2,
        tcp_flags: (0x12, 0x12),
        closed: event == FlowEvent::End,
        verdict: Verdict::Forwarded,
        process: Some(Process {
            pid: 42,
            ppid: Some(1),
            uid: 0,
            user: Some("root".into()),
            comm: "curl".into(),
            exe: Some(exe.into()),
            cmdline: Some("curl x".into()),
            cgroup: Some("/".into()),
        }),
        unattributed_reason: None,
    }
}

pub(crate) fn batch(seq: u64, records: Vec<FlowRecord>) -> FlowBatch {
    FlowBatch {
        seq,
        records,
        dropped_before: 0,
    }
}

/// A store with host `h1` (agent `h1-agent`) connected.
pub(crate) fn store_with_h1(f: &Fixture) -> Store {
    let mut s = f.open();
    let (_, seq) = s
        .host_connected("h1-agent", "h1", "0.1.0", "ebpf", T0)
        .expect("host");
    assert_eq!(seq, 0);
    s
}
