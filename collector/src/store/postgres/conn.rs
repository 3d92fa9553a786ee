//! Connecting to PostgreSQL: the configuration a node gives (URL, password, application
//! name), the connection a [`PgStore`](super::PgStore) keeps and opens again by itself
//! when it was lost, and which errors mean "PostgreSQL is unavailable" rather than "this
//! statement failed".
//!
//! Nothing here ever shows the password: errors name the server, port, database and user
//! taken from the parsed configuration.
use std::{
    collections::HashMap,
    fmt,
    str::FromStr,
    time::{Duration, Instant},
};

use ::postgres::{
    Client, GenericClient, NoTls, Statement, config::Host, fallible_iterator::FallibleIterator,
};

use crate::store::StoreError;

/// How long a connection attempt may take before it counts as a failure (unless the URL
/// sets `connect_timeout`): while PostgreSQL is down calls fail fast.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// TCP keepalive (unless the URL sets `keepalives_idle`): a dead server or path is noticed
/// within about a minute rather than libpq's default two hours.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
/// A connection idle this long is checked (an empty query) before it is used again.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// How a node reaches the cluster's database.
#[derive(Clone)]
pub struct PgConfig {
    /// A URL (`postgresql://cordon@db1:5432/cordon`) or a key=value string
    /// (`host=db1 user=cordon dbname=cordon`), as libpq takes them.
    pub url: String,
    /// The password, when it is not in the URL (from `postgres_password_file`).
    pub password: Option<String>,
    /// The node's name: PostgreSQL shows it in `pg_stat_activity`.
    pub application_name: String,
}

impl fmt::Debug for PgConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConfig")
            .field("url", &crate::cluster::config::redact_url(&self.url))
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("application_name", &self.application_name)
            .finish()
    }
}

/// A PostgreSQL error as text: the server's message and SQLSTATE for errors the server
/// raised, otherwise the client's error and its causes.
pub(crate) fn describe(e: &::postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
        if let Some(d) = db.detail() {
            s.push_str(" (");
            s.push_str(d);
            s.push(')');
        }
        return s;
    }
    let mut s = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// SQLSTATEs that mean the session is gone or the server cannot take it now: connection
/// exceptions (class 08), shutdowns and a server still starting up (57P01 to 57P03).
fn lost_code(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03")
}

/// Whether `e` means the connection is unusable (closed, an I/O error, the server shutting
/// down or terminating the session), so the next call must connect again.
pub(crate) fn is_lost(e: &::postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(db) = e.as_db_error() {
        return lost_code(db.code().code());
    }
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        if c.is::<std::io::Error>() {
            return true;
        }
        cause = c.source();
    }
    // Timeouts and a connection that ended without an error (UnexpectedMessage, Closed).
    let text = e.to_string();
    text.starts_with("timeout") || text.starts_with("unexpected message")
}

/// Parses a [`PgConfig`] into the client's configuration (with the password, the
/// application name, and this module's timeouts unless the URL sets its own).
pub(crate) fn client_config(cfg: &PgConfig) -> Result<::postgres::Config, StoreError> {
    let mut c = ::postgres::Config::from_str(&cfg.url).map_err(|e| StoreError::PgConnect {
        target: "the configured URL".into(),
        reason: format!("it does not parse: {}", describe(&e)),
        unavailable: false,
    })?;
    if let Some(p) = &cfg.password {
        c.password(p.as_bytes());
    }
    if !cfg.application_name.is_empty() {
        c.application_name(&cfg.application_name);
    }
    if c.get_connect_timeout().is_none() {
        c.connect_timeout(CONNECT_TIMEOUT);
    }
    if !cfg.url.contains("keepalives_idle") {
        c.keepalives_idle(KEEPALIVE_IDLE);
    }
    Ok(c)
}

/// What a connection goes to, for messages: servers, ports, database and user (never
/// the password).
pub(crate) fn target(c: &::postgres::Config) -> String {
    let hosts: Vec<String> = c
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let ports: Vec<String> = c.get_ports().iter().map(u16::to_string).collect();
    format!(
        "host={} port={} dbname={} user={}",
        if hosts.is_empty() {
            "localhost".into()
        } else {
            hosts.join(",")
        },
        if ports.is_empty() {
            "5432".into()
        } else {
            ports.join(",")
        },
        c.get_dbname().or(c.get_user()).unwrap_or("?"),
        c.get_user().unwrap_or("?"),
    )
}

