//! Cordon's collector: the agents' certificate authority (`pki`), ingest over QUIC with
//! enrollment (`ingest`), the embedded store (`store`), API and join tokens (`tokens`), the
//! REST API (`api`) and its own metrics (`metrics`). `serve` ties them together.
pub mod alerts;
pub mod api;
pub mod cluster;
pub mod config;
pub mod console;
pub mod ingest;
pub mod learn;
pub mod metrics;
pub mod outputs;
pub mod pki;
pub mod policy;
pub mod response;
pub mod serve;
pub mod store;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
pub mod tokens;
