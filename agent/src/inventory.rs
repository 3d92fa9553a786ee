//! Host facts for the collector: OS, kernel, CPUs, memory (sysinfo), interfaces and their
//! addresses (getifaddrs), and the listening sockets with the process behind each (/proc).
use std::{path::PathBuf, time::Duration};

use cordon_wire::{Interface, Inventory, Listener, MAX_INVENTORY_ITEMS, MAX_TEXT, Process};
use sysinfo::{CpuRefreshKind, System};

use crate::{
    capture::procfs::{InodeOwners, sockets},
    process::read_proc,
    record::Proto,
};

fn short(mut s: String) -> String {
    while s.len() > MAX_TEXT {
        s.pop();
    }
    s.replace('\0', "")
}

fn process(pid: u32) -> Option<Process> {
    let f = read_proc(std::path::Path::new("/proc"), pid)?;
    Some(Process {
        pid,
        ppid: f.ppid,
        uid: f.uid.unwrap_or(0),
        user: None,
        comm: short(f.comm.unwrap_or_default()),
        exe: f.exe,
        cmdline: f.cmdline,
        cgroup: f.cgroup,
    })
}

/// Interfaces and their addresses from getifaddrs(3) (netlink): unlike /sys, it shows
/// the agent's own network namespace.
fn interfaces() -> Vec<Interface> {
    let mut by_name: std::collections::BTreeMap<String, Vec<std::net::IpAddr>> = Default::default();
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    for a in addrs {
        let ips = by_name.entry(short(a.interface_name.clone())).or_default();
        let ip = a.address.as_ref().and_then(|s| {
            s.as_sockaddr_in()
                .map(|v4| std::net::IpAddr::V4(v4.ip()))
                .or_else(|| s.as_sockaddr_in6().map(|v6| std::net::IpAddr::V6(v6.ip())))
        });
        if let Some(ip) = ip
            && !ips.contains(&ip)
        {
            ips.push(ip);
        }
    }
    by_name
        .into_iter()
        .map(|(name, addresses)| Interface { name, addresses })
        .collect()
}

/// What this host looks like now.
pub fn collect(host_name: &str) -> Inventory {
    let (cpus, memory_bytes) = match System::new() {
        Ok(mut sys) => {
            sys.refresh_memory();
            sys.refresh_cpu_list(CpuRefreshKind::nothing());
            (sys.cpus().len() as u32, sys.total_memory())
        }
        Err(_) => (0, 0),
    };
    let mut interfaces = interfaces();
    interfaces.sort_by(|a, b| a.name.cmp(&b.name));
    interfaces.truncate(MAX_INVENTORY_ITEMS);

    let mut owners = InodeOwners::new(PathBuf::from("/proc"), Duration::ZERO);
    let mut listening: Vec<Listener> = sockets::read_all(std::path::Path::new("/proc/net"))
        .into_iter()
        .filter(|e| match e.proto {
            Proto::Tcp => e.state == sockets::TCP_LISTEN,
            _ => e.remote_port == 0 && e.local_port != 0,
        })
        .map(|e| Listener {
            proto: match e.proto {
                Proto::Tcp => cordon_wire::Proto::Tcp,
                _ => cordon_wire::Proto::Udp,
            },
            local: std::net::SocketAddr::new(e.local_ip, e.local_port),
            process: owners.owner(e.inode).and_then(process),
        })
        .collect();
    listening.sort_by_key(|l| (l.local.port(), l.local.ip()));
    listening.truncate(MAX_INVENTORY_ITEMS);

    Inventory {
        host_name: host_name.chars().take(253).collect(),
        os: short(System::long_os_version().unwrap_or_default()),
        kernel: short(System::kernel_version().unwrap_or_default()),
        cpus,
        memory_bytes,
        interfaces,
        listening,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_host_is_described_and_passes_the_wire_checks() {
        // A listener of our own, so there is at least one to find.
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
        let port = l.local_addr().expect("addr").port();
        let inv = collect("test-host");
        assert!(inv.cpus >= 1 && inv.memory_bytes > 0, "{inv:?}");
        assert!(!inv.kernel.is_empty());
        assert!(
            inv.interfaces.iter().any(|i| i.name == "lo"),
            "{:?}",
            inv.interfaces
        );
        let mine = inv
            .listening
            .iter()
            .find(|x| x.local.port() == port)
            .expect("our listener");
        assert_eq!(
            mine.process.as_ref().map(|p| p.pid),
            Some(std::process::id())
        );
        let body = cordon_wire::encode(&cordon_wire::Message::Inventory(inv)).expect("encode");
        cordon_wire::decode(&body).expect("valid on the wire");
    }
}
