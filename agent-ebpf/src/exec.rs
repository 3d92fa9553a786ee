//! Process lifecycle: fork (parent), execve entry (arguments), exec (image), exit.
//!
//! Field offsets inside the tracepoint records come from the tracefs `format` files, read by
//! the agent at load time and passed in `CONFIG`; nothing here assumes a kernel layout.
use aya_ebpf::{
    EbpfContext,
    bindings::BPF_ANY,
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        bpf_probe_read_kernel_buf, bpf_probe_read_kernel_str_bytes, bpf_probe_read_user,
        bpf_probe_read_user_str_bytes, generated::bpf_get_current_cgroup_id,
    },
    macros::tracepoint,
    programs::TracePointContext,
};
use cordon_abi::{
    DROP_RINGBUF_EXEC, DROP_RINGBUF_EXIT, EVENT_EXEC, EVENT_EXIT, EXEC_ARGS_MAX, ExecArgs,
    ExecEvent, ExitEvent,
};

use crate::{
    maps::{EVENTS, PARENTS, PENDING_EXEC, SCRATCH},
    scope::{config, count, current_in_scope, now_ns, wakeup_flags},
};

#[tracepoint(category = "sched", name = "sched_process_fork")]
pub fn process_fork(ctx: TracePointContext) -> u32 {
    let Some(cfg) = config() else { return 0 };
    // Not filtered by scope: a process is often forked outside the watched cgroup and
    // moved into it before it execs, and its parent is still wanted then.
    let parent = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: offset read from this tracepoint's format file.
    if let Ok(child) = unsafe { ctx.read_at::<u32>(cfg.off_fork_child_pid as usize) } {
        let _ = PARENTS.insert(&child, &parent, BPF_ANY as u64);
    }
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_execve")]
pub fn execve_enter(ctx: TracePointContext) -> u32 {
    let Some(cfg) = config() else { return 0 };
    if !current_in_scope(cfg) {
        return 0;
    }
    let tid = bpf_get_current_pid_tgid() as u32;
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: offset read from this tracepoint's format file; user pointers are only read
    // through the probe-read helpers, which fail cleanly on bad addresses.
    unsafe {
        let Ok(argv) = ctx.read_at::<u64>(cfg.off_execve_argv as usize) else {
            return 0;
        };
        (*scratch).argc = 0;
        (*scratch).truncated = 0;
        for i in 0..EXEC_ARGS_MAX {
            let Ok(arg) = bpf_probe_read_user((argv as *const u64).add(i)) else {
                break;
            };
            if arg == 0 {
                break;
            }
            let slot = &mut (*scratch).args[i];
            if bpf_probe_read_user_str_bytes(arg as *const u8, slot).is_err() {
                slot[0] = 0;
            }
            (*scratch).argc = i as u32 + 1;
        }
        if (*scratch).argc == EXEC_ARGS_MAX as u32
            && let Ok(more) = bpf_probe_read_user((argv as *const u64).add(EXEC_ARGS_MAX))
            && more != 0
        {
            (*scratch).truncated = 1;
        }
        let _ = PENDING_EXEC.insert(&tid, &*scratch, BPF_ANY as u64);
    }
    0
}

#[tracepoint(category = "sched", name = "sched_process_exec")]
pub fn process_exec(ctx: TracePointContext) -> u32 {
    let Some(cfg) = config() else { return 0 };
    if !current_in_scope(cfg) {
        return 0;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if tgid == cfg.self_tgid {
        return 0;
    }
    let flags = wakeup_flags(cfg);
    let Some(mut entry) = EVENTS.reserve::<ExecEvent>(0) else {
        count(DROP_RINGBUF_EXEC);
        return 0;
    };
    let ev = entry.as_mut_ptr();
    let uid_gid = bpf_get_current_uid_gid();
    // SAFETY: `ev` points at reserved ring-buffer memory of the right size; tracepoint
    // fields are read at offsets from the format file, through helpers.
    unsafe {
        (*ev).kind = EVENT_EXEC;
        (*ev).tgid = tgid;
        (*ev).pid = pid_tgid as u32;
        (*ev).ppid = PARENTS.get(&tgid).copied().unwrap_or(0);
        (*ev).uid = uid_gid as u32;
        (*ev).gid = (uid_gid >> 32) as u32;
        (*ev).cgroup_id = bpf_get_current_cgroup_id();
        (*ev).ktime_ns = now_ns();
        (*ev).comm = bpf_get_current_comm().unwrap_or([0; 16]);
        (*ev).filename[0] = 0;
        if let Ok(loc) = ctx.read_at::<u32>(cfg.off_exec_filename as usize) {
            let src = (ctx.as_ptr() as *const u8).add((loc & 0xffff) as usize);
            if bpf_probe_read_kernel_str_bytes(src, &mut (*ev).filename).is_err() {
                (*ev).filename[0] = 0;
            }
        }
        (*ev).args.argc = 0;
        (*ev).args.truncated = 0;
        let old_pid = ctx
            .read_at::<u32>(cfg.off_exec_old_pid as usize)
            .unwrap_or(pid_tgid as u32);
        if let Some(pending) = PENDING_EXEC.get_ptr(&old_pid) {
            let dst = core::slice::from_raw_parts_mut(
                (&raw mut (*ev).args).cast::<u8>(),
                core::mem::size_of::<ExecArgs>(),
            );
            if bpf_probe_read_kernel_buf(pending.cast::<u8>(), dst).is_err() {
                (*ev).args.argc = 0;
            }
            let _ = PENDING_EXEC.remove(&old_pid);
        }
    }
    entry.submit(flags);
    0
}

#[tracepoint(category = "sched", name = "sched_process_exit")]
pub fn process_exit(_ctx: TracePointContext) -> u32 {
    let Some(cfg) = config() else { return 0 };
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    // Only the thread-group leader's exit ends the process for our purposes.
    if tgid != pid_tgid as u32 || tgid == cfg.self_tgid || !current_in_scope(cfg) {
        return 0;
    }
    let flags = wakeup_flags(cfg);
    let Some(mut entry) = EVENTS.reserve::<ExitEvent>(0) else {
        count(DROP_RINGBUF_EXIT);
        return 0;
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: `ev` points at reserved ring-buffer memory of the right size.
    unsafe {
        (*ev).kind = EVENT_EXIT;
        (*ev).tgid = tgid;
        (*ev).cgroup_id = bpf_get_current_cgroup_id();
        (*ev).ktime_ns = now_ns();
    }
    entry.submit(flags);
    0
}
