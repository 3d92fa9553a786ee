use crate::COMM_LEN;

/// `ProcIdentity::flags`: the identity belongs to the agent itself; its flows are ignored.
pub const IDENT_SELF: u32 = 1;
/// `ProcIdentity::flags`: the socket called connect() (it initiated a TCP connection).
pub const IDENT_CONNECTED: u32 = 1 << 1;
/// `ProcIdentity::flags`: the socket sent a datagram with sendmsg().
pub const IDENT_SENT: u32 = 1 << 2;
/// `ProcIdentity::flags`: the socket was bound to a port (post_bind).
pub const IDENT_BOUND: u32 = 1 << 3;

/// Who owns a socket, taken in process context (sock_create, connect, sendmsg, post_bind).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcIdentity {
    /// Process id (thread-group id).
    pub tgid: u32,
    /// Thread id of the task that acted on the socket.
    pub pid: u32,
    pub uid: u32,
    pub gid: u32,
    /// cgroup v2 id of the task (the inode number of its cgroup directory).
    pub cgroup_id: u64,
    /// CLOCK_BOOTTIME time the identity was recorded, in ns.
    pub ktime_ns: u64,
    pub comm: [u8; COMM_LEN],
    /// `IDENT_*` bits.
    pub flags: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<ProcIdentity>() == 56);

impl ProcIdentity {
    pub const fn zeroed() -> Self {
        Self {
            tgid: 0,
            pid: 0,
            uid: 0,
            gid: 0,
            cgroup_id: 0,
            ktime_ns: 0,
            comm: [0; COMM_LEN],
            flags: 0,
            _pad: 0,
        }
    }
}

/// Key of the listener map: which process bound a local port.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ListenKey {
    /// Local port, host byte order.
    pub port: u16,
    pub proto: u8,
    pub family: u8,
}
const _: () = assert!(core::mem::size_of::<ListenKey>() == 4);
