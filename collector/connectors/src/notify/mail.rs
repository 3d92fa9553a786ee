//! E-mail over SMTP with lettre (synchronous transport, rustls with ring).
use std::{fmt, time::Duration};

use lettre::{
    Message, SmtpTransport, Transport as _,
    message::{Mailbox, header::ContentType},
    transport::smtp::{
        authentication::Credentials,
        client::{Tls, TlsParameters},
    },
};
use serde::Deserialize;

use super::{
    NotifyError,
    http::{self, Sleep},
};

/// How the SMTP connection is protected.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain text (a local relay or a test sink only: credentials would travel in clear).
    None,
    /// Plain connection upgraded with STARTTLS, which is required (usually port 587).
    Starttls,
    /// TLS from the first byte ("SMTPS", usually port 465).
    Tls,
}

/// Configuration of the mailer. [`SmtpConfig::validate`] names the offending field
/// (`smtp.<field>: ...`).
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// The SMTP server's host name (also the name its certificate must carry).
    pub host: String,
    /// Its port.
    #[serde(default = "default_port")]
    pub port: u16,
    /// `none`, `starttls` (default) or `tls`.
    #[serde(default = "default_tls")]
    pub tls: SmtpTls,
    /// User name for SMTP AUTH, if the server wants it.
    #[serde(default)]
    pub username: Option<String>,
    /// Its password. Secret: redacted in `Debug`, never logged.
    #[serde(default)]
    pub password: Option<String>,
    /// The sender, e.g. `Cordon <cordon@example.net>`.
    pub from: String,
    /// The recipients (at least one).
    pub to: Vec<String>,
    /// Timeout of each SMTP command, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Retries after a transient failure (SMTP 4xx, connection error) (0 = try once).
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// First backoff delay, in milliseconds; doubles on each retry (with jitter).
    #[serde(default = "default_backoff_initial_ms")]
    pub backoff_initial_ms: u64,
}

fn default_port() -> u16 {
    587
}
fn default_tls() -> SmtpTls {
    SmtpTls::Starttls
}
fn default_timeout_ms() -> u64 {
    10_000
}
fn default_max_retries() -> u32 {
    2
}
fn default_backoff_initial_ms() -> u64 {
    1_000
}

impl fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("from", &self.from)
            .field("to", &self.to)
            .field("timeout_ms", &self.timeout_ms)
            .field("max_retries", &self.max_retries)
            .field("backoff_initial_ms", &self.backoff_initial_ms)
            .finish()
    }
}

fn bad(field: &str, msg: impl fmt::Display) -> NotifyError {
    NotifyError::Config(format!("smtp.{field}: {msg}"))
}

impl SmtpConfig {
    /// A config with every default and the required fields.
    pub fn new(host: impl Into<String>, port: u16, tls: SmtpTls, from: &str, to: &[&str]) -> Self {
        Self {
            host: host.into(),
            port,
            tls,
            username: None,
            password: None,
            from: from.into(),
            to: to.iter().map(|s| (*s).to_owned()).collect(),
            timeout_ms: default_timeout_ms(),
            max_retries: default_max_retries(),
            backoff_initial_ms: default_backoff_initial_ms(),
        }
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), NotifyError> {
        self.parsed().map(drop)
    }

