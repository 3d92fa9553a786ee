//! The decision: is this remote end (address, protocol, port) allowed while isolated?
use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid},
};
use cordon_abi::{AF_INET, AllowEntry, FlowKey, MAX_ALLOW, RefusedCounters};

use crate::maps::{ALLOW, ENF_CONFIG, REFUSED};

/// The remote end of a packet or a connect, as the allow entries see it.
pub struct Remote {
    pub family: u8,
    pub proto: u8,
    /// Address bytes as native-endian words (IPv4 in word 0, the rest zero).
    pub addr: [u32; 4],
    pub port: u16,
}

/// How many allow entries are in use, or `None` when not isolated.
#[inline(always)]
pub fn isolation() -> Option<u32> {
    let c = ENF_CONFIG.get(0)?;
    (c.isolated != 0).then_some(c.n_allow)
}

#[inline(always)]
fn matches(e: &AllowEntry, r: &Remote) -> bool {
    if e.family != r.family || (e.proto != 0 && e.proto != r.proto) {
        return false;
    }
    if e.port != 0 && e.port != r.port {
        return false;
    }
    let words = if r.family == AF_INET { 1 } else { 4 };
    for w in 0..4 {
        if w >= words {
            break;
        }
        if r.addr[w] & e.mask[w] != e.addr[w] {
            return false;
        }
    }
    true
}

/// Whether one of the first `n` allow entries lets `r` through.
#[inline(always)]
pub fn allowed(n: u32, r: &Remote) -> bool {
    for i in 0..MAX_ALLOW {
        if i >= n {
            break;
        }
        let Some(e) = ALLOW.get(i) else { break };
        if matches(e, r) {
            return true;
        }
    }
    false
}

/// Counts a refused packet (`len` > 0) or a refused socket call (`len` == 0, with the
/// calling process) for the flow `key`.
#[inline(always)]
pub fn record(key: &FlowKey, outbound: bool, len: u64) {
    let call = len == 0;
    if let Some(c) = REFUSED.get_ptr_mut(key) {
        // SAFETY: pointer from the map lookup, valid for this program run. Concurrent
        // updates on other CPUs may lose an increment; the counts are a report, not a bill.
        unsafe {
            if call {
                (*c).attempts += 1;
            } else {
                (*c).packets += 1;
                (*c).bytes += len;
            }
        }
        return;
    }
    let mut v = RefusedCounters {
        packets: 0,
        bytes: 0,
        attempts: 0,
        pid: 0,
        outbound: outbound as u32,
        comm: [0; 16],
    };
    if call {
        v.attempts = 1;
        v.pid = (bpf_get_current_pid_tgid() >> 32) as u32;
        if let Ok(comm) = bpf_get_current_comm() {
            v.comm = comm;
        }
    } else {
        v.packets = 1;
        v.bytes = len;
    }
    let _ = REFUSED.insert(key, &v, BPF_NOEXIST as u64);
}
