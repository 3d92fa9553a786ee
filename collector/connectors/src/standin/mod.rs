//! (being written)
pub mod http;
