/// Settings the agent hands to its programs (the single entry of the `CONFIG` array).
///
/// Tracepoint field offsets come from the tracefs `format` files at load time, never from
/// constants compiled in.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProgConfig {
    /// The agent's own process id: its sockets and processes are not observed.
    pub self_tgid: u32,
    /// Level of the watched cgroup below the cgroup2 root (0: the root, no filtering).
    pub cgroup_level: u32,
    /// cgroup id of the watched cgroup; tracepoint events outside it are ignored.
    pub cgroup_id: u64,
    /// sched_process_exec: offset of the `__data_loc char[] filename` field.
    pub off_exec_filename: u32,
    /// sched_process_exec: offset of `old_pid`.
    pub off_exec_old_pid: u32,
    /// syscalls/sys_enter_execve: offset of `argv`.
    pub off_execve_argv: u32,
    /// sched_process_fork: offset of `child_pid`.
    pub off_fork_child_pid: u32,
    /// Ring-buffer bytes pending before a producer wakes the reader (batched wake-ups).
    pub wakeup_bytes: u64,
}
const _: () = assert!(core::mem::size_of::<ProgConfig>() == 40);

/// Indexes of the per-CPU `STATS` array: what the programs did and what they had to drop.
pub const STAT_FLOWS_CREATED: u32 = 0;
pub const STAT_FLOW_EVENTS: u32 = 1;
/// A new-flow event was lost because the ring buffer was full (the flow itself is still in
/// the flow map and is reported from there at the next poll).
pub const DROP_RINGBUF_FLOW: u32 = 2;
pub const DROP_RINGBUF_EXEC: u32 = 3;
pub const DROP_RINGBUF_EXIT: u32 = 4;
/// The flow map refused an insert (the flow is not counted at all).
pub const DROP_FLOW_MAP: u32 = 5;
/// The socket-owner map refused an insert.
pub const DROP_OWNER_MAP: u32 = 6;
/// A packet could not be parsed (truncated or unknown header).
pub const DROP_PARSE: u32 = 7;
/// A TCP SYN with a new sequence number arrived for a 4-tuple still in the flow map (the
/// port was reused before the old flow was collected): the old entry was replaced, and
/// whatever it counted since the agent's last poll is lost.
pub const STAT_TCP_REUSE: u32 = 8;
pub const STATS_LEN: u32 = 9;

/// Names of the `STATS` slots, for logs and metrics.
pub const STAT_NAMES: [&str; STATS_LEN as usize] = [
    "flows_created",
    "flow_events",
    "ringbuf_full_flow",
    "ringbuf_full_exec",
    "ringbuf_full_exit",
    "flow_map_full",
    "owner_map_full",
    "parse_error",
    "tcp_tuple_reused",
];
