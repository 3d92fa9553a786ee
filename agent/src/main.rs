//! `cordon-agent`: parses the command line and calls into the library.
use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use cordon_agent::{
    config::AgentConfig,
    watch::{self, WatchArgs},
};

#[derive(Parser)]
#[command(
    name = "cordon-agent",
    version,
    about = "Cordon agent: every network flow with the process behind it"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Capture flows on this host and print them live (needs root).
    Watch(WatchArgs),
    /// Capture flows and stream them to the collector (needs root and an enrolled agent).
    Run {
        #[arg(long)]
        config: PathBuf,
    },
    /// Make this agent's key and a certificate signing request (the key never leaves the
    /// host; the collector signs the request).
    Csr {
        /// Where to write `agent.key` (mode 0600) and `agent.csr`.
        #[arg(long)]
        out_dir: PathBuf,
    },
    /// Enroll with a collector: send a join token and a certificate request, keep the
    /// certificate (paths from the config's [uplink]). The key never leaves this host.
    Enroll {
        #[arg(long, default_value = "/etc/cordon/agent.toml")]
        config: PathBuf,
        /// The collector's agent port, IP:PORT, [IPv6]:PORT or NAME:PORT (default: the
        /// config's first collector). Its certificate must carry the name as written (or
        /// the config's uplink.server_name), as for `run`.
        #[arg(long)]
        collector: Option<String>,
        /// The join token from `cordon token create --enroll` (or use --token-file, or
        /// CORDON_JOIN_TOKEN: arguments show in `ps`).
        #[arg(long, env = "CORDON_JOIN_TOKEN", hide_env_values = true)]
        token: Option<String>,
        #[arg(long, conflicts_with = "token")]
        token_file: Option<PathBuf>,
        /// SHA-256 fingerprint of the collector's CA (printed by the collector at start).
        #[arg(long)]
        ca_fingerprint: String,
    },
    /// Check a configuration file and exit (0 when valid).
    Validate {
        #[arg(long)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CORDON_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let res = match cli.command {
        Command::Watch(args) => watch::run(args),
        Command::Run { config } => cordon_agent::run::run(&config),
        Command::Csr { out_dir } => cordon_agent::enroll::write_csr(&out_dir).map(|csr| {
            println!("{}", csr.display());
        }),
        Command::Enroll {
            config,
            collector,
            token,
            token_file,
            ca_fingerprint,
        } => enroll(&config, collector, token, token_file, ca_fingerprint),
        Command::Validate { config } => AgentConfig::load(&config)
            .map(|_| println!("{}: valid", config.display()))
            .map_err(Into::into),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cordon-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn enroll(
    config: &std::path::Path,
    collector: Option<String>,
    token: Option<String>,
    token_file: Option<PathBuf>,
    ca_fingerprint: String,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let cfg = AgentConfig::load(config)?;
    let token = match (token, token_file) {
        (Some(t), _) => t,
        (None, Some(f)) => {
            std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?
        }
        (None, None) => {
            anyhow::bail!("a join token is needed: --token-file, --token or CORDON_JOIN_TOKEN")
        }
    };
    let collector = match collector.or_else(|| cfg.uplink.collectors.first().cloned()) {
        Some(c) => c
            .parse::<cordon_agent::uplink::CollectorAddr>()
            .map_err(|e| anyhow::anyhow!("--collector: {e}"))?,
        None => anyhow::bail!("--collector is needed (the config lists no uplink.collectors)"),
    };
    let args = cordon_agent::enroll::EnrollArgs {
        collector,
        server_name: cfg.uplink.server_name.clone(),
        token,
        ca_fingerprint,
        host_name: if cfg.host_name.is_empty() {
            cordon_agent::watch::host_name()
        } else {
            cfg.host_name.clone()
        },
    };
    let id = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(cordon_agent::enroll::enroll(&cfg.uplink, &args))?;
    println!(
        "enrolled as {id}: certificate {}, collector CA {}",
        cfg.uplink.cert_file.display(),
        cfg.uplink.ca_file.display()
    );
    Ok(())
}
