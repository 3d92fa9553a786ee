//! Printing records for `cordon-agent watch`: JSON lines or a readable table.
//!
//! Records reach the printer through a bounded queue on its own thread, so a slow terminal
//! never stalls the capture: when the queue is full the record is dropped and counted.
use std::{
    io::{BufWriter, Write},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc::{Receiver, SyncSender, TrySendError, sync_channel},
    },
    thread::JoinHandle,
};

use crate::record::{Direction, FlowRecord};

/// What the printer receives.
// `allow`, not `expect`: whether the lint fires depends on serde_json's features, which
// other workspace members can change.
#[allow(
    clippy::large_enum_variant,
    reason = "flow records are the hot path and are not boxed; stats lines are rare"
)]
pub enum Line {
    Flow(FlowRecord),
    /// A pre-rendered JSON object (statistics), printed as-is in JSON mode, else to stderr.
    Json(serde_json::Value),
}

/// The capture's handle to the printer.
#[derive(Clone)]
pub struct Output {
    tx: SyncSender<Line>,
    dropped: Arc<AtomicU64>,
}

impl Output {
    /// Queues a line; never blocks. Returns false (and counts) when the queue is full.
    pub fn send(&self, line: Line) -> bool {
        match self.tx.try_send(line) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Records dropped because the printer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Output {
    /// A bounded queue of `capacity` lines and its consuming end.
    pub fn channel(capacity: usize) -> (Output, Receiver<Line>) {
        let (tx, rx) = sync_channel(capacity);
        (
            Output {
                tx,
                dropped: Arc::new(AtomicU64::new(0)),
            },
            rx,
        )
    }
}

/// Starts the printer thread. Drop every `Output` clone, then join the handle to flush.
pub fn spawn(json: bool, capacity: usize) -> (Output, JoinHandle<()>) {
    let (out, rx) = Output::channel(capacity);
    let handle = std::thread::Builder::new()
        .name("cordon-output".into())
        .spawn(move || print_loop(rx, json))
        .expect("spawning the output thread");
    (out, handle)
}

fn print_loop(rx: Receiver<Line>, json: bool) {
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut rows = 0u64;
    // Block for one line, then take whatever else is queued, then flush: batched writes
    // under load, prompt output when idle.
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(line) = next {
            if write_line(&mut out, line, json, &mut rows).is_err() {
                stdout_gone();
            }
            next = rx.try_recv().ok();
        }
        if out.flush().is_err() {
            stdout_gone();
        }
    }
    let _ = out.flush();
}

/// stdout was closed (`watch | head`): like any command-line tool, stop. Exiting detaches
/// the kernel programs (their links die with the process).
fn stdout_gone() -> ! {
    std::process::exit(0)
}

fn write_line(out: &mut impl Write, line: Line, json: bool, rows: &mut u64) -> std::io::Result<()> {
    match line {
        Line::Flow(rec) if json => {
            serde_json::to_writer(&mut *out, &rec)?;
            out.write_all(b"\n")
        }
        Line::Flow(rec) => {
            if rows.is_multiple_of(40) {
                writeln!(out, "{}", table_header())?;
            }
            *rows += 1;
            writeln!(out, "{}", table_row(&rec))
        }
        Line::Json(v) if json => writeln!(out, "{v}"),
        Line::Json(v) => {
            out.flush()?;
            eprintln!("{v}");
            Ok(())
        }
    }
}

fn table_header() -> String {
    format!(
        "{:<6} {:<5} {:<3} {:<40} {:<40} {:>10} {:>10} {:<6} {:>7} {:<12} {}",
        "EVENT",
        "PROTO",
        "DIR",
        "LOCAL",
        "REMOTE",
        "BYTES_OUT",
        "BYTES_IN",
        "STATE",
        "PID",
        "USER",
        "PROCESS"
    )
}

fn endpoint(ip: std::net::IpAddr, port: u16) -> String {
    std::net::SocketAddr::new(ip, port).to_string()
}

fn table_row(r: &FlowRecord) -> String {
    let (pid, user, process) = match &r.process {
        Some(p) => (
            p.pid.to_string(),
            p.user.clone().unwrap_or_else(|| p.uid.to_string()),
            p.exe.clone().unwrap_or_else(|| format!("[{}]", p.comm)),
        ),
        None => (
            "-".into(),
            "-".into(),
            format!("({})", r.unattributed_reason.unwrap_or("unattributed")),
        ),
    };
    let dir = match r.direction {
        Direction::Outbound => "out",
        Direction::Inbound => "in",
    };
    let event = match r.event {
        crate::record::ExportEvent::Start => "start",
        crate::record::ExportEvent::Update => "update",
        crate::record::ExportEvent::End => "end",
    };
    let state = match r.state {
        crate::record::FlowState::Open => "open",
        crate::record::FlowState::Closed => "closed",
    };
    format!(
        "{:<6} {:<5} {:<3} {:<40} {:<40} {:>10} {:>10} {:<6} {:>7} {:<12} {}",
        event,
        r.proto.name(),
        dir,
        endpoint(r.local_ip, r.local_port),
        endpoint(r.remote_ip, r.remote_port),
        r.totals.bytes_out,
        r.totals.bytes_in,
        state,
        pid,
        user,
        process
    )
}
