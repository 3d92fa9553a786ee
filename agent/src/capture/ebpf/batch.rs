//! Reading the per-CPU flow map in batches (`BPF_MAP_LOOKUP_BATCH`, Linux 5.6+): one system
//! call per thousand flows instead of two per flow, which is what the poll costs most at
//! tens of thousands of flows a second. aya 0.14 does not wrap the batch commands, so this
//! calls bpf(2) with the UAPI `bpf_attr` layout directly, and falls back to aya's per-key
//! iteration when the kernel refuses the command.
use std::{
    io,
    os::fd::{AsFd, AsRawFd},
};

use aya::maps::{Map, MapData, PerCpuHashMap};
use cordon_abi::{FlowCounters, FlowKey};

use super::convert::{self, Summed};

const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;
/// Flows read per call.
const BATCH: usize = 1024;

/// `bpf_attr` for the `BPF_MAP_*_BATCH` commands (include/uapi/linux/bpf.h).
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// `bpf_attr` for the `BPF_MAP_*_ELEM` commands.
#[repr(C)]
#[derive(Default)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<()> {
    // SAFETY: `attr` is a valid, initialised bpf_attr variant of the right size for `cmd`;
    // every pointer in it refers to buffers that outlive the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            (attr as *mut T).cast::<libc::c_void>(),
            size_of::<T>(),
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

pub struct FlowMap {
    map: PerCpuHashMap<MapData, FlowKey, FlowCounters>,
    fd: u32,
    cpus: usize,
    keys: Vec<FlowKey>,
    values: Vec<FlowCounters>,
    batch_ok: bool,
}

impl FlowMap {
    pub fn new(map: Map) -> anyhow::Result<Self> {
        // The raw fd is only used for calls while `map`, which owns it, is alive.
        let fd = map_fd(&map).ok_or_else(|| anyhow::anyhow!("map FLOWS is not a hash map"))?;
        let map: PerCpuHashMap<MapData, FlowKey, FlowCounters> = map.try_into()?;
        let cpus = aya::util::nr_cpus().map_err(|(what, e)| anyhow::anyhow!("{what}: {e}"))?;
        Ok(Self {
            map,
            fd,
            cpus,
            keys: vec![FlowKey::zeroed(); BATCH],
            values: vec![FlowCounters::default(); BATCH * cpus],
            batch_ok: true,
        })
    }

    /// Every flow in the map with its counters summed over CPUs.
    pub fn read_all(&mut self, out: &mut Vec<(FlowKey, Summed)>) {
        out.clear();
        if self.batch_ok {
            match self.read_batched(out) {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "batched map reads unavailable; reading flow by flow");
                    self.batch_ok = false;
                    out.clear();
                }
            }
        }
        out.extend(
            self.map
                .iter()
                .filter_map(Result::ok)
                .map(|(k, v)| (k, convert::sum(v.iter()))),
        );
    }

    fn read_batched(&mut self, out: &mut Vec<(FlowKey, Summed)>) -> io::Result<()> {
        let (mut token_in, mut token_out) = (0u64, 0u64);
        let mut first = true;
        loop {
            let mut attr = BatchAttr {
                in_batch: if first { 0 } else { (&raw mut token_in) as u64 },
                out_batch: (&raw mut token_out) as u64,
                keys: self.keys.as_mut_ptr() as u64,
                values: self.values.as_mut_ptr() as u64,
                count: BATCH as u32,
                map_fd: self.fd,
                ..BatchAttr::default()
            };
            let res = bpf(BPF_MAP_LOOKUP_BATCH, &mut attr);
            let n = (attr.count as usize).min(BATCH);
            for i in 0..n {
                let per_cpu = &self.values[i * self.cpus..(i + 1) * self.cpus];
                out.push((self.keys[i], convert::sum(per_cpu)));
            }
            match res {
                Ok(()) => {}
                // ENOENT: the last batch has been read.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
                Err(e) => return Err(e),
            }
            token_in = token_out;
            first = false;
        }
    }

    /// Deletes flows (some may already be gone).
    pub fn remove_all(&self, keys: &[FlowKey]) {
        delete_all(self.fd, keys);
    }
}

/// The raw fd of a map, for the calls here; the map must outlive its use.
pub fn map_fd(map: &Map) -> Option<u32> {
    match map {
        Map::PerCpuLruHashMap(d) | Map::PerCpuHashMap(d) | Map::LruHashMap(d) | Map::HashMap(d) => {
            Some(d.fd().as_fd().as_raw_fd() as u32)
        }
        _ => None,
    }
}

/// Deletes `keys` from a hash map with as few calls as it can: `BPF_MAP_DELETE_BATCH`
/// stops at the first key that is missing (evicted, or re-created and deleted by the
/// kernel), so that key is skipped and the rest goes on; kernels without the batch command
/// get one call per key.
pub fn delete_all(fd: u32, mut keys: &[FlowKey]) {
    while !keys.is_empty() {
        let n = keys.len().min(BATCH);
        let mut attr = BatchAttr {
            keys: keys.as_ptr() as u64,
            count: n as u32,
            map_fd: fd,
            ..BatchAttr::default()
        };
        match bpf(BPF_MAP_DELETE_BATCH, &mut attr) {
            Ok(()) => keys = &keys[n..],
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                // attr.count keys were deleted; the next one was missing.
                keys = &keys[(attr.count as usize + 1).min(keys.len())..];
            }
            Err(_) => {
                for key in keys {
                    let mut one = ElemAttr {
                        map_fd: fd,
                        key: (key as *const FlowKey) as u64,
                        ..ElemAttr::default()
                    };
                    let _ = bpf(BPF_MAP_DELETE_ELEM, &mut one);
                }
                return;
            }
        }
    }
}
