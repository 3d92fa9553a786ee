//! Cordon's collector. So far: its certificate authority (`pki`), the base of the agents'
//! mTLS identities, and the embedded store (`store`). Ingest over QUIC, the API and the CLI
//! arrive with the rest of the uplink issue.
pub mod config;
pub mod ingest;
pub mod pki;
pub mod serve;
pub mod store;
