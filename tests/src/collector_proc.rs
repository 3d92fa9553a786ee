//! A release `cordon-collector` started by a benchmark: its own data directory and config,
//! its log in the data directory, stopped (SIGTERM, then SIGKILL) on drop. Loopback only.
use std::{
    io::{BufRead, BufReader},
    net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

/// A free UDP port on loopback (released again just before the collector binds it).
pub fn free_udp_port() -> std::io::Result<u16> {
    Ok(UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// A free TCP port on loopback (released again just before someone binds it).
pub fn free_tcp_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// The spawned collector; stopped (and, failing that, killed) on drop.
pub struct Collector {
    pub child: Child,
    pub data_dir: PathBuf,
    pub addr: SocketAddr,
    pub log: PathBuf,
}

impl Collector {
    /// A single collector with the embedded store: a free UDP port on 127.0.0.1, the API
    /// on a port of its own choosing; waits until it listens.
    pub async fn start(bin: &Path, data_dir: &Path) -> anyhow::Result<Self> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_udp_port()?));
        // The API on a port of its own choosing, so runs never collide on 7480. (Builds
        // before the API refuse the `[api]` section: set LOADGEN_NO_API=1 for those.)
        let api = if std::env::var_os("LOADGEN_NO_API").is_some() {
            ""
        } else {
            "[api]\nlisten = \"127.0.0.1:0\"\n"
        };
        let mut me = Self::spawn(bin, data_dir, addr, api, "collector")?;
        me.wait_listening(Duration::from_secs(30)).await?;
        Ok(me)
    }

    /// Starts a collector listening on `addr` with `extra` appended to its config (after
    /// `listen`, `data_dir` and `server_names`: sections only), logging to
    /// `<data_dir>/<log_name>.log`; does not wait.
    pub fn spawn(
        bin: &Path,
        data_dir: &Path,
        addr: SocketAddr,
        extra: &str,
        log_name: &str,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir)?;
        let config = data_dir.join("collector.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"{addr}\"\ndata_dir = \"{}\"\nserver_names = [\"127.0.0.1\"]\n{extra}",
                data_dir.display()
            ),
        )?;
        let log = data_dir.join(format!("{log_name}.log"));
        let child = Command::new(bin)
            .args(["run", "--config"])
            .arg(&config)
            .env("CORDON_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(Self {
            child,
            data_dir: data_dir.to_path_buf(),
            addr,
            log,
        })
    }

    /// Waits until the log says the collector listens; fails with its log if it exits
    /// first or takes longer than `timeout`.
    pub async fn wait_listening(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "the collector exited ({status}) before listening; its log:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if std::fs::read_to_string(&self.log)
                .unwrap_or_default()
                .contains("collector listening")
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the collector did not listen within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL (a crash: no goodbye to anyone), and reaps it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then SIGKILL after 10 s; waits for the exit.
    pub fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) on our own child's pid; it has not been reaped yet.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Lines of the collector's log at WARN or ERROR.
    pub fn warnings(&self) -> Vec<String> {
        std::fs::File::open(&self.log)
            .map(|f| {
                BufReader::new(f)
                    .lines()
                    .map_while(Result::ok)
                    .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop();
    }
}
