//! (being written)
pub mod duo;
