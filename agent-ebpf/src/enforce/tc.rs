//! Every other packet, in and out of every interface (TCX), dropped while isolated: this
//! catches what never passes a local connect — incoming connections, ICMP answered by the
//! kernel, sockets opened before the isolation, forwarded traffic.
use aya_ebpf::{
    bindings::{TC_ACT_SHOT, bpf_hdr_start_off::BPF_HDR_START_NET},
    helpers::generated::bpf_skb_load_bytes_relative,
    macros::classifier,
    programs::TcContext,
};
use cordon_abi::{AF_INET, AF_INET6, FlowKey, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};

use crate::rules::{Remote, allowed, isolation, record};

/// TCX: go on to the next program (and the stack).
const NEXT: i32 = -1;
/// TC_ACT_SHOT (TCX_DROP).
const DROP: i32 = TC_ACT_SHOT;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;

#[classifier]
pub fn enf_tc_ingress(ctx: TcContext) -> i32 {
    filter(&ctx, false)
}

#[classifier]
pub fn enf_tc_egress(ctx: TcContext) -> i32 {
    filter(&ctx, true)
}

/// Bytes at `off` from the start of the network header (works on Ethernet and on
/// interfaces without a link-layer header alike).
#[inline(always)]
fn load<const N: usize>(ctx: &TcContext, off: u32) -> Result<[u8; N], ()> {
    let mut buf = [0u8; N];
    // SAFETY: the helper writes at most N bytes into `buf` and reads the program's own skb.
    let rc = unsafe {
        bpf_skb_load_bytes_relative(
            ctx.skb.skb.cast(),
            off,
            buf.as_mut_ptr().cast(),
            N as u32,
            BPF_HDR_START_NET,
        )
    };
    if rc == 0 { Ok(buf) } else { Err(()) }
}

#[inline(always)]
fn filter(ctx: &TcContext, egress: bool) -> i32 {
    let Some(n) = isolation() else { return NEXT };
    // SAFETY: reading a field of the program's own context.
    let ethertype = u16::from_be(unsafe { (*ctx.skb.skb).protocol } as u16);
    let family = match ethertype {
        ETH_P_IP => AF_INET,
        ETH_P_IPV6 => AF_INET6,
        // ARP and other link-level traffic: not IP, not ours to cut.
        _ => return NEXT,
    };
    match decide(ctx, n, family, egress) {
        Ok(true) => NEXT,
        // Refused, or IP we cannot parse while isolated: fail closed.
        Ok(false) | Err(()) => DROP,
    }
}

#[inline(always)]
fn decide(ctx: &TcContext, n: u32, family: u8, egress: bool) -> Result<bool, ()> {
    let mut key = FlowKey {
        local_addr: [0; 16],
        remote_addr: [0; 16],
        local_port: 0,
        remote_port: 0,
        family,
        proto: 0,
        _pad: [0; 2],
    };
    let (l4, len) = if family == AF_INET {
        let h: [u8; 20] = load(ctx, 0)?;
        let ihl = ((h[0] & 0x0f) as u32) * 4;
        key.proto = h[9];
        let (src, dst) = ([h[12], h[13], h[14], h[15]], [h[16], h[17], h[18], h[19]]);
        let (local, remote) = if egress { (src, dst) } else { (dst, src) };
        key.local_addr[..4].copy_from_slice(&local);
        key.remote_addr[..4].copy_from_slice(&remote);
        let frag = u16::from_be_bytes([h[6], h[7]]) & 0x1fff;
        (
            if frag == 0 { ihl } else { 0 },
            u16::from_be_bytes([h[2], h[3]]) as u64,
        )
    } else {
        let h: [u8; 40] = load(ctx, 0)?;
        key.proto = h[6];
        let (mut src, mut dst) = ([0u8; 16], [0u8; 16]);
        src.copy_from_slice(&h[8..24]);
        dst.copy_from_slice(&h[24..40]);
        let (local, remote) = if egress { (src, dst) } else { (dst, src) };
        key.local_addr = local;
        key.remote_addr = remote;
        (40, u16::from_be_bytes([h[4], h[5]]) as u64 + 40)
    };
    if l4 != 0 && (key.proto == IPPROTO_TCP || key.proto == IPPROTO_UDP) {
        let p: [u8; 4] = load(ctx, l4)?;
        let (sport, dport) = (
            u16::from_be_bytes([p[0], p[1]]),
            u16::from_be_bytes([p[2], p[3]]),
        );
        (key.local_port, key.remote_port) = if egress {
            (sport, dport)
        } else {
            (dport, sport)
        };
    }
    if key.proto == IPPROTO_ICMPV6 && l4 != 0 {
        // Neighbour discovery and router messages (133-137) keep the link usable.
        let t: [u8; 1] = load(ctx, l4)?;
        if (133..=137).contains(&t[0]) {
            return Ok(true);
        }
    }
    let mut addr = [0u32; 4];
    for (w, a) in addr.iter_mut().enumerate() {
        let b = &key.remote_addr[w * 4..w * 4 + 4];
        *a = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
    }
    let r = Remote {
        family,
        proto: key.proto,
        addr,
        port: key.remote_port,
    };
    if allowed(n, &r) {
        return Ok(true);
    }
    record(&key, egress, len.max(1));
    Ok(false)
}
