//! A real PostgreSQL server for tests, started by the tests themselves: `initdb` into a
//! directory of its own under the temp dir, its own port, its Unix socket in that
//! directory, SCRAM password authentication with a generated password, `fsync=off`.
//!
//! - [`PgServer::shared`]: one server per test process, started on first use; each test
//!   takes a fresh database from it ([`PgServer::database`], or [`test_database`], which
//!   also honours `CORDON_SKIP_PG=1`).
//! - [`PgServer::start_in`]: a server of the caller's, for the privileged lab: run under a
//!   command prefix (`["ip", "netns", "exec", "ns1"]`) so it listens inside a network
//!   namespace; dropping the handle stops it and removes its directory.
//!
//! `initdb` and `postgres` refuse to run as root, and CI runs as root: then they run as
//! `nobody` (the directory is chowned to it). Without a prefix the child drops its
//! privileges itself (setgroups, setgid, setuid) before exec and then sets
//! `PR_SET_PDEATHSIG` (a change of uid clears it); with a prefix, which needs root to
//! enter the namespace, `setpriv` after the prefix does both, in that order. Children are
//! spawned from a thread that lives as long as the process, since the parent-death
//! signal fires when the spawning *thread* exits: a test process that dies takes its
//! servers with it. Directories left by dead test processes are removed at the next
//! start. The binaries are looked up in `PATH`, then in `/usr/lib/postgresql/*/bin`;
//! when they are missing the tests fail, saying to run `make setup`.
//!
//! Everything here blocks (it uses the blocking client): call it from test threads, not
//! from inside a tokio runtime.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Child,
    sync::{
        Mutex, MutexGuard, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use process::{new_dir, random_password, remove_stale_dirs, unprivileged_owner};

use crate::store::postgres::PgConfig;

/// The superuser every test server has.
pub const USER: &str = "cordon";
/// Set to 1 to skip the PostgreSQL variants of tests.
pub const SKIP_VAR: &str = "CORDON_SKIP_PG";
/// How long a server may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Directory names: `cordon-pg-<pid>-<n>`.
const DIR_PREFIX: &str = "cordon-pg-";

/// Whether the PostgreSQL variants of tests are to be skipped (`CORDON_SKIP_PG=1`).
pub fn skip_requested() -> bool {
    std::env::var(SKIP_VAR).is_ok_and(|v| v == "1")
}

/// For one test: a fresh database on the shared server; `None`, after printing a line
/// saying the PostgreSQL variant of `test` is skipped, when `CORDON_SKIP_PG=1`. Panics
/// (saying to run `make setup`) when PostgreSQL is not installed.
pub fn test_database(test: &str) -> Option<PgConfig> {
    if skip_requested() {
        println!("{test}: PostgreSQL variant skipped ({SKIP_VAR}=1)");
        return None;
    }
    Some(PgServer::shared().database())
}

/// The directory holding `initdb` and `postgres`: the first in `PATH` that has both,
/// else the newest `/usr/lib/postgresql/<version>/bin`.
pub fn bin_dir() -> Option<PathBuf> {
    let has_both = |d: &Path| d.join("initdb").is_file() && d.join("postgres").is_file();
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            if has_both(&d) {
                // /usr/local/bin/initdb may be a link into the real directory.
                let real = fs::canonicalize(d.join("initdb"))
                    .ok()
                    .and_then(|p| p.parent().map(Path::to_path_buf));
                return Some(real.filter(|r| has_both(r)).unwrap_or(d));
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, d)| has_both(d))
        .collect();
    versions.sort();
    versions.pop().map(|(_, d)| d)
}

/// A PostgreSQL server of the tests. Dropping it stops the server and removes its
/// directory (the shared one is stopped when the test process exits).
pub struct PgServer {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    /// `listen_addresses`; empty: the Unix socket only.
    listen_addr: String,
    prefix: Vec<String>,
    /// `-c` settings after the defaults (a later one wins).
    settings: Vec<String>,
    password: String,
    /// The unprivileged uid and gid it runs as, when the tests run as root.
    owner: Option<(u32, u32)>,
    child: Mutex<Option<Child>>,
    admin: Mutex<Option<::postgres::Client>>,
    databases: AtomicU64,
}

static SHARED: OnceLock<PgServer> = OnceLock::new();

