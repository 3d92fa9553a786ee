//! Layout shared by the isolation programs (`cordon-enforce-ebpf`) and the enforcer.

/// Most allow entries (management channel, allow-list, loopback and own addresses).
pub const MAX_ALLOW: u32 = 64;

/// Settings of the isolation programs (entry 0 of `ENF_CONFIG`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EnforceConfig {
    /// 1 while isolated; 0 lets everything through.
    pub isolated: u32,
    /// Entries of `ALLOW` in use (the first `n_allow`).
    pub n_allow: u32,
}
const _: () = assert!(core::mem::size_of::<EnforceConfig>() == 8);

/// One thing isolation lets through. Addresses and masks are the address bytes read as
/// native-endian u32 words (IPv4 in word 0), so the programs compare words.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllowEntry {
    pub addr: [u32; 4],
    pub mask: [u32; 4],
    /// `AF_INET` or `AF_INET6`.
    pub family: u8,
    /// IP protocol, 0 for any.
    pub proto: u8,
    /// Remote port (host order), 0 for any: packets to it and from it, connects to it.
    pub port: u16,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<AllowEntry>() == 40);

/// What isolation refused of one flow (key: `FlowKey` from this host's side; a refused
/// connect()/sendmsg() has no local address yet).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RefusedCounters {
    pub packets: u64,
    pub bytes: u64,
    /// connect()/sendmsg() calls refused with EPERM.
    pub attempts: u64,
    /// Thread-group id of the last refused call (0 for packets).
    pub pid: u32,
    /// 1 when the refused traffic was leaving this host.
    pub outbound: u32,
    pub comm: [u8; crate::COMM_LEN],
}
const _: () = assert!(core::mem::size_of::<RefusedCounters>() == 48);
