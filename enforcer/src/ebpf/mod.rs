//! eBPF backend: the isolation programs (`cordon-enforce-ebpf`, embedded in the agent)
//! attached to the host's cgroup (connect4/6, sendmsg4/6: EPERM at once) and to every
//! interface with TCX (ingress and egress: drop the rest).
//!
//! Maps and links are pinned in a *generation* directory under the pin directory
//! (`/sys/fs/bpf/cordon` by default), so isolation outlives the agent. A change of the
//! allow-list updates the maps in place; a missing piece (a new interface, a removed pin)
//! makes a new generation, attached before the old one is removed, so there is no moment
//! without isolation. Clearing sets `isolated = 0` in every generation, then removes them.
mod entries;
mod pins;

use std::fs::File;
use std::path::{Path, PathBuf};

use aya::maps::{Array, HashMap, Map, MapData};
use aya::programs::links::{FdLink, LinkOrder};
use aya::programs::tc::TcAttachOptions;
use aya::programs::{CgroupAttachMode, CgroupSockAddr, SchedClassifier, TcAttachType};
use aya::{Ebpf, EbpfLoader};
use cordon_abi::{AllowEntry, EnforceConfig, FlowKey, MAX_ALLOW, RefusedCounters};

use crate::backend::Backend;
use crate::error::EnforcerError;
use crate::model::{Exceptions, Isolation};
use crate::refused::Refused;

pub use pins::DEFAULT_PIN_DIR;

const SOCK_PROGRAMS: [&str; 4] = [
    "enf_connect4",
    "enf_connect6",
    "enf_sendmsg4",
    "enf_sendmsg6",
];
const TC_PROGRAMS: [(&str, TcAttachType, &str); 2] = [
    ("enf_tc_ingress", TcAttachType::Ingress, "in"),
    ("enf_tc_egress", TcAttachType::Egress, "out"),
];
const MAPS: [&str; 3] = ["ENF_CONFIG", "ALLOW", "REFUSED"];

fn err(detail: impl std::fmt::Display) -> EnforcerError {
    EnforcerError::Ebpf(detail.to_string())
}

/// An error with its whole chain of causes (aya keeps the errno in the source).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s += &format!(": {c}");
        cur = c.source();
    }
    s
}

/// The eBPF isolation backend.
pub struct EbpfBackend {
    /// The programs' object; `None` in tools that may only inspect and clear (break-glass).
    object: Option<&'static [u8]>,
    pin_dir: PathBuf,
    cgroup: PathBuf,
}

impl EbpfBackend {
    /// `object`: the compiled isolation programs; `cgroup`: the cgroup v2 directory whose
    /// processes are isolated (the root cgroup for the whole host).
    pub fn new(object: Option<&'static [u8]>, pin_dir: PathBuf, cgroup: PathBuf) -> Self {
        EbpfBackend {
            object,
            pin_dir,
            cgroup,
        }
    }

    /// Whether the pin directory is on a BPF file system (so pins can be made there),
    /// mounting bpffs on /sys/fs/bpf when the directory is under it and none is there.
    pub fn check_pin_dir(&self) -> Result<(), EnforcerError> {
        pins::ensure_bpffs(&self.pin_dir)
    }

    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// Whether anything of this backend is pinned (an isolation may be in force).
    pub fn has_pins(&self) -> bool {
        pins::generations(&self.pin_dir).is_ok_and(|g| !g.is_empty())
    }

    /// Loads the programs, attaches them to the cgroup and every interface, pins all of
    /// it in a new generation directory and returns that directory.
    fn new_generation(&self) -> Result<PathBuf, EnforcerError> {
        let object = self.object.ok_or_else(|| {
            err("this program carries no eBPF isolation programs (only the agent can isolate with the ebpf backend)")
        })?;
        let dir = pins::create_generation(&self.pin_dir)?;
        let res = self.attach_into(object, &dir);
        if res.is_err() {
            let _ = pins::remove_generation(&dir);
        }
        res.map(|()| dir)
    }

