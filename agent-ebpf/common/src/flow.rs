/// Who sent the first packet of a flow, as the kernel program saw it.
pub const ORIGIN_UNKNOWN: u32 = 0;
/// This host sent the first packet (a SYN, or the first datagram).
pub const ORIGIN_LOCAL: u32 = 1;
/// The peer sent the first packet.
pub const ORIGIN_REMOTE: u32 = 2;

/// Where a new flow's owner came from.
pub const OWNER_NONE: u32 = 0;
/// The socket's own identity (sock_create / connect / sendmsg / post_bind).
pub const OWNER_SOCKET: u32 = 1;
/// No identity for the socket (accepted, or older than the agent): the listener of the port.
pub const OWNER_LISTENER: u32 = 2;

/// A flow as the kernel sees it: addresses from this host's point of view.
///
/// IPv4 addresses are stored in the first four bytes of the 16-byte fields, the rest zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub local_addr: [u8; 16],
    pub remote_addr: [u8; 16],
    /// Host byte order; 0 for protocols without ports.
    pub local_port: u16,
    pub remote_port: u16,
    pub family: u8,
    pub proto: u8,
    pub _pad: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<FlowKey>() == 40);

impl FlowKey {
    pub const fn zeroed() -> Self {
        Self {
            local_addr: [0; 16],
            remote_addr: [0; 16],
            local_port: 0,
            remote_port: 0,
            family: 0,
            proto: 0,
            _pad: [0; 2],
        }
    }
}

/// Per-CPU counters of one flow (the user side sums the CPUs).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowCounters {
    /// IP-layer bytes and packets sent by this host.
    pub bytes_out: u64,
    pub packets_out: u64,
    /// IP-layer bytes and packets received by this host.
    pub bytes_in: u64,
    pub packets_in: u64,
    /// CLOCK_BOOTTIME ns of the first and the latest packet on this CPU (0: none).
    pub first_ns: u64,
    pub last_ns: u64,
    /// Socket cookie of the socket that created the flow (only on the creating CPU).
    pub cookie: u64,
    /// TCP flags seen: bits 0-7 on packets out, bits 8-15 on packets in.
    pub tcp_flags: u32,
    /// `ORIGIN_*`, set on the creating CPU.
    pub origin: u32,
}
const _: () = assert!(core::mem::size_of::<FlowCounters>() == 64);

/// TCP header flag bits, as in the header's 13th byte.
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;