    /// The sender and recipients, parsed.
    fn parsed(&self) -> Result<(Mailbox, Vec<Mailbox>), NotifyError> {
        let host_ok = !self.host.is_empty()
            && self.host.len() <= 253
            && self
                .host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
        if !host_ok {
            return Err(bad("host", "required: a host name or IP address"));
        }
        if self.port == 0 {
            return Err(bad("port", "must be 1 to 65535"));
        }
        match (&self.username, &self.password) {
            (Some(u), Some(_)) if u.is_empty() => return Err(bad("username", "empty")),
            (Some(_), None) => return Err(bad("password", "required with username")),
            (None, Some(_)) => return Err(bad("username", "required with password")),
            _ => {}
        }
        if !(100..=600_000).contains(&self.timeout_ms) {
            return Err(bad("timeout_ms", "must be 100 to 600000"));
        }
        if self.max_retries > 20 {
            return Err(bad("max_retries", "must be 0 to 20"));
        }
        if !(1..=600_000).contains(&self.backoff_initial_ms) {
            return Err(bad("backoff_initial_ms", "must be 1 to 600000"));
        }
        let from: Mailbox = self
            .from
            .parse()
            .map_err(|e| bad("from", format!("not an address: {e}")))?;
        if self.to.is_empty() {
            return Err(bad("to", "at least one recipient"));
        }
        let to = self
            .to
            .iter()
            .enumerate()
            .map(|(i, t)| {
                t.parse::<Mailbox>()
                    .map_err(|e| bad(&format!("to[{i}]"), format!("not an address: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((from, to))
    }
}

/// Sends plain-text mail to the configured recipients.
pub struct Mailer {
    cfg: SmtpConfig,
    from: Mailbox,
    to: Vec<Mailbox>,
    transport: SmtpTransport,
    sleep: Sleep,
}

impl fmt::Debug for Mailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mailer").field("cfg", &self.cfg).finish()
    }
}

impl Mailer {
    /// Validates `cfg` and builds the transport (it connects on each send).
    pub fn new(cfg: SmtpConfig) -> Result<Self, NotifyError> {
        let (from, to) = cfg.parsed()?;
        let tls = match cfg.tls {
            SmtpTls::None => Tls::None,
            SmtpTls::Starttls | SmtpTls::Tls => {
                let params = TlsParameters::new(cfg.host.clone())
                    .map_err(|e| bad("tls", format!("cannot set up TLS: {e}")))?;
                if cfg.tls == SmtpTls::Tls {
                    Tls::Wrapper(params)
                } else {
                    Tls::Required(params)
                }
            }
        };
        let mut builder = SmtpTransport::builder_dangerous(cfg.host.clone())
            .port(cfg.port)
            .tls(tls)
            .timeout(Some(Duration::from_millis(cfg.timeout_ms)));
        if let (Some(u), Some(p)) = (&cfg.username, &cfg.password) {
            builder = builder.credentials(Credentials::new(u.clone(), p.clone()));
        }
        Ok(Self {
            transport: builder.build(),
            from,
            to,
            cfg,
            sleep: http::thread_sleep(),
        })
    }

    /// Replaces how the mailer waits between retries.
    pub fn with_sleep(mut self, sleep: Sleep) -> Self {
        self.sleep = sleep;
        self
    }

    /// Sends one plain-text (UTF-8) message to every recipient.
    pub fn send(&self, subject: &str, text_body: &str) -> Result<(), NotifyError> {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(subject)
            .message_id(None)
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        let msg = builder
            .body(text_body.to_owned())
            .map_err(|e| NotifyError::Config(format!("e-mail: cannot build the message: {e}")))?;
        let mut attempt = 0;
        loop {
            let err = match self.transport.send(&msg) {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            // A 5xx, a TLS failure or a client-side error will not go away by itself.
            if err.is_permanent() || err.is_tls() || err.is_client() {
                return Err(NotifyError::Rejected {
                    what: "e-mail",
                    message: err.to_string(),
                });
            }
            let why = err.to_string();
            if attempt >= self.cfg.max_retries {
                return Err(NotifyError::Unavailable {
                    what: "e-mail",
                    attempts: attempt + 1,
                    last: why,
                });
            }
            let initial = Duration::from_millis(self.cfg.backoff_initial_ms);
            let delay = http::backoff(attempt, initial, initial.saturating_mul(32));
            tracing::warn!(attempt, ?delay, why, "e-mail: retrying");
            (self.sleep)(delay);
            attempt += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_the_bad_field() {
        let ok = SmtpConfig::new(
            "mail.example",
            587,
            SmtpTls::Starttls,
            "a@example.net",
            &["b@example.net"],
        );
        assert!(ok.validate().is_ok());
        let mut c = ok.clone();
        c.to = vec!["b@example.net".into(), "not an address".into()];
        assert!(
            c.validate()
                .expect_err("must be refused")
                .to_string()
                .contains("smtp.to[1]")
        );
        let mut c = ok.clone();
        c.username = Some("u".into());
        assert!(
            c.validate()
                .expect_err("must be refused")
                .to_string()
                .contains("smtp.password")
        );
        let mut c = ok.clone();
        c.password = Some("hunter2-secret".into());
        c.username = Some("u".into());
        assert!(!format!("{c:?}").contains("hunter2"));
        let mut c = ok;
        c.from = "nobody".into();
        assert!(
            c.validate()
                .expect_err("must be refused")
                .to_string()
                .contains("smtp.from")
        );
    }
}
