//! Cordon's isolation programs (the eBPF enforcement backend), a separate object from the
//! capture so it can be loaded, pinned and left in force on its own.
//!
//! - `sock.rs`: connect4/6 and sendmsg4/6 refuse a local process's connection at once
//!   (EPERM), recording who tried;
//! - `tc.rs`: TCX ingress and egress on every interface drop every other packet (incoming
//!   connections, ICMP, traffic of sockets opened before the isolation).
//!
//! Nothing is refused unless `ENF_CONFIG.isolated` is 1; `ALLOW` lists what always passes.
#![no_std]
#![no_main]
#![allow(clippy::needless_borrows_for_generic_args)]

mod maps;
mod rules;
#[path = "../runtime.rs"]
mod runtime;
mod sock;
mod tc;
