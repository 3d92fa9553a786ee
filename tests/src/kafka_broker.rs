//! A real Kafka-protocol broker for tests: tansu (`scripts/setup.sh` installs it), on
//! 127.0.0.1 on a free port with in-memory storage, killed on drop. Not privileged.
use std::{
    fs,
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
};

/// The topic the alert sink writes to by default.
pub const ALERTS_TOPIC: &str = "cordon.alerts";

/// The tansu binary: `$TANSU`, else `tansu` on PATH, else `~/.cargo/bin/tansu`.
pub fn tansu_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("TANSU") {
        return Some(PathBuf::from(p));
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("tansu"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
        Some(home.join("bin/tansu")).filter(|p| p.is_file())
    })
}

/// A running tansu broker and the topics it should have.
pub struct Broker {
    bin: PathBuf,
    port: u16,
    dir: tempfile::TempDir,
    topics: Vec<(String, i32)>,
    child: Option<Child>,
    starts: u32,
}

impl Broker {
    /// Starts a broker with [`ALERTS_TOPIC`] (one partition).
    pub fn start() -> Broker {
        Self::start_with(&[(ALERTS_TOPIC, 1)])
    }

    /// Starts a broker with these topics (name, partitions) and waits until it serves
    /// metadata for all of them. Panics (failing the test) with tansu's log otherwise.
    pub fn start_with(topics: &[(&str, i32)]) -> Broker {
        let bin = tansu_binary().expect("tansu is not installed: run scripts/setup.sh");
        let port = free_port();
        let mut b = Broker {
            bin,
            port,
            dir: tempfile::tempdir().expect("temp dir"),
            topics: topics.iter().map(|(t, p)| (t.to_string(), *p)).collect(),
            child: None,
            starts: 0,
        };
        b.restart();
        b
    }

    /// `127.0.0.1:PORT`, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn url(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    /// Where tansu's output goes (one file per start).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("tansu-{}.log", self.starts))
    }

    fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Kills the broker (as a crash would); the port stays reserved for `restart`.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the broker (again) on the same port. Storage is in memory, so a restarted
    /// broker is empty: the topics are created anew.
    pub fn restart(&mut self) {
        self.stop();
        self.starts += 1;
        let log = fs::File::create(self.log_path()).expect("tansu log");
        let err = log.try_clone().expect("tansu log");
        let url = self.url();
        let child = Command::new(&self.bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.bin.display()));
        self.child = Some(child);
        self.wait_listening(Duration::from_secs(30));
        for (topic, partitions) in self.topics.clone() {
            self.create_topic(&topic, partitions);
        }
    }

    fn check_alive(&mut self) {
        if let Some(c) = self.child.as_mut()
            && let Ok(Some(status)) = c.try_wait()
        {
            panic!("tansu exited ({status}):\n{}", self.log());
        }
    }

    fn wait_listening(&mut self, timeout: Duration) {
        let start = Instant::now();
        loop {
            self.check_alive();
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            assert!(
                start.elapsed() < timeout,
                "tansu is not listening on {} after {timeout:?}:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Creates `topic` (tansu's own CLI) and waits until metadata shows its partitions.
    pub fn create_topic(&mut self, topic: &str, partitions: i32) {
        let out = Command::new(&self.bin)
            .args(["topic", "create", topic, "--broker", &self.url()])
            .args(["--partitions", &partitions.to_string()])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("tansu topic create: {e}"));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() || text.contains("TopicAlreadyExists"),
            "tansu topic create {topic}: {text}\n{}",
            self.log()
        );
        if !self.topics.iter().any(|(t, _)| t == topic) {
            self.topics.push((topic.to_string(), partitions));
        }
        let start = Instant::now();
        while self.partitions(topic) < partitions {
            self.check_alive();
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no metadata for {topic}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn consumer(&self) -> BaseConsumer {
        ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .set("group.id", "cordon-tests")
            .set("enable.auto.commit", "false")
            .set("allow.auto.create.topics", "false")
            // Answer fetches as soon as data is there (the default waits up to 500 ms
            // when a partition is empty, which would show up as latency).
            .set("fetch.wait.max.ms", "10")
            .create()
            .expect("rdkafka consumer")
    }

    /// Partitions of `topic` per the broker's metadata (0 when unknown or on error).
    pub fn partitions(&self, topic: &str) -> i32 {
        let Ok(md) = self
            .consumer()
            .fetch_metadata(Some(topic), Duration::from_secs(2))
        else {
            return 0;
        };
        md.topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map_or(0, |t| t.partitions().len() as i32)
    }

    /// Follows `topic` from the beginning on a thread of its own, calling `each(key,
    /// value)` for every message as it arrives, until `stop` is set. Call it from the
    /// broker's network namespace: the thread inherits it.
    pub fn follow(
        &self,
        topic: &str,
        stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
        mut each: impl FnMut(&str, &[u8]) + Send + 'static,
    ) -> std::thread::JoinHandle<()> {
        let consumer = self.consumer();
        let mut tpl = TopicPartitionList::new();
        for p in 0..self.partitions(topic).max(1) {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .expect("partition list");
        }
        consumer.assign(&tpl).expect("assign");
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
                    let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
                    each(&key, m.payload().unwrap_or_default());
                }
            }
        })
    }

    /// Reads up to `n` messages of `topic` from the beginning of every partition, within
    /// `timeout`: (key, value). Partition by partition in offset order.
    pub fn consume(&self, topic: &str, n: usize, timeout: Duration) -> Vec<(String, Vec<u8>)> {
        let consumer = self.consumer();
        let mut tpl = TopicPartitionList::new();
        for p in 0..self.partitions(topic).max(1) {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .expect("partition list");
        }
        consumer.assign(&tpl).expect("assign");
        let mut out = Vec::new();
        let start = Instant::now();
        while out.len() < n && start.elapsed() < timeout {
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => out.push((
                    String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                    m.payload().unwrap_or_default().to_vec(),
                )),
                Some(Err(e)) => eprintln!("consume {topic}: {e}"),
                None => {}
            }
        }
        out
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}
