//! Small helpers shared by the programs: configuration, counters, identity, scope.
use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        generated::{
            bpf_get_current_ancestor_cgroup_id, bpf_get_current_cgroup_id, bpf_ktime_get_boot_ns,
        },
    },
};
use cordon_abi::{IDENT_SELF, ProcIdentity, ProgConfig};

use crate::maps::{CONFIG, EVENTS, STATS};

#[inline(always)]
pub fn config() -> Option<&'static ProgConfig> {
    CONFIG.get(0)
}

/// Adds one to a `STATS` slot (per-CPU, so a plain add is race-free).
#[inline(always)]
pub fn count(index: u32) {
    if let Some(slot) = STATS.get_ptr_mut(index) {
        // SAFETY: the pointer comes from the map lookup and is valid for this CPU.
        unsafe { *slot += 1 };
    }
}

/// CLOCK_BOOTTIME in ns: the clock /proc's process start times use, so the agent can tell
/// a recycled pid from the process that used a socket.
#[inline(always)]
pub fn now_ns() -> u64 {
    // SAFETY: helper without arguments.
    unsafe { bpf_ktime_get_boot_ns() }
}

/// The current task's identity, marked `IDENT_SELF` when it is the agent.
#[inline(always)]
pub fn current_identity(cfg: &ProgConfig, flags: u32) -> ProcIdentity {
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    let tgid = (pid_tgid >> 32) as u32;
    let mut id = ProcIdentity::zeroed();
    id.tgid = tgid;
    id.pid = pid_tgid as u32;
    id.uid = uid_gid as u32;
    id.gid = (uid_gid >> 32) as u32;
    // SAFETY: helpers without pointer arguments.
    id.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    id.ktime_ns = now_ns();
    id.comm = bpf_get_current_comm().unwrap_or([0; 16]);
    id.flags = flags;
    if tgid == cfg.self_tgid {
        id.flags |= IDENT_SELF;
    }
    id
}

/// Whether the current task is inside the watched cgroup (tracepoints are global).
#[inline(always)]
pub fn current_in_scope(cfg: &ProgConfig) -> bool {
    if cfg.cgroup_level == 0 {
        return true;
    }
    // SAFETY: helper taking a plain integer.
    let ancestor = unsafe { bpf_get_current_ancestor_cgroup_id(cfg.cgroup_level as i32) };
    ancestor == cfg.cgroup_id
}

/// Ring-buffer submit flags: wake the reader only once enough is pending (batched
/// wake-ups); the agent also drains on a short timer, so nothing waits long.
#[inline(always)]
pub fn wakeup_flags(cfg: &ProgConfig) -> u64 {
    if EVENTS.query(BPF_RB_AVAIL_DATA as u64) >= cfg.wakeup_bytes {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}
