//! Local connects and sends refused at once with EPERM while isolated.
use aya_ebpf::{macros::cgroup_sock_addr, programs::SockAddrContext};
use cordon_abi::{AF_INET, AF_INET6, FlowKey};

use crate::rules::{Remote, allowed, isolation, record};

/// sock_addr verdicts: 1 lets the call proceed, 0 fails it with EPERM.
const PROCEED: i32 = 1;
const REFUSE: i32 = 0;

#[cgroup_sock_addr(connect4)]
pub fn enf_connect4(ctx: SockAddrContext) -> i32 {
    check(&ctx, AF_INET)
}

#[cgroup_sock_addr(connect6)]
pub fn enf_connect6(ctx: SockAddrContext) -> i32 {
    check(&ctx, AF_INET6)
}

#[cgroup_sock_addr(sendmsg4)]
pub fn enf_sendmsg4(ctx: SockAddrContext) -> i32 {
    check(&ctx, AF_INET)
}

#[cgroup_sock_addr(sendmsg6)]
pub fn enf_sendmsg6(ctx: SockAddrContext) -> i32 {
    check(&ctx, AF_INET6)
}

#[inline(always)]
fn check(ctx: &SockAddrContext, family: u8) -> i32 {
    let Some(n) = isolation() else {
        return PROCEED;
    };
    // SAFETY: the context pointer is valid for the program's run; user_port is in network
    // byte order in its low 16 bits.
    let (addr, port, proto) = unsafe {
        let sa = ctx.sock_addr;
        let addr = if family == AF_INET {
            [(*sa).user_ip4, 0, 0, 0]
        } else {
            (*sa).user_ip6
        };
        (
            addr,
            u16::from_be((*sa).user_port as u16),
            (*sa).protocol as u8,
        )
    };
    let r = Remote {
        family,
        proto,
        addr,
        port,
    };
    if allowed(n, &r) {
        return PROCEED;
    }
    let mut key = FlowKey {
        local_addr: [0; 16],
        remote_addr: [0; 16],
        local_port: 0,
        remote_port: port,
        family,
        proto,
        _pad: [0; 2],
    };
    for (w, word) in addr.iter().enumerate() {
        key.remote_addr[w * 4..w * 4 + 4].copy_from_slice(&word.to_ne_bytes());
    }
    record(&key, true, 0);
    REFUSE
}
