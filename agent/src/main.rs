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
