//! Local stand-ins for the products Cordon talks to, each checking the documented protocol
//! and able to fail on demand (tests and `make demo`).
pub mod duo;
pub mod http;
pub mod servicenow;
pub mod smtp;
pub mod soar;
pub mod webhook;
