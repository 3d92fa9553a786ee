//! The Splunk HTTP Event Collector (HEC) output: `POST /services/collector/event` with
//! the envelopes' HEC objects concatenated, gzip, optional indexer acknowledgement, and
//! retries on 429/500/503 only. See `docs/outputs.md` ("Splunk HEC output").
mod backoff;
mod batch;
mod config;
mod http;
pub mod protocol;
mod sink;

pub use config::HecConfig;
pub use sink::{HecCounters, HecCountersSnapshot, HecSink};

#[cfg(test)]
mod tests;
