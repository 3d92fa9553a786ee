//! `cordon-enforcer`: local, root-only view and break-glass release of host isolation.
//! Works offline: it talks only to the kernel (through `nft`) and the state file.

use std::ffi::CString;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use cordon_enforcer::{
    AllowRule, Backend, Change, DEFAULT_PIN_DIR, DEFAULT_STATE_PATH, EbpfBackend, Enforcer,
    Exceptions, Isolation, NftBackend, now_unix,
};

#[derive(Parser)]
#[command(
    name = "cordon-enforcer",
    version,
    about = "Cordon host isolation: status and break-glass release (root only)"
)]
struct Cli {
    /// State file of the enforcer.
    #[arg(long, global = true, value_name = "FILE", default_value = DEFAULT_STATE_PATH, env = "CORDON_ENFORCER_STATE")]
    state: PathBuf,
    /// Pin directory of the eBPF backend (`enforcer.bpf_pin_dir` of the agent).
    #[arg(long, global = true, value_name = "DIR", default_value = DEFAULT_PIN_DIR, env = "CORDON_BPF_PIN_DIR")]
    bpf_pin_dir: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Show whether the host is isolated and whether the ruleset is in force.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Lift isolation locally (break-glass), without the collector. Recorded with your name.
    Release {
        /// Why (recorded in the state file and syslog).
        #[arg(long)]
        reason: String,
    },
    /// Isolate this host now (development and tests; the collector normally does this).
    #[command(hide = true)]
    Isolate {
        /// Collector address that must stay reachable (UDP), repeatable; at least one.
        #[arg(long = "management", value_name = "ADDR:PORT", required = true)]
        management: Vec<std::net::SocketAddr>,
        /// Allow-list entry such as 10.0.0.9:22/tcp, repeatable.
        #[arg(long = "allow", value_name = "RULE")]
        allow: Vec<AllowRule>,
        #[arg(long)]
        reason: String,
        /// Lift automatically after this long (e.g. 2h, 30m).
        #[arg(long = "for", value_name = "DURATION", value_parser = humantime::parse_duration)]
        for_: Option<Duration>,
        /// Command id (defaults to the current time in ms).
        #[arg(long)]
        command_id: Option<u64>,
    },
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Who is running this: the sudo caller if any, else the login name, else the uid.
fn invoker() -> String {
    ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| format!("uid {}", euid()))
}

/// One line to syslog (authpriv.notice) for local, security-relevant actions.
fn syslog(msg: &str) {
    let Ok(msg) = CString::new(msg.replace('\0', " ")) else {
        return;
    };
    // SAFETY: the identity and format are static C strings; the message is a valid CString
    // passed through "%s", so no format injection; closelog releases the descriptor.
    unsafe {
        libc::openlog(
            c"cordon-enforcer".as_ptr(),
            libc::LOG_PID,
            libc::LOG_AUTHPRIV,
        );
        libc::syslog(libc::LOG_NOTICE, c"%s".as_ptr(), msg.as_ptr());
        libc::closelog();
    }
}

fn print_change(c: &Change) {
    println!(
        "{:?}: command {} by {} ({})",
        c.action,
        c.command_id.map_or("-".to_string(), |i| i.to_string()),
        c.by,
        c.reason
    );
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .without_time()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    if euid() != 0 {
        bail!(
            "cordon-enforcer must run as root (it reads and changes the kernel's nftables ruleset); try: sudo cordon-enforcer ..."
        );
    }
    // The backend that holds an isolation: the eBPF one when it has pins (it is only
    // ever cleared or inspected from here), else nftables.
    let ebpf = EbpfBackend::new(None, cli.bpf_pin_dir.clone(), PathBuf::new());
    let use_ebpf = ebpf.has_pins();
    let backend: Box<dyn Backend> = if use_ebpf {
        Box::new(ebpf)
    } else {
        Box::new(NftBackend::new())
    };
    let mut enf = Enforcer::new(backend, &cli.state)
        .with_context(|| format!("cannot open the state file {}", cli.state.display()))?;
    match cli.cmd {
        Cmd::Status { json } => {
            let st = enf.status().context("cannot read the isolation ruleset")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&st)?);
                return Ok(());
            }
            println!("backend:   {}", st.backend);
            match &st.isolated {
                Some(i) => {
                    println!(
                        "isolated:  yes (command {}, by {}, since {}, reason: {})",
                        i.command_id, i.by, i.since_unix, i.reason
                    );
                    if let Some(t) = i.expires_at_unix {
                        println!("expires:   {t} (in {}s)", t.saturating_sub(now_unix()));
                    }
                }
                None => println!("isolated:  no"),
            }
            println!("in force:  {}", if st.in_force { "yes" } else { "no" });
            if let Some(d) = st.drops {
                println!(
                    "dropped:   input {} output {} forward {} packets",
                    d.input_packets, d.output_packets, d.forward_packets
                );
            }
            if st.isolated.is_some() != st.in_force {
                println!(
                    "warning:   state file and kernel disagree (the agent re-asserts isolation on its next check)"
                );
            }
        }
        Cmd::Release { reason } => {
            if reason.trim().is_empty() {
                bail!("--reason must not be empty: say why isolation is lifted");
            }
            let by = format!("local:{}", invoker());
            let c = enf.release(&reason, &by).context("release failed")?;
            // Whatever the other backend may hold goes too: break-glass means open.
            if use_ebpf {
                let mut nft = NftBackend::new();
                if nft.available() && nft.in_force().unwrap_or(false) {
                    nft.clear().context("removing the nftables ruleset")?;
                }
            }
            syslog(&format!(
                "break-glass release by {by}: {reason} ({:?}, command {:?})",
                c.action, c.command_id
            ));
            print_change(&c);
        }
        Cmd::Isolate {
            management,
            allow,
            reason,
            for_,
            command_id,
        } => {
            let now = now_unix();
            let by = format!("local:{}", invoker());
            let iso = Isolation {
                command_id: command_id.unwrap_or_else(|| {
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as u64)
                }),
                reason: reason.clone(),
                by: by.clone(),
                since_unix: now,
                expires_at_unix: for_.map(|d| now.saturating_add(d.as_secs())),
            };
            let exc = Exceptions { management, allow };
            let c = enf.isolate(iso, &exc).context("isolation failed")?;
            syslog(&format!(
                "local isolation by {by}: {reason} ({:?})",
                c.action
            ));
            print_change(&c);
        }
    }
    Ok(())
}
