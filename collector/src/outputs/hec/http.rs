//! The blocking HTTP client (ureq + rustls with the ring provider) and one HEC request.
use std::{fs, sync::Arc};

use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig, TlsProvider};

use super::{
    HecConfig,
    protocol::{self, Verdict},
};

/// Replies larger than this are not HEC's: read no further.
const MAX_REPLY_BYTES: u64 = 64 * 1024;

pub fn agent(cfg: &HecConfig) -> anyhow::Result<ureq::Agent> {
    let mut tls = TlsConfig::builder().provider(TlsProvider::Rustls);
    if cfg.insecure_skip_verify {
        tracing::warn!("outputs.hec.insecure_skip_verify: the HEC certificate is not verified");
        tls = tls.disable_verification(true);
    } else if let Some(path) = &cfg.ca_file {
        let pem = fs::read(path)
            .map_err(|e| anyhow::anyhow!("outputs.hec.ca_file: {}: {e}", path.display()))?;
        let mut certs: Vec<Certificate<'static>> = Vec::new();
        for item in ureq::tls::parse_pem(&pem) {
            match item {
                Ok(PemItem::Certificate(c)) => certs.push(c),
                Ok(_) => {}
                Err(e) => anyhow::bail!("outputs.hec.ca_file: {}: {e}", path.display()),
            }
        }
        if certs.is_empty() {
            anyhow::bail!(
                "outputs.hec.ca_file: {}: no PEM certificate in it",
                path.display()
            );
        }
        tls = tls.root_certs(RootCerts::Specific(Arc::new(certs)));
    }
    let config = ureq::Agent::config_builder()
        // 4xx and 5xx are answers to classify, not transport errors.
        .http_status_as_error(false)
        // A redirect of a POST would lose the body: report it instead.
        .max_redirects(0)
        .max_redirects_will_error(false)
        .timeout_global(Some(cfg.timeout()))
        .user_agent(concat!("cordon-collector/", env!("CARGO_PKG_VERSION")))
        .tls_config(tls.build())
        .build();
    Ok(config.into())
}

/// How one request went, with the bytes it put on the wire.
pub struct Outcome {
    pub verdict: Verdict,
    pub status: Option<u16>,
    /// HEC's `code` in the reply, if any.
    pub code: Option<i64>,
}

/// A transport error (no HTTP answer): retryable, except for what no retry can fix.
fn transport(e: ureq::Error) -> Verdict {
    match e {
        ureq::Error::BadUri(_) | ureq::Error::Http(_) | ureq::Error::RequireHttpsOnly(_) => {
            Verdict::Fatal(format!("request: {e}"))
        }
        e => Verdict::Retry {
            why: format!("transport: {e}"),
            after: None,
        },
    }
}

pub fn answer(res: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Outcome {
    let mut resp = match res {
        Ok(r) => r,
        Err(e) => {
            return Outcome {
                verdict: transport(e),
                status: None,
                code: None,
            };
        }
    };
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = match resp
        .body_mut()
        .with_config()
        .limit(MAX_REPLY_BYTES)
        .read_to_string()
    {
        Ok(b) => b,
        // A success whose reply we could not read may lack its ackId: send again.
        Err(e) if (200..300).contains(&status) => {
            return Outcome {
                verdict: Verdict::Retry {
                    why: format!("HTTP {status}, reading the reply: {e}"),
                    after: None,
                },
                status: Some(status),
                code: None,
            };
        }
        Err(_) => String::new(),
    };
    Outcome {
        code: protocol::Reply::parse(&body).code,
        verdict: protocol::classify(status, &body, retry_after.as_deref()),
        status: Some(status),
    }
}
