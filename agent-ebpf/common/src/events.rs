use crate::{COMM_LEN, FlowKey, ProcIdentity};

/// `*Event::kind`: tells the ring-buffer reader which struct follows.
pub const EVENT_FLOW: u32 = 1;
pub const EVENT_EXEC: u32 = 2;
pub const EVENT_EXIT: u32 = 3;

/// One per new flow: the first packet of a 5-tuple this host had not seen.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FlowEvent {
    pub kind: u32,
    /// `ORIGIN_*`.
    pub origin: u32,
    pub key: FlowKey,
    /// CLOCK_BOOTTIME ns of the first packet.
    pub ktime_ns: u64,
    pub cookie: u64,
    /// IP-layer bytes of the first packet.
    pub bytes: u32,
    /// `OWNER_*`: where `owner` came from.
    pub owner_source: u32,
    pub owner: ProcIdentity,
}
const _: () = assert!(core::mem::size_of::<FlowEvent>() == 128);

/// Arguments kept for an exec: fixed slots so the verifier can bound every access.
pub const EXEC_ARGS_MAX: usize = 8;
pub const EXEC_ARG_LEN: usize = 128;
pub const EXEC_FILENAME_LEN: usize = 256;

/// Arguments of an execve() in flight, captured at syscall entry.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExecArgs {
    /// Number of argument slots filled.
    pub argc: u32,
    /// Non-zero when there were more arguments than slots.
    pub truncated: u32,
    pub args: [[u8; EXEC_ARG_LEN]; EXEC_ARGS_MAX],
}
const _: () = assert!(core::mem::size_of::<ExecArgs>() == 8 + EXEC_ARG_LEN * EXEC_ARGS_MAX);

/// A process image was replaced (sched_process_exec).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExecEvent {
    pub kind: u32,
    pub tgid: u32,
    pub pid: u32,
    /// Parent's process id as recorded at fork (0 when the fork predates the agent).
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub cgroup_id: u64,
    pub ktime_ns: u64,
    pub comm: [u8; COMM_LEN],
    pub filename: [u8; EXEC_FILENAME_LEN],
    pub args: ExecArgs,
}
const _: () =
    assert!(core::mem::size_of::<ExecEvent>() == 40 + COMM_LEN + EXEC_FILENAME_LEN + 8 + 1024);

/// A thread-group leader exited (sched_process_exit).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExitEvent {
    pub kind: u32,
    pub tgid: u32,
    pub cgroup_id: u64,
    pub ktime_ns: u64,
}
const _: () = assert!(core::mem::size_of::<ExitEvent>() == 24);