/// Opens one connection (no TLS: see the module docs of `store::postgres`).
pub(crate) fn open(c: &::postgres::Config) -> Result<Client, StoreError> {
    c.connect(NoTls).map_err(|e| {
        // Refused logins, unknown databases and bad settings are not outages.
        let unavailable = match e.as_db_error() {
            Some(db) => lost_code(db.code().code()) || db.code().code() == "53300",
            None => is_lost(&e) || e.to_string().starts_with("error connecting"),
        };
        StoreError::PgConnect {
            target: target(c),
            reason: describe(&e),
            unavailable,
        }
    })
}

/// Statements prepared on the current connection, by their SQL: the hot paths (storing
/// batches, raising alerts) then cost one round trip per statement, not two.
#[derive(Default)]
pub(crate) struct Statements(HashMap<&'static str, Statement>);

impl Statements {
    /// The prepared statement for `sql`, preparing it on `c` the first time.
    pub(crate) fn get(
        &mut self,
        c: &mut impl GenericClient,
        sql: &'static str,
    ) -> Result<Statement, ::postgres::Error> {
        if let Some(s) = self.0.get(sql) {
            return Ok(s.clone());
        }
        let s = c.prepare(sql)?;
        self.0.insert(sql, s.clone());
        Ok(s)
    }
}

/// The connection of a store: opened again by the next call after it was lost.
pub(crate) struct Conn {
    config: ::postgres::Config,
    client: Option<Client>,
    statements: Statements,
    /// When the connection last answered a call.
    last_used: Instant,
}

/// Drops a client where that is allowed: closing it runs the blocking client's own small
/// runtime, which must not happen on a thread that drives a tokio runtime (a store or
/// listener that ends up dropped in async code would panic), so there it is closed on a
/// short-lived thread of its own.
pub(crate) fn close(client: Client) {
    if tokio::runtime::Handle::try_current().is_ok() {
        let spawned = std::thread::Builder::new()
            .name("cordon-pg-close".into())
            .spawn(move || drop(client));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "closing a PostgreSQL connection failed");
        }
    } else {
        drop(client);
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            close(c);
        }
    }
}

impl Conn {
    /// Connects now (an error if PostgreSQL cannot be reached).
    pub(crate) fn open(cfg: &PgConfig) -> Result<Self, StoreError> {
        let config = client_config(cfg)?;
        let client = open(&config)?;
        Ok(Self {
            config,
            client: Some(client),
            statements: Statements::default(),
            last_used: Instant::now(),
        })
    }

    /// What this connection goes to (for messages).
    pub(crate) fn target(&self) -> String {
        target(&self.config)
    }

    /// The live client, taken out of `self`: if the connection was lost (closed, or the
    /// server ended the session while it was idle), a new one, connected once.
    fn take_live(&mut self) -> Result<Client, StoreError> {
        if let Some(mut c) = self.client.take() {
            // A session the server ended while the connection was idle has left a FATAL
            // message and an EOF in the socket, which the client only reads when asked
            // to. After a pause, ask with an empty query (one round trip); in between,
            // look at what has been read already (free).
            let dead = if self.last_used.elapsed() >= IDLE_CHECK {
                c.is_valid(CONNECT_TIMEOUT).is_err()
            } else {
                c.notifications()
                    .timeout_iter(Duration::ZERO)
                    .next()
                    .is_err()
            };
            if !dead && !c.is_closed() {
                return Ok(c);
            }
            tracing::warn!(server = %self.target(), "the connection to PostgreSQL was lost; reconnecting");
            self.statements = Statements::default();
        }
        let c = open(&self.config)?;
        tracing::info!(server = %self.target(), "connected to PostgreSQL again");
        Ok(c)
    }

    /// Runs `f` on the live client; an error that means the connection is gone drops it,
    /// so the next call connects again.
    pub(crate) fn run<T>(
        &mut self,
        f: impl FnOnce(&mut Client, &mut Statements) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut client = self.take_live()?;
        let result = f(&mut client, &mut self.statements);
        self.last_used = Instant::now();
        match &result {
            Err(e) if e.connection_lost() => self.statements = Statements::default(),
            _ => self.client = Some(client),
        }
        result
    }
}
