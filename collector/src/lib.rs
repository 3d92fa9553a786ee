//! Cordon's collector. Today: its certificate authority (`pki`), the base of the agents'
//! mTLS identities. Ingest, storage and the API arrive with the rest of the uplink issue.
pub mod pki;
