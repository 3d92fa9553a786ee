//! `cordon`: the operator's CLI over the collector's REST API.
mod client;
mod cluster;
mod commands;
mod learn;
mod runs;
mod table;

use std::{path::PathBuf, process::ExitCode};

use clap::{Args, Parser, Subcommand};
use serde_json::json;

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
    /// Hosts that have connected, or one host with its inventory; `hosts label` sets labels.
    #[command(args_conflicts_with_subcommands = true)]
    Hosts {
        #[command(subcommand)]
        command: Option<HostsCommand>,
        /// One host (agent id or host name) in detail.
        id: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Policy versions: apply a file as a draft, publish, show, list, diff.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Compliance alerts (most recent first); snooze, mute, unmute.
    #[command(args_conflicts_with_subcommands = true)]
    Alerts {
        #[command(subcommand)]
        command: Option<AlertsCommand>,
        #[arg(long)]
        host: Option<String>,
        /// At least this severity (LOW … IMMEDIATE_ACTION).
        #[arg(long)]
        severity: Option<String>,
        /// RFC 3339 time, or a duration before now (15m, 2h).
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a host's agent certificate (its connection is closed and refused).
    Revoke {
        /// Agent id or host name.
        id: String,
    },
    /// Cut a host off the network (all but the management channel and its allow-list).
    Isolate {
        /// Agent id or host name.
        host: String,
        #[arg(long)]
        reason: String,
        /// Lift by itself after this long, e.g. 2h.
        #[arg(long = "for")]
        duration: Option<String>,
        /// Also keep this IP:port reachable (repeatable).
        #[arg(long)]
        allow: Vec<String>,
    },
    /// Release an isolated host.
    Release {
        host: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// The collector cluster: nodes, their agents, consumer lag, heartbeats.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Commands sent to agents and their results.
    Commands {
        #[arg(long)]
        host: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// The audit log (isolation requests, results, state changes).
    Audit {
        /// RFC 3339 time, or a duration before now (15m, 2h).
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Stored flow records, newest first.
    Flows(FlowArgs),
    /// Playbook runs, newest first.
    Runs {
        /// running, waiting, done or failed.
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// One playbook run.
    Run {
        #[command(subcommand)]
        command: RunCommand,
    },
    /// Approvals asked for by playbooks.
    Approvals {
        /// pending, approved, denied or timed_out.
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Approve a pending approval (the run goes on).
    Approve {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Deny a pending approval.
    Deny {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Learn a draft policy from the flows of a window (groups from clusters of hosts
    /// that talk alike, allow rules for what they did); review, approve, publish it.
    Learn {
        /// Start of the window: a duration before now (24h) or RFC 3339.
        #[arg(long)]
        since: String,
        /// End of the window (default now).
        #[arg(long)]
        until: Option<String>,
        /// Never cluster across it: `label:KEY` or `cidr:NET[,NET...]`.
        #[arg(long)]
        partition: Option<String>,
        /// Similarity (0 to 1) at which hosts are clustered together (default 0.6).
        #[arg(long)]
        threshold: Option<f64>,
        /// Groups from `clusters` (host names) or `labels`.
        #[arg(long)]
        groups: Option<String>,
        /// The draft's name (default `learned`).
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// API tokens and agents' join tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Every node with its state, agents, consumer lag and last heartbeat.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Forget a node taken out of the cluster (refused while it is up).
    Forget { node: String },
}

#[derive(Subcommand)]
enum RunCommand {
    /// A run's steps, approvals and where it is now.
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum HostsCommand {
    /// Set labels (key=value) or remove them (--remove key) on a host.
    Label {
        host: String,
        /// key=value pairs.
        labels: Vec<String>,
        #[arg(long)]
        remove: Vec<String>,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Check a policy file and store it as a new draft version.
    Apply { file: PathBuf },
    /// Publish a draft version: every flow is judged against it from now on.
    Publish { version: i64 },
    /// Print a version's YAML (default: the published one).
    Show { version: Option<String> },
    /// Every version.
    List {
        #[arg(long)]
        json: bool,
    },
    /// What changed from version A to version B (numbers or `published`).
    Diff { from: String, to: String },
    /// Approve groups and rules of a version: later learning runs keep them as they are.
    Approve {
        version: i64,
        /// A group name (repeatable).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// A rule name (repeatable).
        #[arg(long = "rule")]
        rules: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// A learned version's statistics: clusters, confidences, rules with flags.
    Stats { version: i64 },
}

#[derive(Subcommand)]
enum AlertsCommand {
    /// Keep counting but do not publish, for a while (`--for 0s` ends it).
    Snooze {
        key: String,
        #[arg(long = "for")]
        duration: String,
    },
    /// Keep counting but never publish.
    Mute {
        key: String,
    },
    Unmute {
        key: String,
    },
}

#[derive(Args)]
pub struct FlowArgs {
    /// Agent id or host name.
    #[arg(long)]
    host: Option<String>,
    #[arg(long)]
    remote_ip: Option<String>,
    /// The service port: the remote port of an outbound flow, the local one of an inbound.
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
    /// Compliance verdict: permitted, escaped, rejected.
    #[arg(long)]
    verdict: Option<String>,
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
                Command::Hosts {
                    command:
                        Some(HostsCommand::Label {
                            host,
                            labels,
                            remove,
                        }),
                    ..
                } => commands::label(&c, &host, &labels, &remove),
                Command::Hosts { id: None, json, .. } => commands::hosts(&c, json),
                Command::Hosts {
                    id: Some(id), json, ..
                } => commands::host(&c, &id, json),
                Command::Policy { command } => match command {
                    PolicyCommand::Apply { file } => commands::policy_apply(&c, &file),
                    PolicyCommand::Publish { version } => commands::policy_publish(&c, version),
                    PolicyCommand::Show { version } => {
                        commands::policy_show(&c, version.as_deref().unwrap_or("published"))
                    }
                    PolicyCommand::List { json } => commands::policy_list(&c, json),
                    PolicyCommand::Diff { from, to } => commands::policy_diff(&c, &from, &to),
                    PolicyCommand::Approve {
                        version,
                        groups,
                        rules,
                        json,
                    } => learn::approve(&c, version, &groups, &rules, json),
                    PolicyCommand::Stats { version } => commands::print_json(
                        &c.get(&format!("/api/v1/policies/{version}/stats"), &[])?,
                    ),
                },
                Command::Alerts {
                    command: Some(cmd), ..
                } => match cmd {
                    AlertsCommand::Snooze { key, duration } => {
                        commands::alert_action(&c, &key, "snooze", json!({"for": duration}))
                    }
                    AlertsCommand::Mute { key } => {
                        commands::alert_action(&c, &key, "mute", json!({}))
                    }
                    AlertsCommand::Unmute { key } => {
                        commands::alert_action(&c, &key, "unmute", json!({}))
                    }
                },
                Command::Alerts {
                    command: None,
                    host,
                    severity,
                    since,
                    limit,
                    json,
                } => commands::alerts(&c, host, severity, since, limit, json),
                Command::Revoke { id } => commands::revoke(&c, &id),
                Command::Flows(args) => commands::flows(&c, &args),
                Command::Isolate {
                    host,
                    reason,
                    duration,
                    allow,
                } => commands::isolate(&c, &host, &reason, duration, &allow),
                Command::Release { host, reason } => commands::release(&c, &host, reason),
                Command::Commands { host, json } => commands::command_list(&c, host, json),
                Command::Cluster { command } => match command {
                    ClusterCommand::Status { json } => cluster::status(&c, json),
                    ClusterCommand::Forget { node } => cluster::forget(&c, &node),
                },
                Command::Audit { since, limit, json } => commands::audit(&c, since, limit, json),
                Command::Runs { state, json } => runs::runs(&c, state, json),
                Command::Run {
                    command: RunCommand::Show { id, json },
                } => runs::run_show(&c, id, json),
                Command::Approvals { state, json } => runs::approvals(&c, state, json),
                Command::Approve { id, json } => runs::decide(&c, id, true, json),
                Command::Deny { id, json } => runs::decide(&c, id, false, json),
                Command::Learn {
                    since,
                    until,
                    partition,
                    threshold,
                    groups,
                    name,
                    json,
                } => learn::learn(
                    &c,
                    &learn::LearnArgs {
                        since,
                        until,
                        partition,
                        threshold,
                        groups,
                        name,
                        json,
                    },
                ),
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
