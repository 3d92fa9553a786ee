//! Cordon's response integrations, each a small blocking client (the playbook engine calls
//! them from worker threads) with typed errors that say whether a retry can help:
//!
//! - [`duo`]: Duo Auth API v2 (preauth, push, auth_status), requests signed as Duo
//!   specifies (signature v2 and v5);
//! - [`servicenow`]: incidents through the Table API (create once per correlation id, work
//!   notes, resolve), Basic auth or OAuth;
//! - [`soar`]: Splunk SOAR containers and CEF artifacts;
//! - [`notify`]: webhook (HMAC-signed JSON) and e-mail (SMTP).
//!
//! With the `standin` feature, [`standin`] has local servers that check each product's
//! documented protocol and can be told to fail.
pub mod duo;
pub mod notify;
pub mod servicenow;
pub mod soar;

#[cfg(feature = "standin")]
pub mod standin;
