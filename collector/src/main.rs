//! `cordon-collector`: parses the command line and calls into the library.
use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use cordon_collector::{
    cluster::node::{CA_NAME, Location},
    config::CollectorConfig,
    serve,
};

#[derive(Parser)]
#[command(
    name = "cordon-collector",
    version,
    about = "Cordon collector: ingest and store agents' flows"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the collector until SIGINT/SIGTERM.
    Run {
        #[arg(long)]
        config: PathBuf,
    },
    /// Sign an agent's certificate request with this collector's CA (offline enrollment).
    SignAgent {
        #[arg(long)]
        config: PathBuf,
        /// The agent's id (its certificate's common name).
        #[arg(long)]
        id: String,
        /// The request made by `cordon-agent csr`.
        #[arg(long)]
        csr: PathBuf,
        /// Where to write the agent's certificate.
        #[arg(long)]
        out: PathBuf,
        /// Also write the CA certificate here, for the agent's `uplink.ca_file`.
        #[arg(long)]
        ca_out: Option<PathBuf>,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: i64,
    },
    /// Check a configuration file and exit (0 when valid).
    Validate {
        #[arg(long)]
        config: PathBuf,
    },
    /// Make a token directly in the store (on the collector host; for the first admin
    /// token — afterwards `cordon token create` does this through the API).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Print a new token's secret (shown once; only its hash is kept).
    Create {
        #[arg(long)]
        config: PathBuf,
        /// What the token is for.
        #[arg(long)]
        name: String,
        /// read, admin, or enroll (a join token for agents).
        #[arg(long, default_value = "admin")]
        scope: String,
        /// Lifetime, e.g. 24h or 90d (join tokens default to 24h).
        #[arg(long)]
        expires_in: Option<String>,
        /// Join tokens: how many agents may enroll with it (default 1).
        #[arg(long)]
        uses: Option<u64>,
    },
}

/// Where this collector's store is: its SQLite file, or its cluster's PostgreSQL.
fn location(cfg: &CollectorConfig) -> anyhow::Result<Location> {
    Ok(match &cfg.cluster {
        None => Location::Sqlite(cfg.data_dir.join("cordon.db")),
        Some(c) => Location::Postgres(
            c.pg_config(&cfg.node_name())
                .map_err(|e| anyhow::anyhow!(e))?,
        ),
    })
}

/// The collector's CA: in its data directory, or the one its cluster shares.
fn collector_ca(cfg: &CollectorConfig) -> anyhow::Result<cordon_collector::pki::Ca> {
    match location(cfg)? {
        Location::Sqlite(_) => Ok(cordon_collector::pki::load_or_create(
            &cfg.data_dir.join("pki"),
            CA_NAME,
        )?),
        Location::Postgres(pg) => {
            let mut s = cordon_collector::store::postgres::PgStore::connect(&pg)?;
            cordon_collector::cluster::node::shared_ca(&mut s, &cfg.data_dir)
        }
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CORDON_LOG")
                // PostgreSQL's notices (e.g. "already exists, skipping") are not news.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,postgres=warn")),
        )
        .init();
    let res = match Cli::parse().command {
        Command::Validate { config } => CollectorConfig::load(&config).and_then(|cfg| {
            let r = &cfg.response;
            if !r.playbook_dir.as_os_str().is_empty() {
                let avail = cordon_collector::response::connect::integrations(r)?.available();
                let (ok, errors) =
                    cordon_collector::response::playbook::load_dir(&r.playbook_dir, &avail);
                for p in &ok {
                    println!("playbook {}: valid ({} steps)", p.name, p.steps.len());
                }
                if let Some(first) = errors.first() {
                    for e in &errors[1..] {
                        eprintln!("{e}");
                    }
                    anyhow::bail!("{first}");
                }
            }
            if let Some(c) = &cfg.cluster {
                // The password file must be there and private.
                c.pg_config(&cfg.node_name())
                    .map_err(|e| anyhow::anyhow!("{}: {e}", config.display()))?;
            }
            println!("{}: valid", config.display());
            Ok(())
        }),
        Command::SignAgent {
            config,
            id,
            csr,
            out,
            ca_out,
            days,
        } => CollectorConfig::load(&config).and_then(|cfg| {
            let ca = collector_ca(&cfg)?;
            let request = std::fs::read_to_string(&csr)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", csr.display()))?;
            std::fs::write(&out, ca.sign_agent(&request, &id, days)?)?;
            if let Some(ca_out) = ca_out {
                std::fs::write(ca_out, &ca.cert_pem)?;
            }
            println!(
                "signed {id}: {} (CA fingerprint {})",
                out.display(),
                ca.fingerprint()
            );
            Ok(())
        }),
        Command::Token {
            command:
                TokenCommand::Create {
                    config,
                    name,
                    scope,
                    expires_in,
                    uses,
                },
        } => CollectorConfig::load(&config).and_then(|cfg| {
            let at = location(&cfg)?;
            if matches!(at, Location::Sqlite(_)) {
                std::fs::create_dir_all(&cfg.data_dir)?;
            }
            let mut store = at
                .open()
                .map_err(|e| anyhow::anyhow!("{}: {e}", at.describe()))?;
            let req = cordon_collector::api::NewToken {
                name,
                scope,
                expires_in,
                uses,
            };
            let created = cordon_collector::api::create_token(&mut store, &req)
                .map_err(|e| anyhow::anyhow!("{}", e.message()))?;
            println!("{}", created.token);
            Ok(())
        }),
        Command::Run { config } => CollectorConfig::load(&config).and_then(|cfg| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?
                .block_on(serve::run(cfg))
        }),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cordon-collector: {e:#}");
            ExitCode::FAILURE
        }
    }
}
