//! `cordon`: the operator's CLI over the collector's REST API.
mod client;
mod commands;
mod table;

use std::{path::PathBuf, process::ExitCode};

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cordon",
    version,
    about = "Cordon operator CLI (talks to the collector's API)"
)]
struct Cli {
    /// The collector's API.
    #[arg(
        long,
        env = "CORDON_API",
        default_value = "http://127.0.0.1:7480",
        global = true
    )]
    api: String,
    /// API token (prefer --token-file or the environment: arguments show in `ps`).
    #[arg(long, env = "CORDON_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// File holding the API token.
    #[arg(long, env = "CORDON_TOKEN_FILE", global = true)]
    token_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The collector's health (needs no token).
    Health,
    /// Hosts that have connected, or one host with its inventory.
    Hosts {
        /// One host (agent id or host name) in detail.
        id: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a host's agent certificate (its connection is closed and refused).
    Revoke {
        /// Agent id or host name.
        id: String,
    },
    /// Stored flow records, newest first.
    Flows(FlowArgs),
    /// API tokens and agents' join tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Args)]
pub struct FlowArgs {
    /// Agent id or host name.
    #[arg(long)]
    host: Option<String>,
    #[arg(long)]
    remote_ip: Option<String>,
    /// Local or remote port.
    #[arg(long)]
    port: Option<u16>,
    /// Exact executable path.
    #[arg(long)]
    exe: Option<String>,
    /// RFC 3339 time, or a duration before now (15m, 2h).
    #[arg(long)]
    since: Option<String>,
    #[arg(long)]
    until: Option<String>,
    #[arg(long, default_value_t = 100)]
    limit: usize,
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Make a token and print its secret (shown once).
    Create {
        /// A join token for agents (`cordon-agent enroll --token`), instead of an API token.
        #[arg(long)]
        enroll: bool,
        /// API token scope: read or admin.
        #[arg(long, default_value = "read", conflicts_with = "enroll")]
        scope: String,
        /// What it is for (default: "join token" or "api token").
        #[arg(long)]
        name: Option<String>,
        /// Lifetime, e.g. 24h, 90d (join tokens default to 24h).
        #[arg(long)]
        expires_in: Option<String>,
        /// Join tokens: how many agents may enroll with it (default 1).
        #[arg(long, requires = "enroll")]
        uses: Option<u64>,
        #[arg(long)]
        json: bool,
    },
    /// Every token (never the secrets).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Refuse a token from now on.
    Revoke { id: i64 },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let res =
        client::Client::new(&cli.api, cli.token.clone(), cli.token_file.as_deref()).and_then(|c| {
            match cli.command {
                Command::Health => commands::health(&c),
                Command::Hosts { id: None, json } => commands::hosts(&c, json),
                Command::Hosts { id: Some(id), json } => commands::host(&c, &id, json),
                Command::Revoke { id } => commands::revoke(&c, &id),
                Command::Flows(args) => commands::flows(&c, &args),
                Command::Token { command } => match command {
                    TokenCommand::Create {
                        enroll,
                        scope,
                        name,
                        expires_in,
                        uses,
                        json,
                    } => {
                        let scope = if enroll { "enroll".to_string() } else { scope };
                        let name = name.unwrap_or_else(|| {
                            if enroll { "join token" } else { "api token" }.to_string()
                        });
                        commands::token_create(&c, &name, &scope, expires_in, uses, json)
                    }
                    TokenCommand::List { json } => commands::token_list(&c, json),
                    TokenCommand::Revoke { id } => commands::token_revoke(&c, id),
                },
            }
        });
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cordon: {e:#}");
            ExitCode::FAILURE
        }
    }
}
