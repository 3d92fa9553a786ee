//! (being written)
pub mod http;
pub mod servicenow;
pub mod smtp;
pub mod soar;
pub mod webhook;
