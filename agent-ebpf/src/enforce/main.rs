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
mod sock;
mod tc;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // SAFETY: the verifier rejects any program with a reachable panic path, so this is
    // never executed in a loaded program.
    unsafe { core::hint::unreachable_unchecked() }
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
