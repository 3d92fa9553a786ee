//! Aggregation: one entry per flow, exported when first seen, every export interval while
//! open, and once at the end (closed, or idle past the timeout).
mod table;

pub use table::{FlowStart, FlowTable, TableConfig, Update};

#[cfg(test)]
mod tests;
