//! Every map the programs share with the agent. Sizes here are defaults; the agent may
//! resize them at load time from its configuration.
use aya_ebpf::{
    macros::map,
    maps::{Array, LruHashMap, LruPerCpuHashMap, PerCpuArray, RingBuf},
};
use cordon_abi::{ExecArgs, FlowCounters, FlowKey, ListenKey, ProcIdentity, ProgConfig, STATS_LEN};

/// Settings from the agent (entry 0).
#[map]
pub static CONFIG: Array<ProgConfig> = Array::with_max_entries(1, 0);

/// Counters of work done and drops, by `STAT_*` / `DROP_*` index.
#[map]
pub static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STATS_LEN, 0);

/// Per-flow counters, per CPU; the agent sums them, exports and deletes closed flows.
#[map]
pub static FLOWS: LruPerCpuHashMap<FlowKey, FlowCounters> =
    LruPerCpuHashMap::with_max_entries(65536, 0);

/// Flow → sequence number of the SYN that opened it: tells a SYN retransmission from a new
/// connection on a reused 4-tuple.
#[map]
pub static FLOW_SYN: LruHashMap<FlowKey, u32> = LruHashMap::with_max_entries(65536, 0);

/// Socket cookie → the process that owns the socket.
#[map]
pub static SOCK_OWNERS: LruHashMap<u64, ProcIdentity> = LruHashMap::with_max_entries(65536, 0);

/// Bound local port → the process that bound it (attributes accepted sockets).
#[map]
pub static LISTENERS: LruHashMap<ListenKey, ProcIdentity> = LruHashMap::with_max_entries(8192, 0);

/// Child process id → parent's process id, recorded at fork.
#[map]
pub static PARENTS: LruHashMap<u32, u32> = LruHashMap::with_max_entries(16384, 0);

/// Thread id → argv of an execve() in flight.
#[map]
pub static PENDING_EXEC: LruHashMap<u32, ExecArgs> = LruHashMap::with_max_entries(1024, 0);

/// Scratch space to build an `ExecArgs` (too large for the 512-byte stack).
#[map]
pub static SCRATCH: PerCpuArray<ExecArgs> = PerCpuArray::with_max_entries(1, 0);

/// New-flow, exec and exit events to the agent.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(4 * 1024 * 1024, 0);