    fn attach_into(&self, object: &'static [u8], dir: &Path) -> Result<(), EnforcerError> {
        let mut ebpf: Ebpf = EbpfLoader::new()
            .load(object)
            .map_err(|e| err(format!("loading the isolation programs: {}", chain(&e))))?;
        for name in MAPS {
            let map = ebpf
                .map(name)
                .ok_or_else(|| err(format!("map {name} missing from the object")))?;
            map.pin(dir.join(name))
                .map_err(|e| err(format!("pinning map {name}: {e}")))?;
        }
        let cgroup = File::open(&self.cgroup)
            .map_err(|e| err(format!("opening cgroup {}: {e}", self.cgroup.display())))?;
        for name in SOCK_PROGRAMS {
            let prog: &mut CgroupSockAddr = program(&mut ebpf, name)?;
            // Attached through a bpf link, which is always one of several programs on the
            // hook (next to the capture's); links take no mode flags.
            prog.load()
                .map_err(|e| err(format!("loading {name}: {}", chain(&e))))?;
            let id = prog
                .attach(&cgroup, CgroupAttachMode::Single)
                .map_err(|e| {
                    err(format!(
                        "attaching {name} to {}: {}",
                        self.cgroup.display(),
                        chain(&e)
                    ))
                })?;
            let link = FdLink::try_from(prog.take_link(id).map_err(err)?)
                .map_err(|e| err(format!("{name}: not a bpf link: {e}")))?;
            link.pin(dir.join(format!("link_{name}")))
                .map_err(|e| err(format!("pinning {name}: {e}")))?;
        }
        let ifaces = pins::interfaces()?;
        for (prog_name, kind, tag) in TC_PROGRAMS {
            let prog: &mut SchedClassifier = program(&mut ebpf, prog_name)?;
            prog.load()
                .map_err(|e| err(format!("loading {prog_name}: {}", chain(&e))))?;
            for iface in &ifaces {
                let id = prog
                    .attach_with_options(
                        iface,
                        kind,
                        TcAttachOptions::TcxOrder(LinkOrder::default()),
                    )
                    .map_err(|e| err(format!("attaching {prog_name} to {iface}: {}", chain(&e))))?;
                let link = FdLink::try_from(prog.take_link(id).map_err(err)?)
                    .map_err(|e| err(format!("{prog_name} on {iface}: not a bpf link: {e}")))?;
                link.pin(dir.join(pins::tc_pin_name(iface, tag)))
                    .map_err(|e| err(format!("pinning {prog_name} on {iface}: {e}")))?;
            }
        }
        // Every pin is made; the object's own descriptors close here and the pins keep
        // programs, links and maps alive.
        Ok(())
    }

    /// Whether `dir` holds every piece isolation needs now (including a TCX link on each
    /// current interface).
    fn complete(dir: &Path) -> Result<bool, EnforcerError> {
        let ifaces = pins::interfaces()?;
        let names = MAPS
            .iter()
            .map(|m| m.to_string())
            .chain(SOCK_PROGRAMS.iter().map(|p| format!("link_{p}")))
            .chain(ifaces.iter().flat_map(|i| {
                TC_PROGRAMS
                    .iter()
                    .map(move |(_, _, tag)| pins::tc_pin_name(i, tag))
            }));
        Ok(names.into_iter().all(|n| dir.join(n).exists()))
    }
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T, EnforcerError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or_else(|| err(format!("program {name} missing from the object")))?
        .try_into()
        .map_err(|e| err(format!("{name}: {e}")))
}

fn open_map(dir: &Path, name: &str) -> Result<Map, EnforcerError> {
    let data = MapData::from_pin(dir.join(name)).map_err(|e| {
        err(format!(
            "opening pinned map {}: {e}",
            dir.join(name).display()
        ))
    })?;
    Ok(match name {
        "REFUSED" => Map::LruHashMap(data),
        _ => Map::Array(data),
    })
}

