//! Running the server's processes: `initdb` and `postgres` as an unprivileged user when
//! the tests run as root, from a thread that lives as long as the process, with the
//! parent-death signal armed after the uid change; the server's directory, its log, and
//! the removal of directories dead test processes left.
use std::{
    fs,
    io::{self, Read, Seek, SeekFrom},
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Mutex, OnceLock,
        atomic::{AtomicU64, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

use super::{DIR_PREFIX, PgServer, READY_TIMEOUT, USER, lock};

impl PgServer {
    /// `initdb`, then our pg_hba.conf.
    pub(super) fn init(&self) -> Result<(), String> {
        let pwfile = self.dir.join("pwfile");
        self.write_owned(&pwfile, &self.password, 0o600)?;
        let mut cmd = Command::new(self.bin.join("initdb"));
        cmd.arg("-D")
            .arg(self.dir.join("data"))
            .args([
                "-U",
                USER,
                "-A",
                "scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .arg("--no-sync");
        self.prepare(&mut cmd, true)?;
        let mut child = spawn_from_keeper(cmd).map_err(|e| format!("running initdb: {e}"))?;
        let status = child
            .wait()
            .map_err(|e| format!("waiting for initdb: {e}"))?;
        let _ = fs::remove_file(&pwfile);
        if !status.success() {
            return Err(format!("initdb failed ({status})"));
        }
        let hba = "local all all scram-sha-256\n\
                   host all all 0.0.0.0/0 scram-sha-256\n\
                   host all all ::/0 scram-sha-256\n";
        self.write_owned(&self.dir.join("data").join("pg_hba.conf"), hba, 0o600)
    }

    /// Starts `postgres` and waits until it accepts connections.
    pub(super) fn spawn(&self) -> Result<(), String> {
        let postgres = self.bin.join("postgres");
        let mut cmd = match self.prefix.split_first() {
            None => Command::new(&postgres),
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest);
                if let Some((uid, gid)) = self.owner {
                    c.arg("setpriv")
                        .arg(format!("--reuid={uid}"))
                        .arg(format!("--regid={gid}"))
                        .args(["--clear-groups", "--pdeathsig=SIGQUIT", "--"]);
                }
                c.arg(&postgres);
                c
            }
        };
        cmd.arg("-D")
            .arg(self.dir.join("data"))
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(&self.dir);
        for setting in [
            format!("listen_addresses={}", self.listen_addr),
            "fsync=off".into(),
            "full_page_writes=off".into(),
            "synchronous_commit=off".into(),
            "max_connections=200".into(),
            "shared_buffers=128MB".into(),
            "log_min_messages=warning".into(),
        ]
        .into_iter()
        .chain(self.settings.iter().cloned())
        {
            cmd.arg("-c").arg(setting);
        }
        self.prepare(&mut cmd, self.prefix.is_empty())?;
        let mut child = spawn_from_keeper(cmd).map_err(|e| format!("running postgres: {e}"))?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("postgres exited at start ({status})"));
            }
            if self.try_admin().is_ok() {
                *lock(&self.child) = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "postgres did not accept connections within {READY_TIMEOUT:?}"
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn try_admin(&self) -> Result<(), ::postgres::Error> {
        let cfg = self.socket_config("postgres");
        let mut c: ::postgres::Config = cfg.url.parse()?;
        c.password(&self.password)
            .connect_timeout(Duration::from_secs(2));
        c.connect(::postgres::NoTls)?.batch_execute("SELECT 1")
    }

    /// Working directory, log, privileges and parent-death signal of a child.
    /// `drop_here`: drop privileges in the child before exec (no prefix that needs root).
    fn prepare(&self, cmd: &mut Command, drop_here: bool) -> Result<(), String> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("postgres.log"))
            .map_err(|e| format!("opening the log: {e}"))?;
        let err = log
            .try_clone()
            .map_err(|e| format!("opening the log: {e}"))?;
        cmd.current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .env("LC_ALL", "C");
        let owner = if drop_here { self.owner } else { None };
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: only async-signal-safe calls (setgroups, setgid, setuid, prctl,
        // getppid) and no allocation between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if let Some((uid, gid)) = owner
                    && (libc::setgroups(0, std::ptr::null()) != 0
                        || libc::setgid(gid) != 0
                        || libc::setuid(uid) != 0)
                {
                    return Err(io::Error::last_os_error());
                }
                // After the uid change, which would clear it.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT as libc::c_ulong) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The test process died before the signal was armed.
                if libc::getppid() != parent {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            })
        };
        Ok(())
    }

    /// Writes a file the server's user owns.
    fn write_owned(&self, path: &Path, contents: &str, mode: u32) -> Result<(), String> {
        fs::write(path, contents).map_err(|e| format!("writing {}: {e}", path.display()))?;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(|e| format!("chmod {}: {e}", path.display()))?;
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .map_err(|e| format!("chown {}: {e}", path.display()))?;
        }
        Ok(())
    }

    /// The end of the server's log, for failure messages.
    pub(super) fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = fs::File::open(self.dir.join("postgres.log")) {
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            let _ = f.seek(SeekFrom::Start(len.saturating_sub(4000)));
            let _ = f.read_to_string(&mut text);
        }
        format!("--- postgres.log (end) ---\n{text}")
    }
}