extern "C" fn stop_shared() {
    if let Some(s) = SHARED.get() {
        s.stop();
        let _ = fs::remove_dir_all(&s.dir);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl PgServer {
    /// The test process's server, started on first use (stopped at exit).
    pub fn shared() -> &'static PgServer {
        SHARED.get_or_init(|| {
            let s = Self::start();
            // SAFETY: registers a plain function; it runs once, at exit.
            unsafe { libc::atexit(stop_shared) };
            s
        })
    }

    /// A server of the caller's, on its Unix socket only (for tests that stop and resume
    /// it).
    pub fn start() -> PgServer {
        Self::launch(&[], "", 5432, &[])
    }

    /// A server of the caller's, for the privileged lab: `postgres` runs under `prefix`
    /// (e.g. `["ip", "netns", "exec", "ns1"]`) and listens on `listen_addr:port` (inside
    /// that namespace) as well as on its Unix socket. The socket is a file, so the test
    /// process reaches it from any namespace ([`socket_config`](Self::socket_config)).
    pub fn start_in(prefix: &[&str], listen_addr: &str, port: u16) -> PgServer {
        Self::launch(prefix, listen_addr, port, &[])
    }

    /// As [`start_in`](Self::start_in), with `settings` (`name=value`, as for `-c`) over
    /// the test defaults: `fsync=on`, `synchronous_commit=on` and `full_page_writes=on`
    /// make a server as durable as a production one, for benchmarks.
    pub fn start_with_settings(
        prefix: &[&str],
        listen_addr: &str,
        port: u16,
        settings: &[&str],
    ) -> PgServer {
        Self::launch(prefix, listen_addr, port, settings)
    }

    fn launch(prefix: &[&str], listen_addr: &str, port: u16, settings: &[&str]) -> PgServer {
        let Some(bin) = bin_dir() else {
            panic!(
                "PostgreSQL is not installed (no initdb/postgres in PATH or \
                 /usr/lib/postgresql/*/bin): run `make setup` (it installs postgresql-15), \
                 or set {SKIP_VAR}=1 to skip the PostgreSQL variants of the tests"
            );
        };
        remove_stale_dirs();
        let s = PgServer {
            dir: new_dir(),
            bin,
            port,
            listen_addr: listen_addr.to_string(),
            prefix: prefix.iter().map(|p| p.to_string()).collect(),
            settings: settings.iter().map(|s| s.to_string()).collect(),
            password: random_password(),
            owner: unprivileged_owner(),
            child: Mutex::new(None),
            admin: Mutex::new(None),
            databases: AtomicU64::new(0),
        };
        if let Err(e) = s.init().and_then(|()| s.spawn()) {
            let log = s.log_tail();
            panic!(
                "starting a PostgreSQL test server in {}: {e}\n{log}",
                s.dir.display()
            );
        }
        s
    }

    /// The generated password of the superuser [`USER`].
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The TCP port (also the number in the Unix socket's name).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory of the server: data, log, Unix socket.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A fresh, empty database, with the configuration to reach it as clients of this
    /// server do: over TCP when it listens on an address, else on its Unix socket.
    pub fn database(&self) -> PgConfig {
        self.config(&self.create_database())
    }

    /// Creates a fresh, empty database; returns its name.
    pub fn create_database(&self) -> String {
        let name = format!(
            "cordon_{}_{}",
            std::process::id(),
            self.databases.fetch_add(1, Ordering::Relaxed)
        );
        self.admin_sql(&format!("CREATE DATABASE {name}"));
        name
    }

    /// Drops database `dbname`, ending its sessions (tests that are done with it).
    pub fn drop_database(&self, dbname: &str) {
        self.admin_sql(&format!("DROP DATABASE IF EXISTS {dbname} WITH (FORCE)"));
    }

    /// Runs `sql` on the superuser connection kept for that.
    fn admin_sql(&self, sql: &str) {
        let mut admin = lock(&self.admin);
        for attempt in 0..2 {
            if admin.as_ref().is_none_or(|c| c.is_closed()) {
                *admin = Some(self.connect_admin());
            }
            let Some(c) = admin.as_mut() else { continue };
            match c.batch_execute(sql) {
                Ok(()) => return,
                // The server was stopped and resumed since: connect again, once.
                Err(e) if attempt == 0 && e.as_db_error().is_none() => *admin = None,
                Err(e) => panic!("{sql}: {e:?}"),
            }
        }
        panic!("{sql}: no connection to the test server");
    }

    /// How clients reach database `dbname`: over TCP when the server listens on an
    /// address, else on its Unix socket.
    pub fn config(&self, dbname: &str) -> PgConfig {
        if self.listen_addr.is_empty() {
            return self.socket_config(dbname);
        }
        PgConfig {
            url: format!(
                "host={} port={} user={USER} dbname={dbname}",
                self.listen_addr, self.port
            ),
            password: Some(self.password.clone()),
            application_name: "cordon-test".into(),
        }
    }

    /// Database `dbname` on the Unix socket (reachable from any network namespace).
    pub fn socket_config(&self, dbname: &str) -> PgConfig {
        PgConfig {
            url: format!(
                "host='{}' port={} user={USER} dbname={dbname}",
                self.dir.display(),
                self.port
            ),
            password: Some(self.password.clone()),
            application_name: "cordon-test".into(),
        }
    }

    /// A new superuser connection to the `postgres` database, for what tests do behind
    /// the store's back (terminating sessions, inspecting `pg_stat_activity`).
    pub fn connect_admin(&self) -> ::postgres::Client {
        let cfg = self.socket_config("postgres");
        let mut c: ::postgres::Config = match cfg.url.parse() {
            Ok(c) => c,
            Err(e) => panic!("test server config: {e}"),
        };
        c.password(&self.password)
            .connect_timeout(Duration::from_secs(5));
        match c.connect(::postgres::NoTls) {
            Ok(c) => c,
            Err(e) => panic!("connecting to the test server: {e:?}"),
        }
    }

    /// Stops the server (fast shutdown: sessions are ended), waiting for it to exit.
    pub fn stop(&self) {
        let Some(mut child) = lock(&self.child).take() else {
            return;
        };
        let pid = child.id() as libc::pid_t;
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut signal = libc::SIGINT;
        loop {
            // SAFETY: signalling our own child, whose pid is not reaped yet.
            unsafe { libc::kill(pid, signal) };
            let step = Instant::now() + Duration::from_secs(5);
            while Instant::now() < step {
                if !matches!(child.try_wait(), Ok(None)) {
                    return;
                }
                thread::sleep(Duration::from_millis(20));
            }
            if Instant::now() > deadline {
                signal = libc::SIGKILL;
            } else {
                // Immediate shutdown if the fast one hangs.
                signal = libc::SIGQUIT;
            }
        }
    }

    /// Starts a stopped server again on the same data, port and password.
    pub fn resume(&self) {
        if lock(&self.child).is_some() {
            return;
        }
        if let Err(e) = self.spawn() {
            panic!(
                "resuming the PostgreSQL test server: {e}\n{}",
                self.log_tail()
            );
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if let Some(c) = lock(&self.admin).take() {
            drop(c);
        }
        self.stop();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

mod process;
#[cfg(test)]
mod tests;
