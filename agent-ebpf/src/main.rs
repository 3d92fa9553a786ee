//! Cordon's kernel programs. Built for `bpfel-unknown-none` by `agent/build.rs`.
//!
//! - `sock.rs`: who owns each socket (sock_create, connect4/6, sendmsg4/6, post_bind4/6);
//! - `skb.rs`: bytes and packets per flow (cgroup_skb ingress/egress), one event per new flow;
//! - `exec.rs`: exec, fork and exit tracepoints so short-lived processes keep their identity.
#![no_std]
#![no_main]
// Map keys and values go by reference on purpose: passing them by value would copy them
// onto the 512-byte BPF stack (ExecArgs alone is 1 KiB).
#![allow(clippy::needless_borrows_for_generic_args)]

mod exec;
mod maps;
mod runtime;
mod scope;
mod skb;
mod sock;
