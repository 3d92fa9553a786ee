//! Bytes and packets per flow, from cgroup_skb ingress and egress.
//!
//! The packet starts at its IP header. A flow is keyed from this host's point of view
//! (local, remote); the first packet of a key this host had not seen creates the entry and
//! sends exactly one event. Every later packet is one lookup and a few adds on this CPU's
//! slot. Packets are never dropped here: these programs observe, they do not enforce.
use aya_ebpf::{
    bindings::{BPF_ANY, BPF_NOEXIST},
    helpers::generated::bpf_get_socket_cookie,
    macros::cgroup_skb,
    programs::SkBuffContext,
};
use cordon_abi::{
    AF_INET, AF_INET6, DROP_FLOW_MAP, DROP_PARSE, DROP_RINGBUF_FLOW, EVENT_FLOW, FlowCounters,
    FlowEvent, FlowKey, IDENT_CONNECTED, IDENT_SELF, IPPROTO_TCP, IPPROTO_UDP, ListenKey,
    ORIGIN_LOCAL, ORIGIN_REMOTE, ORIGIN_UNKNOWN, OWNER_LISTENER, OWNER_NONE, OWNER_SOCKET,
    ProcIdentity, STAT_FLOW_EVENTS, STAT_FLOWS_CREATED, STAT_TCP_REUSE, TCP_ACK, TCP_SYN,
};

use crate::{
    maps::{EVENTS, FLOW_SYN, FLOWS, LISTENERS, SOCK_OWNERS},
    scope::{config, count, now_ns, wakeup_flags},
};

/// cgroup_skb verdict: let the packet through.
const PASS: i32 = 1;

#[cgroup_skb(egress)]
pub fn flow_egress(ctx: SkBuffContext) -> i32 {
    if account(&ctx, true).is_err() {
        count(DROP_PARSE);
    }
    PASS
}

#[cgroup_skb(ingress)]
pub fn flow_ingress(ctx: SkBuffContext) -> i32 {
    if account(&ctx, false).is_err() {
        count(DROP_PARSE);
    }
    PASS
}

/// What the headers say about one packet.
struct Packet {
    key: FlowKey,
    /// IP-layer length.
    len: u64,
    tcp_flags: u8,
    /// Sequence number of a pure SYN (a connection opening), else `None`.
    syn_seq: Option<u32>,
}

#[inline(always)]
fn parse(ctx: &SkBuffContext, egress: bool) -> Result<Option<Packet>, i64> {
    // Spelled out rather than FlowKey::zeroed(): with the const fn, LLVM leaves a register
    // the verifier sees as uninitialised ("R4 !read_ok") when the key is stored.
    let mut key = FlowKey {
        local_addr: [0; 16],
        remote_addr: [0; 16],
        local_port: 0,
        remote_port: 0,
        family: 0,
        proto: 0,
        _pad: [0; 2],
    };
    // Few helper calls per packet: the whole IP header at once, then the first 16 bytes of
    // the transport header.
    let version_ihl: u8 = ctx.load(0)?;
    let (l4, len) = match version_ihl >> 4 {
        4 => {
            let ihl = ((version_ihl & 0x0f) as usize) * 4;
            if ihl < 20 {
                return Err(-1);
            }
            let h: [u8; 20] = ctx.load(0)?;
            let total = u16::from_be_bytes([h[2], h[3]]);
            let frag = u16::from_be_bytes([h[6], h[7]]);
            key.proto = h[9];
            let (src, dst) = ([h[12], h[13], h[14], h[15]], [h[16], h[17], h[18], h[19]]);
            let (local, remote) = if egress { (src, dst) } else { (dst, src) };
            key.local_addr[..4].copy_from_slice(&local);
            key.remote_addr[..4].copy_from_slice(&remote);
            key.family = AF_INET;
            // Only the first fragment carries the transport header.
            let l4 = if frag & 0x1fff == 0 { ihl } else { 0 };
            (l4, total as u64)
        }
        6 => {
            let h: [u8; 40] = ctx.load(0)?;
            let payload = u16::from_be_bytes([h[4], h[5]]);
            key.proto = h[6];
            let mut src = [0u8; 16];
            let mut dst = [0u8; 16];
            src.copy_from_slice(&h[8..24]);
            dst.copy_from_slice(&h[24..40]);
            let (local, remote) = if egress { (src, dst) } else { (dst, src) };
            key.local_addr = local;
            key.remote_addr = remote;
            key.family = AF_INET6;
            (40, payload as u64 + 40)
        }
        _ => return Ok(None),
    };
    let mut tcp_flags = 0u8;
    let mut syn_seq = None;
    if l4 != 0 && key.proto == IPPROTO_TCP {
        let t: [u8; 16] = ctx.load(l4)?;
        (key.local_port, key.remote_port) = ports(egress, [t[0], t[1], t[2], t[3]]);
        tcp_flags = t[13];
        if tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN {
            syn_seq = Some(u32::from_be_bytes([t[4], t[5], t[6], t[7]]));
        }
    } else if l4 != 0 && key.proto == IPPROTO_UDP {
        (key.local_port, key.remote_port) = ports(egress, ctx.load(l4)?);
    }
    Ok(Some(Packet {
        key,
        len,
        tcp_flags,
        syn_seq,
    }))
}

/// (local, remote) ports from the first four bytes of a TCP or UDP header.
#[inline(always)]
fn ports(egress: bool, h: [u8; 4]) -> (u16, u16) {
    let sport = u16::from_be_bytes([h[0], h[1]]);
    let dport = u16::from_be_bytes([h[2], h[3]]);
    if egress {
        (sport, dport)
    } else {
        (dport, sport)
    }
}

