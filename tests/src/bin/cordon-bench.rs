//! `cordon-bench`: a tiny, std-only load generator for measuring Cordon agent overhead.
//!
//! All traffic stays on 127.0.0.1; the tool never talks to any other address.
//!
//! * `connrate` measures short-lived TCP connection throughput: every connection does one
//!   connect / N-byte request / N-byte echo / close. This is the agent's worst case, since
//!   each connection is a new flow the kernel side must create, report and expire.
//! * `throughput` measures bulk single-stream bandwidth over one long-lived connection,
//!   i.e. the per-packet (not per-flow) cost of whatever the agent hooks.
//! * `pid-stats` reads a process's cumulative CPU time and peak RSS from `/proc`, so a
//!   driver script can report what the agent itself consumed during a run.
//!
//! Each subcommand prints exactly one JSON line on stdout. Bad usage exits with code 2,
//! a run that cannot be carried out at all exits with code 1.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

const USAGE: &str = "usage:
  cordon-bench connrate --seconds S [--payload N] [--threads T]
  cordon-bench throughput [--bytes B] [--chunk C]
  cordon-bench pid-stats PID";

/// Per-socket timeout so a lost peer can never hang the benchmark.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("connrate") => parse_flags(&args[1..], &["--seconds", "--payload", "--threads"])
            .and_then(|f| {
                let seconds = f[0].ok_or("--seconds is required")?;
                let payload = f[1].unwrap_or(64);
                let threads = f[2].unwrap_or(1);
                if seconds == 0 || payload == 0 || threads == 0 {
                    return Err("--seconds, --payload and --threads must be > 0");
                }
                Ok(connrate(seconds, to_usize(payload)?, to_usize(threads)?))
            }),
        Some("throughput") => parse_flags(&args[1..], &["--bytes", "--chunk"]).and_then(|f| {
            let bytes = f[0].unwrap_or(2 << 30);
            let chunk = f[1].unwrap_or(128 << 10);
            if chunk == 0 {
                return Err("--chunk must be > 0");
            }
            Ok(throughput(bytes, to_usize(chunk)?))
        }),
        Some("pid-stats") => match args.get(1..) {
            Some([pid]) => pid
                .parse::<u32>()
                .map(pid_stats)
                .map_err(|_| "PID must be a number"),
            _ => Err("pid-stats takes exactly one PID"),
        },
        _ => Err("missing or unknown subcommand"),
    };
    match result {
        Ok(Ok(json)) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            eprintln!("cordon-bench: {e}");
            ExitCode::from(1)
        }
        Err(msg) => {
            eprintln!("cordon-bench: {msg}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// Parses `--flag VALUE` pairs; returns the values in the order of `names`.
fn parse_flags(args: &[String], names: &[&str]) -> Result<Vec<Option<u64>>, &'static str> {
    let mut values = vec![None; names.len()];
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let idx = names
            .iter()
            .position(|n| n == flag)
            .ok_or("unknown argument")?;
        let value = it.next().ok_or("flag is missing its value")?;
        values[idx] = Some(
            value
                .parse()
                .map_err(|_| "flag value must be a non-negative integer")?,
        );
    }
    Ok(values)
}

fn to_usize(v: u64) -> Result<usize, &'static str> {
    usize::try_from(v).map_err(|_| "value too large")
}

/// Binds a listener on an ephemeral loopback port.
fn loopback_listener() -> io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(("127.0.0.1", 0))?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

/// Connection-rate test: `threads` clients loop for `seconds`, each iteration being a full
/// connect / write `payload` / read `payload` echo / close. One server thread per client
/// thread accepts on a shared listener, so the server side is not the bottleneck.
fn connrate(seconds: u64, payload: usize, threads: usize) -> io::Result<String> {
    let (listener, addr) = loopback_listener()?;
    // Server threads run until the process exits; they never return.
    for _ in 0..threads {
        let listener = listener.try_clone()?;
        thread::spawn(move || echo_server(&listener, payload));
    }

    let duration = Duration::from_secs(seconds);
    let start = Instant::now();
    let clients: Vec<_> = (0..threads)
        .map(|_| thread::spawn(move || connrate_client(addr, payload, start + duration)))
        .collect();
    let (mut connections, mut failures) = (0u64, 0u64);
    for client in clients {
        // A panicking client thread is a bug in this tool, not a transient error.
        let (ok, failed) = client
            .join()
            .map_err(|_| io::Error::other("client thread panicked"))?;
        connections += ok;
        failures += failed;
    }
    let elapsed = start.elapsed().as_secs_f64();
    // CPU this process used (its threads' work and the kernel work done on their behalf),
    // per connection: unlike the rate, not inflated by time the VM's CPUs were stolen.
    let cpu = cpu_seconds(std::process::id())?;
    Ok(format!(
        r#"{{"test":"connrate","seconds":{elapsed:.3},"connections":{connections},"failures":{failures},"rate_per_s":{:.1},"cpu_seconds":{cpu:.3},"cpu_us_per_conn":{:.2}}}"#,
        connections as f64 / elapsed,
        cpu * 1e6 / connections.max(1) as f64
    ))
}