/// Spawns `cmd` from a thread that lives as long as the process (see the module docs).
fn spawn_from_keeper(cmd: Command) -> io::Result<Child> {
    type Job = (Command, mpsc::Sender<io::Result<Child>>);
    static KEEPER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    let keeper = KEEPER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        let spawned = thread::Builder::new()
            .name("pg-test-keeper".into())
            .spawn(move || {
                for (mut cmd, answer) in rx {
                    let _ = answer.send(cmd.spawn());
                }
            });
        if let Err(e) = spawned {
            panic!("starting the test server keeper thread: {e}");
        }
        Mutex::new(tx)
    });
    let (answer, result) = mpsc::channel();
    lock(keeper)
        .send((cmd, answer))
        .map_err(|_| io::Error::other("the keeper thread is gone"))?;
    result
        .recv()
        .map_err(|_| io::Error::other("the keeper thread is gone"))?
}

/// A new directory for one server, owned by the user it runs as.
pub(super) fn new_dir() -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "{DIR_PREFIX}{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    if let Err(e) = fs::create_dir(&dir) {
        panic!("creating {}: {e}", dir.display());
    }
    let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o700));
    if let Some((uid, gid)) = unprivileged_owner()
        && let Err(e) = std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
    {
        panic!("chown {}: {e}", dir.display());
    }
    dir
}

/// `nobody`'s uid and gid when we run as root (PostgreSQL refuses root), else `None`.
pub(super) fn unprivileged_owner() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    let found = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&"nobody") && f.len() > 3)
            .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
            .flatten()
    });
    Some(found.unwrap_or((65534, 65534)))
}

/// Removes the directories of test processes that are gone, stopping a server one left.
pub(super) fn remove_stale_dirs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(pid) = name
                .to_str()
                .and_then(|n| n.strip_prefix(DIR_PREFIX))
                .and_then(|rest| rest.split('-').next())
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
                continue;
            }
            let pm = fs::read_to_string(e.path().join("data").join("postmaster.pid"))
                .ok()
                .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<i32>().ok()));
            if let Some(pm) = pm
                && fs::read_to_string(format!("/proc/{pm}/comm"))
                    .is_ok_and(|c| c.trim() == "postgres")
            {
                // SAFETY: signalling a leftover postmaster of a dead test process.
                unsafe { libc::kill(pm, libc::SIGQUIT) };
            }
            let _ = fs::remove_dir_all(e.path());
        }
    });
}

pub(super) fn random_password() -> String {
    let mut b = [0u8; 18];
    if let Err(e) = getrandom::fill(&mut b) {
        panic!("random password: {e}");
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}