#[inline(always)]
fn add(c: *mut FlowCounters, egress: bool, pkt: &Packet, now: u64) {
    // SAFETY: `c` is this CPU's slot from a map lookup, valid for the program's run.
    unsafe {
        if egress {
            (*c).bytes_out += pkt.len;
            (*c).packets_out += 1;
            (*c).tcp_flags |= pkt.tcp_flags as u32;
        } else {
            (*c).bytes_in += pkt.len;
            (*c).packets_in += 1;
            (*c).tcp_flags |= (pkt.tcp_flags as u32) << 8;
        }
        if (*c).first_ns == 0 {
            (*c).first_ns = now;
        }
        (*c).last_ns = now;
    }
}

#[inline(always)]
fn account(ctx: &SkBuffContext, egress: bool) -> Result<(), i64> {
    let Some(pkt) = parse(ctx, egress)? else {
        return Ok(());
    };
    let now = now_ns();
    if let Some(c) = FLOWS.get_ptr_mut(&pkt.key) {
        if !reopened(&pkt) {
            add(c, egress, &pkt, now);
            return Ok(());
        }
        // A new connection on a 4-tuple the agent has not collected yet: start afresh.
        let _ = FLOWS.remove(&pkt.key);
        count(STAT_TCP_REUSE);
    }
    new_flow(ctx, egress, &pkt, now);
    Ok(())
}

/// Whether a pure SYN opens a new connection on a known 4-tuple (a different sequence
/// number than the SYN that opened the flow) rather than retransmitting the first one.
#[inline(always)]
fn reopened(pkt: &Packet) -> bool {
    let Some(seq) = pkt.syn_seq else { return false };
    // SAFETY: map values are plain data read at once.
    match unsafe { FLOW_SYN.get(&pkt.key) } {
        Some(first) => *first != seq,
        // The flow began mid-connection (before the agent): a SYN now is a new connection.
        None => true,
    }
}

/// The socket's owner, else the process listening on the local port (either family, for
/// dual-stack listeners).
#[inline(always)]
fn owner_of(cookie: u64, key: &FlowKey) -> (ProcIdentity, u32) {
    // SAFETY: map values are plain data copied out at once.
    if let Some(id) = unsafe { SOCK_OWNERS.get(&cookie) } {
        return (*id, OWNER_SOCKET);
    }
    for family in [
        key.family,
        if key.family == AF_INET {
            AF_INET6
        } else {
            AF_INET
        },
    ] {
        let lk = ListenKey {
            port: key.local_port,
            proto: key.proto,
            family,
        };
        // SAFETY: as above.
        if let Some(id) = unsafe { LISTENERS.get(&lk) } {
            return (*id, OWNER_LISTENER);
        }
    }
    (ProcIdentity::zeroed(), OWNER_NONE)
}

#[inline(always)]
fn origin_of(pkt: &Packet, egress: bool, owner: &ProcIdentity) -> u32 {
    let here = if egress { ORIGIN_LOCAL } else { ORIGIN_REMOTE };
    if pkt.key.proto != IPPROTO_TCP {
        return here;
    }
    let syn = pkt.tcp_flags & TCP_SYN != 0;
    let ack = pkt.tcp_flags & TCP_ACK != 0;
    if syn && !ack {
        here
    } else if syn {
        // A SYN-ACK: the other side opened the connection.
        if egress { ORIGIN_REMOTE } else { ORIGIN_LOCAL }
    } else if owner.flags & IDENT_CONNECTED != 0 {
        ORIGIN_LOCAL
    } else {
        // Mid-stream (the connection predates the agent): the agent decides from listeners.
        ORIGIN_UNKNOWN
    }
}

#[inline(always)]
fn new_flow(ctx: &SkBuffContext, egress: bool, pkt: &Packet, now: u64) {
    let Some(cfg) = config() else { return };
    // SAFETY: the helper takes the program's own context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.skb.skb.cast()) };
    let (owner, owner_source) = owner_of(cookie, &pkt.key);
    if owner.flags & IDENT_SELF != 0 {
        return;
    }
    let origin = origin_of(pkt, egress, &owner);
    let mut init = FlowCounters {
        cookie,
        origin,
        ..FlowCounters::default()
    };
    add(&mut init, egress, pkt, now);
    if FLOWS.insert(&pkt.key, &init, BPF_NOEXIST as u64).is_err() {
        // Another CPU created it first, or the map refused the entry.
        match FLOWS.get_ptr_mut(&pkt.key) {
            Some(c) => add(c, egress, pkt, now),
            None => count(DROP_FLOW_MAP),
        }
        return;
    }
    count(STAT_FLOWS_CREATED);
    if let Some(seq) = pkt.syn_seq {
        let _ = FLOW_SYN.insert(&pkt.key, &seq, BPF_ANY as u64);
    }
    let flags = wakeup_flags(cfg);
    let Some(mut entry) = EVENTS.reserve::<FlowEvent>(0) else {
        count(DROP_RINGBUF_FLOW);
        return;
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: `ev` points at reserved ring-buffer memory of the right size.
    unsafe {
        (*ev).kind = EVENT_FLOW;
        (*ev).origin = origin;
        (*ev).key = pkt.key;
        (*ev).ktime_ns = now;
        (*ev).cookie = cookie;
        (*ev).bytes = pkt.len as u32;
        (*ev).owner_source = owner_source;
        (*ev).owner = owner;
    }
    entry.submit(flags);
    count(STAT_FLOW_EVENTS);
}