/// Accept loop: read exactly `payload` bytes, echo them, close. Errors are ignored (the
/// client counts them as failures), so one bad connection never stops the server.
fn echo_server(listener: &TcpListener, payload: usize) {
    let mut buf = vec![0u8; payload];
    loop {
        let Ok((mut conn, _)) = listener.accept() else {
            // e.g. EMFILE under extreme load: back off briefly instead of spinning.
            thread::sleep(Duration::from_millis(1));
            continue;
        };
        let _ = conn.set_read_timeout(Some(IO_TIMEOUT));
        let _ = conn.set_write_timeout(Some(IO_TIMEOUT));
        if conn.read_exact(&mut buf).is_ok() {
            let _ = conn.write_all(&buf);
        }
        // Plain close on drop.
    }
}

/// One client loop; returns (completed connections, failures).
fn connrate_client(addr: SocketAddr, payload: usize, deadline: Instant) -> (u64, u64) {
    let request = vec![0x5au8; payload];
    let mut reply = vec![0u8; payload];
    let (mut ok, mut failed) = (0u64, 0u64);
    while Instant::now() < deadline {
        match one_connection(addr, &request, &mut reply) {
            Ok(()) => ok += 1,
            Err(e) => {
                failed += 1;
                // EADDRNOTAVAIL (ephemeral ports exhausted by TIME_WAIT) and similar
                // transient errors: count, yield a moment, keep going.
                if e.kind() != io::ErrorKind::UnexpectedEof {
                    thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
    (ok, failed)
}

fn one_connection(addr: SocketAddr, request: &[u8], reply: &mut [u8]) -> io::Result<()> {
    let mut conn = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    conn.write_all(request)?;
    conn.read_exact(reply)?;
    if reply != request {
        return Err(io::Error::other("echo mismatch"));
    }
    Ok(())
}

/// Bulk throughput test: one connection, the client writes `bytes` in `chunk`-sized writes,
/// shuts down its write side, and waits for the server to acknowledge (by sending back the
/// 8-byte little-endian count it read) so the timing covers delivery, not just buffering.
fn throughput(bytes: u64, chunk: usize) -> io::Result<String> {
    let (listener, addr) = loopback_listener()?;
    let server = thread::spawn(move || -> io::Result<()> {
        let (mut conn, _) = listener.accept()?;
        let mut buf = vec![0u8; chunk.max(64 << 10)];
        let mut total = 0u64;
        loop {
            match conn.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => total += n as u64,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        conn.write_all(&total.to_le_bytes())
    });

    let buf = vec![0xa5u8; chunk];
    let start = Instant::now();
    let mut conn = TcpStream::connect(addr)?;
    let mut left = bytes;
    while left > 0 {
        let n = usize::try_from(left).map_or(chunk, |l| l.min(chunk));
        // write_all retries EINTR itself; any other error aborts the run.
        conn.write_all(&buf[..n])?;
        left -= n as u64;
    }
    conn.shutdown(Shutdown::Write)?;
    let mut ack = [0u8; 8];
    conn.read_exact(&mut ack)?;
    let seconds = start.elapsed().as_secs_f64();
    server
        .join()
        .map_err(|_| io::Error::other("server thread panicked"))??;

    let received = u64::from_le_bytes(ack);
    if received != bytes {
        return Err(io::Error::other(format!(
            "server read {received} of {bytes} bytes"
        )));
    }
    Ok(format!(
        r#"{{"test":"throughput","bytes":{bytes},"seconds":{seconds:.3},"mib_per_s":{:.1}}}"#,
        bytes as f64 / (1024.0 * 1024.0) / seconds
    ))
}

/// Cumulative CPU seconds (utime + stime) and peak RSS (VmHWM) of a process.
/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> io::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Field 2 (comm) is parenthesised and may contain spaces, so split after the last ')'.
    // The remaining fields start at field 3 (state); utime/stime are fields 14/15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> io::Result<u64> {
        fields
            .get(n - 3)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| io::Error::other(format!("bad /proc/{pid}/stat field {n}")))
    };
    let ticks = field(14)? + field(15)?;
    Ok(ticks as f64 / clk_tck() as f64)
}

fn pid_stats(pid: u32) -> io::Result<String> {
    let cpu_seconds = cpu_seconds(pid)?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    // "VmHWM:     1234 kB"; absent for kernel threads, reported as null.
    let peak = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .map_or_else(|| "null".to_string(), |kib| kib.to_string());
    Ok(format!(
        r#"{{"pid":{pid},"cpu_seconds":{cpu_seconds:.3},"peak_rss_kib":{peak}}}"#
    ))
}

/// Clock ticks per second for /proc/PID/stat times. std has no sysconf() binding and this
/// crate takes no libc dependency, so ask `getconf CLK_TCK`; fall back to 100, which is
/// USER_HZ on every mainstream Linux architecture.
fn clk_tck() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}
