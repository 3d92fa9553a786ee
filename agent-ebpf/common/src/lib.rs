//! The layout contract between Cordon's kernel programs and the agent.
//!
//! Every type here is `#[repr(C)]` with explicit padding and no `bool`, and its size is
//! asserted at compile time, so both sides agree byte for byte. These are kernel ABI types;
//! what leaves the agent on the wire is a different set of types (`cordon-wire`).
#![no_std]

mod config;
mod enforce;
mod events;
mod flow;
mod identity;

pub use config::*;
pub use enforce::*;
pub use events::*;
pub use flow::*;
pub use identity::*;

#[cfg(feature = "user")]
extern crate alloc;
#[cfg(feature = "user")]
mod user;
#[cfg(feature = "user")]
pub use user::*;

/// Length of a task's `comm` in the kernel (`TASK_COMM_LEN`).
pub const COMM_LEN: usize = 16;

/// `AF_INET` / `AF_INET6` as the kernel numbers them.
pub const AF_INET: u8 = 2;
pub const AF_INET6: u8 = 10;

/// IP protocol numbers the programs parse ports for.
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;
