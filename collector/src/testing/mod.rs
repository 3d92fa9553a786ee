//! Test support, compiled for the collector's own tests and, with the `test-support`
//! feature, for other crates' (the privileged lab): a real PostgreSQL server started by
//! the tests themselves ([`postgres`]).
pub mod postgres;
