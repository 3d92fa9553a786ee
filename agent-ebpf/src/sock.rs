//! Socket ownership, recorded in process context.
//!
//! aya-ebpf 0.2.1's socket-local storage needs BTF-defined maps; these programs key an LRU
//! map by socket cookie instead (`bpf_get_socket_cookie` works in every hook used here).
//! Accepted sockets are never created through sock_create: their flows are attributed by
//! the listener socket the SYN arrives on, or by `LISTENERS` (post_bind).
use aya_ebpf::{
    EbpfContext,
    bindings::BPF_ANY,
    helpers::{bpf_get_current_pid_tgid, generated::bpf_get_socket_cookie},
    macros::{cgroup_sock, cgroup_sock_addr},
    programs::{SockAddrContext, SockContext},
};
use cordon_abi::{
    AF_INET, AF_INET6, DROP_OWNER_MAP, IDENT_BOUND, IDENT_CONNECTED, IDENT_SELF, IDENT_SENT,
    ListenKey,
};

use crate::{
    maps::{LISTENERS, SOCK_OWNERS},
    scope::{config, count, current_identity},
};

/// Verdict of a cgroup sock / sock_addr program that lets the operation proceed.
const ALLOW: i32 = 1;

#[cgroup_sock(sock_create)]
pub fn sock_create(ctx: SockContext) -> i32 {
    // SAFETY: the context pointer is valid for the program's run.
    let family = unsafe { (*ctx.sock).family } as u8;
    if family != AF_INET && family != AF_INET6 {
        return ALLOW;
    }
    let Some(cfg) = config() else { return ALLOW };
    // SAFETY: the helper takes the program's own context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let id = current_identity(cfg, 0);
    if SOCK_OWNERS.insert(&cookie, &id, BPF_ANY as u64).is_err() {
        count(DROP_OWNER_MAP);
    }
    ALLOW
}

/// A socket is closed: forget its owner, so the map holds live sockets only and does not
/// have to evict (a flow keeps the owner it was created with). The agent's own sockets are
/// kept: packets still arrive after close() (FIN, ACK), and without the mark they would be
/// reported as flows.
#[cgroup_sock(sock_release)]
pub fn sock_release(ctx: SockContext) -> i32 {
    // SAFETY: the helper takes the program's own context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    // SAFETY: map value read at once.
    let own = unsafe { SOCK_OWNERS.get(&cookie) }.is_some_and(|id| id.flags & IDENT_SELF != 0);
    if !own {
        let _ = SOCK_OWNERS.remove(&cookie);
    }
    ALLOW
}

#[cgroup_sock(post_bind4)]
pub fn post_bind4(ctx: SockContext) -> i32 {
    on_bind(&ctx)
}

#[cgroup_sock(post_bind6)]
pub fn post_bind6(ctx: SockContext) -> i32 {
    on_bind(&ctx)
}

#[inline(always)]
fn on_bind(ctx: &SockContext) -> i32 {
    let Some(cfg) = config() else { return ALLOW };
    // SAFETY: the context pointer is valid for the program's run; `src_port` is in host
    // byte order for sock programs.
    let (port, proto, family) = unsafe {
        let sk = ctx.sock;
        (
            (*sk).src_port as u16,
            (*sk).protocol as u8,
            (*sk).family as u8,
        )
    };
    let id = current_identity(cfg, IDENT_BOUND);
    // SAFETY: the helper takes the program's own context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    if SOCK_OWNERS.insert(&cookie, &id, BPF_ANY as u64).is_err() {
        count(DROP_OWNER_MAP);
    }
    if port != 0 {
        let key = ListenKey {
            port,
            proto,
            family,
        };
        if LISTENERS.insert(&key, &id, BPF_ANY as u64).is_err() {
            count(DROP_OWNER_MAP);
        }
    }
    ALLOW
}

#[cgroup_sock_addr(connect4)]
pub fn connect4(ctx: SockAddrContext) -> i32 {
    note_initiator(&ctx, IDENT_CONNECTED)
}

#[cgroup_sock_addr(connect6)]
pub fn connect6(ctx: SockAddrContext) -> i32 {
    note_initiator(&ctx, IDENT_CONNECTED)
}

#[cgroup_sock_addr(sendmsg4)]
pub fn sendmsg4(ctx: SockAddrContext) -> i32 {
    note_initiator(&ctx, IDENT_SENT)
}

#[cgroup_sock_addr(sendmsg6)]
pub fn sendmsg6(ctx: SockAddrContext) -> i32 {
    note_initiator(&ctx, IDENT_SENT)
}

/// Records the process that connects or sends on a socket: it may not be the one that
/// created it (inherited or passed sockets), and sockets older than the agent get an owner
/// here. The common case (same process, flag already set) is one lookup and no write.
#[inline(always)]
fn note_initiator(ctx: &SockAddrContext, flag: u32) -> i32 {
    let Some(cfg) = config() else { return ALLOW };
    // SAFETY: the helper takes the program's own context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if let Some(owner) = SOCK_OWNERS.get_ptr_mut(&cookie) {
        // SAFETY: pointer from the map lookup, valid for this program run.
        unsafe {
            if (*owner).tgid == tgid {
                if (*owner).flags & flag == 0 {
                    (*owner).flags |= flag;
                }
                return ALLOW;
            }
        }
    }
    let id = current_identity(cfg, flag);
    if SOCK_OWNERS.insert(&cookie, &id, BPF_ANY as u64).is_err() {
        count(DROP_OWNER_MAP);
    }
    ALLOW
}
