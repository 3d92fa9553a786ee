//! Loading the kernel programs, configuring them and attaching them to the watched cgroup
//! and the tracepoints. Dropping the returned `Ebpf` detaches everything.
use std::{fs::File, path::Path};

use anyhow::{Context, anyhow};
use aya::{
    Ebpf, EbpfLoader,
    maps::Array,
    programs::{
        CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSock, CgroupSockAddr, TracePoint,
    },
};
use cordon_abi::ProgConfig;

use super::tracefs;
use crate::{capture::mounts::CgroupTarget, config::CaptureConfig};

/// The kernel programs, built by build.rs and embedded in the binary.
#[cfg(not(cordon_no_ebpf))]
static OBJECT: Option<&[u8]> = Some(aya::include_bytes_aligned!(concat!(
    env!("OUT_DIR"),
    "/cordon-agent-ebpf"
)));
#[cfg(cordon_no_ebpf)]
static OBJECT: Option<&[u8]> = None;

const SKB: [(&str, CgroupSkbAttachType); 2] = [
    ("flow_egress", CgroupSkbAttachType::Egress),
    ("flow_ingress", CgroupSkbAttachType::Ingress),
];
const SOCK: [&str; 4] = ["sock_create", "sock_release", "post_bind4", "post_bind6"];
const SOCK_ADDR: [&str; 4] = ["connect4", "connect6", "sendmsg4", "sendmsg6"];
/// (program, category, tracepoint, required)
const TRACEPOINTS: [(&str, &str, &str, bool); 4] = [
    ("process_fork", "sched", "sched_process_fork", true),
    ("process_exec", "sched", "sched_process_exec", true),
    ("process_exit", "sched", "sched_process_exit", true),
    // Without syscall tracepoints, arguments come from /proc only.
    ("execve_enter", "syscalls", "sys_enter_execve", false),
];

/// Reads the tracepoint field offsets the programs need.
fn prog_config(
    cfg: &CaptureConfig,
    target: &CgroupTarget,
    tracefs: &Path,
) -> anyhow::Result<ProgConfig> {
    let execve_argv = match tracefs::offset(tracefs, "syscalls", "sys_enter_execve", "argv") {
        Ok(off) => off,
        Err(e) => {
            tracing::warn!(error = %e, "syscall tracepoints unavailable; exec arguments will come from /proc only");
            0
        }
    };
    Ok(ProgConfig {
        self_tgid: std::process::id(),
        cgroup_level: target.level,
        cgroup_id: target.id,
        off_exec_filename: tracefs::offset(tracefs, "sched", "sched_process_exec", "filename")?,
        off_exec_old_pid: tracefs::offset(tracefs, "sched", "sched_process_exec", "old_pid")?,
        off_execve_argv: execve_argv,
        off_fork_child_pid: tracefs::offset(tracefs, "sched", "sched_process_fork", "child_pid")?,
        wakeup_bytes: u64::from(cfg.wakeup_bytes),
    })
}

/// Kernel memory for maps is charged to the memory cgroup on current kernels; raising
/// RLIMIT_MEMLOCK is only needed (and may be refused) on old ones.
fn raise_memlock() {
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit with a valid, initialised struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) } != 0 {
        tracing::debug!(
            error = %std::io::Error::last_os_error(),
            "could not raise RLIMIT_MEMLOCK (not needed on kernels that charge maps to the memory cgroup)"
        );
    }
}

/// Loads, configures and attaches every program.
pub fn load_and_attach(
    cfg: &CaptureConfig,
    target: &CgroupTarget,
    tracefs: &Path,
) -> anyhow::Result<Ebpf> {
    let object = OBJECT.ok_or_else(|| {
        anyhow!("this agent was built without its eBPF programs (AYA_BUILD_SKIP was set)")
    })?;
    let pc = prog_config(cfg, target, tracefs)?;
    raise_memlock();
    let mut ebpf = EbpfLoader::new()
        .map_max_entries("FLOWS", cfg.flow_map_entries)
        .map_max_entries("FLOW_SYN", cfg.flow_map_entries)
        .map_max_entries("EVENTS", cfg.ring_buffer_bytes)
        .load(object)
        .context("loading the eBPF object")?;

    let mut config: Array<_, ProgConfig> = ebpf
        .map_mut("CONFIG")
        .ok_or_else(|| anyhow!("map CONFIG missing from the eBPF object"))?
        .try_into()?;
    config.set(0, pc, 0).context("writing CONFIG")?;

    let cgroup = File::open(&target.path)
        .with_context(|| format!("opening cgroup {}", target.path.display()))?;
    // On kernels with cgroup bpf links (5.7+) aya attaches through a link, which the
    // kernel always treats as one of several programs (the eBPF enforcer adds its own
    // connect4/6 and sendmsg4/6 to the same cgroup); links take no flags, so any other
    // mode fails there with EINVAL.
    let mode = CgroupAttachMode::Single;
    for (name, kind) in SKB {
        let prog: &mut CgroupSkb = program(&mut ebpf, name)?.try_into()?;
        prog.load().with_context(|| format!("loading {name}"))?;
        prog.attach(&cgroup, kind, mode)
            .with_context(|| format!("attaching {name} to {}", target.path.display()))?;
    }
    for name in SOCK {
        let prog: &mut CgroupSock = program(&mut ebpf, name)?.try_into()?;
        prog.load().with_context(|| format!("loading {name}"))?;
        prog.attach(&cgroup, mode)
            .with_context(|| format!("attaching {name} to {}", target.path.display()))?;
    }
    for name in SOCK_ADDR {
        let prog: &mut CgroupSockAddr = program(&mut ebpf, name)?.try_into()?;
        prog.load().with_context(|| format!("loading {name}"))?;
        prog.attach(&cgroup, mode)
            .with_context(|| format!("attaching {name} to {}", target.path.display()))?;
    }
    for (name, category, tp, required) in TRACEPOINTS {
        if !required && pc.off_execve_argv == 0 {
            continue;
        }
        let prog: &mut TracePoint = program(&mut ebpf, name)?.try_into()?;
        let res = prog
            .load()
            .map_err(anyhow::Error::from)
            .and_then(|()| prog.attach(category, tp).map(drop).map_err(Into::into));
        match res {
            Ok(()) => {}
            Err(e) if !required => {
                tracing::warn!(program = name, error = %e, "optional tracepoint not attached")
            }
            Err(e) => return Err(e.context(format!("attaching {name} to {category}/{tp}"))),
        }
    }
    Ok(ebpf)
}

fn program<'a>(ebpf: &'a mut Ebpf, name: &str) -> anyhow::Result<&'a mut aya::programs::Program> {
    ebpf.program_mut(name)
        .ok_or_else(|| anyhow!("program {name} missing from the eBPF object"))
}