fn read_config(dir: &Path) -> Result<EnforceConfig, EnforcerError> {
    let map = open_map(dir, "ENF_CONFIG")?;
    let a: Array<&MapData, EnforceConfig> = Array::try_from(&map).map_err(err)?;
    a.get(&0, 0).map_err(err)
}

fn write_config(dir: &Path, cfg: EnforceConfig) -> Result<(), EnforcerError> {
    let mut map = open_map(dir, "ENF_CONFIG")?;
    let mut a: Array<&mut MapData, EnforceConfig> = Array::try_from(&mut map).map_err(err)?;
    a.set(0, cfg, 0).map_err(err)
}

fn write_allow(dir: &Path, entries: &[AllowEntry]) -> Result<(), EnforcerError> {
    let mut map = open_map(dir, "ALLOW")?;
    let mut a: Array<&mut MapData, AllowEntry> = Array::try_from(&mut map).map_err(err)?;
    for (i, e) in entries.iter().enumerate() {
        a.set(i as u32, e, 0).map_err(err)?;
    }
    Ok(())
}

impl Backend for EbpfBackend {
    fn name(&self) -> &'static str {
        "ebpf"
    }

    fn apply(&mut self, _iso: &Isolation, exc: &Exceptions) -> Result<(), EnforcerError> {
        self.check_pin_dir()?;
        let entries = entries::allow_entries(exc, &pins::local_addresses()?);
        if entries.len() > MAX_ALLOW as usize {
            return Err(EnforcerError::Invalid {
                field: "allow",
                detail: format!(
                    "{} entries (management, allow-list, loopback and this host's addresses) exceed the eBPF backend's {MAX_ALLOW}",
                    entries.len()
                ),
            });
        }
        let gens = pins::generations(&self.pin_dir)?;
        let reuse = match gens.last() {
            Some(d) if Self::complete(d)? => Some(d.clone()),
            _ => None,
        };
        let dir = match reuse {
            Some(d) => d,
            None => self.new_generation()?,
        };
        // Entries first, then the switch: the programs never see a half-written list
        // longer than `n_allow`.
        write_allow(&dir, &entries)?;
        write_config(
            &dir,
            EnforceConfig {
                isolated: 1,
                n_allow: entries.len() as u32,
            },
        )?;
        for old in gens.iter().filter(|g| **g != dir) {
            pins::remove_generation(old)?;
        }
        Ok(())
    }

    fn clear(&mut self) -> Result<(), EnforcerError> {
        for dir in pins::generations(&self.pin_dir)? {
            // Open the gate first: anything still holding the links lets traffic pass.
            if let Err(e) = write_config(&dir, EnforceConfig::default()) {
                tracing::warn!(dir = %dir.display(), error = %e, "could not switch isolation off before unpinning");
            }
            pins::remove_generation(&dir)?;
        }
        Ok(())
    }

    fn in_force(&self) -> Result<bool, EnforcerError> {
        let gens = pins::generations(&self.pin_dir)?;
        let Some(dir) = gens.last() else {
            return Ok(false);
        };
        Ok(Self::complete(dir)? && read_config(dir)?.isolated == 1)
    }

    fn take_refused(&mut self) -> Result<Vec<Refused>, EnforcerError> {
        let mut out = Vec::new();
        for dir in pins::generations(&self.pin_dir)? {
            let mut map = open_map(&dir, "REFUSED")?;
            let mut m: HashMap<&mut MapData, FlowKey, RefusedCounters> =
                HashMap::try_from(&mut map).map_err(err)?;
            let keys: Vec<FlowKey> = m.keys().filter_map(Result::ok).collect();
            for k in keys {
                // Read, then delete: an increment between the two is lost (rare; the
                // counts are a report).
                if let Ok(v) = m.get(&k, 0) {
                    out.push(entries::refused(&k, &v));
                }
                let _ = m.remove(&k);
            }
        }
        Ok(out)
    }
}
