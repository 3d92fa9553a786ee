//! `cordon-agent`: parses the command line and calls into the library.
use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use cordon_agent::{
    config::{AgentConfig, CaptureMode},
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
    Watch {
        /// Agent configuration file (TOML); defaults apply without one.
        #[arg(long)]
        config: Option<PathBuf>,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
        /// cgroup v2 directory to watch instead of the whole host.
        #[arg(long)]
        cgroup: Option<PathBuf>,
        /// Capture to use (overrides capture.mode).
        #[arg(long, value_enum)]
        capture: Option<CaptureMode>,
        /// Host name to report (overrides host_name).
        #[arg(long)]
        host: Option<String>,
        /// Print a statistics line (counts and drops) when stopping.
        #[arg(long)]
        stats_on_exit: bool,
        /// Stop after this long (e.g. "30s"); default: until SIGINT/SIGTERM.
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: Option<Duration>,
        /// Test hook: make one TCP connection of the agent's own to ADDR once capturing.
        #[arg(long, hide = true, value_name = "ADDR")]
        selftest_connect: Option<std::net::SocketAddr>,
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
        Command::Watch {
            config,
            json,
            cgroup,
            capture,
            host,
            stats_on_exit,
            duration,
            selftest_connect,
        } => watch::run(WatchArgs {
            config,
            json,
            cgroup,
            capture,
            host,
            stats_on_exit,
            duration,
            selftest_connect,
        }),
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
