//! ptp-style IPv6 pod plumbing over netlink: a veth whose peer is created directly inside the pod
//! namespace with its final name; the pod address without DAD and without a prefix route; routes
//! via a link-local gateway on the host veth (or the range gateway, as ptp does); a /128 route to
//! the pod on the host.
//!
//! The plugin is single-threaded: it `setns`es into the pod namespace for the pod-side sysctls and
//! to open a netlink socket there, then returns to the host namespace.

use std::{
    fs::{self, File},
    io,
    net::Ipv6Addr,
    os::fd::AsRawFd as _,
    path::Path,
};

use netlink_packet_route::address::AddressFlags;
use nix::sched::{CloneFlags, setns};
use sixlane_attach::chain;
pub use sixlane_attach::iface::{host_ifname, is_host_ifname};

use crate::{
    conf::PodGateway,
    error::{Error, Result},
    ipam::Allocation,
    netlink::{Link, Netlink, NewRoute, format_mac},
    spec::Route,
};

/// A network namespace we can switch the (single) thread into and back.
pub struct Netns {
    pub file: File,
}

impl Netns {
    pub fn open(path: &Path) -> Result<Self> {
        File::open(path)
            .map(|file| Self { file })
            .map_err(|e| Error::io("opening network namespace", path, e))
    }

    pub fn current() -> Result<Self> {
        Self::open(Path::new("/proc/thread-self/ns/net"))
    }

    pub fn enter(&self) -> Result<()> {
        setns(&self.file, CloneFlags::CLONE_NEWNET)
            .map_err(|e| Error::io("entering network namespace", "setns", io::Error::from(e)))
    }

    /// Whether the file is a network namespace (not a regular file, a directory, or another
    /// kind of namespace): `ioctl(NS_GET_NSTYPE)` answers only on nsfs files.
    pub fn is_network(&self) -> bool {
        // linux/nsfs.h: NS_GET_NSTYPE = _IO(0xb7, 0x3).
        const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
        // SAFETY: an argument-less ioctl on a descriptor this value owns.
        let kind = unsafe { libc::ioctl(self.file.as_raw_fd(), NS_GET_NSTYPE as _) };
        kind == libc::CLONE_NEWNET
    }

    /// Same namespace (device and inode of the nsfs file)?
    pub fn same_as(&self, other: &Self) -> bool {
        use std::os::unix::fs::MetadataExt as _;
        match (self.file.metadata(), other.file.metadata()) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
}

/// Runs `f` inside `ns` and always comes back to `home`.
pub fn inside<T>(ns: &Netns, home: &Netns, f: impl FnOnce() -> Result<T>) -> Result<T> {
    ns.enter()?;
    let r = f();
    home.enter().inspect_err(|e| {
        // Continuing in the wrong namespace would configure the wrong place: give up loudly.
        crate::log::error(&format!(
            "cannot return to the host network namespace: {}",
            chain(e)
        ));
    })?;
    r
}

/// Writes a sysctl under /proc/sys/net of the current namespace. `read_first` skips writes that
/// would not change anything (writing `disable_ipv6` or `forwarding` takes the RTNL with
/// trylock-and-restart, which spins under parallel ADDs).
pub fn sysctl(key: &str, value: &str, read_first: bool) -> Result<()> {
    let path = format!("/proc/sys/net/{key}");
    if read_first
        && let Ok(cur) = fs::read_to_string(&path)
        && cur.trim() == value
    {
        return Ok(());
    }
    fs::write(&path, value).map_err(|e| Error::io("writing sysctl", path, e))
}

pub fn read_sysctl(key: &str) -> Option<String> {
    fs::read_to_string(format!("/proc/sys/net/{key}"))
        .ok()
        .map(|s| s.trim().to_owned())
}

/// A random locally administered unicast MAC (so ADD knows both MACs without asking the kernel).
pub fn random_mac() -> [u8; 6] {
    let mut m = [0u8; 6];
    // SAFETY: getrandom writes at most 6 bytes into `m`.
    let n = unsafe { libc::getrandom(m.as_mut_ptr().cast(), m.len(), 0) };
    if n != 6 {
        // Fallback entropy: time and pid; uniqueness only matters per link.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64
            ^ u64::from(std::process::id()).rotate_left(40);
        m.copy_from_slice(&t.to_le_bytes()[..6]);
    }
    m[0] = (m[0] & 0xfe) | 0x02;
    m
}

/// What ADD plumbs.
pub struct Plan<'a> {
    pub host_if: &'a str,
    pub pod_if: &'a str,
    pub mtu: u32,
    pub gateway: PodGateway,
    pub allocs: &'a [Allocation],
    pub routes: &'a [Route],
}

/// The two ends, as the result reports them.
#[derive(Clone, Debug)]
pub struct Plumbed {
    pub host_mac: String,
    pub pod_mac: String,
    /// The gateway each allocation's routes point at (in `allocs` order).
    pub gateways: Vec<Ipv6Addr>,
}

/// The gateway pods of `alloc` route through.
pub fn gateway_for(gw: PodGateway, alloc: &Allocation) -> Ipv6Addr {
    match gw {
        PodGateway::LinkLocal(ll) => ll,
        PodGateway::Range => alloc.gateway,
    }
}

/// ADD's plumbing. On failure, removes the veth if this call created it (never one that existed).
pub fn add(
    host_nl: &mut Netlink,
    host_ns: &Netns,
    pod_ns: &Netns,
    plan: &Plan<'_>,
) -> Result<Plumbed> {
    let host_mac = random_mac();
    let pod_mac = random_mac();
    if let Err(e) = host_nl.create_veth(
        plan.host_if,
        host_mac,
        plan.pod_if,
        pod_mac,
        pod_ns.file.as_raw_fd(),
        plan.mtu,
    ) {
        return Err(explain_create_error(e, host_nl, host_ns, pod_ns, plan));
    }
    let res = configure(host_nl, host_ns, pod_ns, plan);
    match res {
        Ok(gateways) => Ok(Plumbed {
            host_mac: format_mac(&host_mac),
            pod_mac: format_mac(&pod_mac),
            gateways,
        }),
        Err(e) => {
            if let Err(e2) = host_nl.del_link_by_name(plan.host_if) {
                crate::log::error(&format!(
                    "rollback: deleting {}: {}",
                    plan.host_if,
                    chain(&e2)
                ));
            }
            Err(e)
        }
    }
}

/// EEXIST from the veth create: say which name is taken.
fn explain_create_error(
    e: Error,
    host_nl: &mut Netlink,
    host_ns: &Netns,
    pod_ns: &Netns,
    plan: &Plan<'_>,
) -> Error {
    let Error::Netlink { source, .. } = &e else {
        return e;
    };
    if source.raw_os_error() != Some(libc::EEXIST) {
        return e;
    }
    if matches!(host_nl.link_by_name(plan.host_if), Ok(Some(_))) {
        return Error::TryAgain(format!(
            "host interface {} already exists (an earlier ADD of this attachment was not \
             deleted; DEL it first)",
            plan.host_if
        ));
    }
    let in_pod = inside(pod_ns, host_ns, || {
        let mut nl = Netlink::open()?;
        nl.link_by_name(plan.pod_if)
    });
    if matches!(in_pod, Ok(Some(_))) {
        return Error::config(
            "CNI_IFNAME",
            format!(
                "interface {} already exists in the container's network namespace",
                plan.pod_if
            ),
        );
    }
    e
}

fn configure(
    host_nl: &mut Netlink,
    host_ns: &Netns,
    pod_ns: &Netns,
    plan: &Plan<'_>,
) -> Result<Vec<Ipv6Addr>> {
    let host = host_nl
        .link_by_name(plan.host_if)?
        .ok_or_else(|| missing(plan.host_if))?;
    sysctl(&format!("ipv6/conf/{}/accept_ra", plan.host_if), "0", false)?;
    // Link-local gateway: one fe80::/64 per host veth (every veth may carry the same fe80::1).
    // Range gateway: its /128, as ptp puts it on every host veth.
    let host_addrs: Vec<(Ipv6Addr, u8)> = match plan.gateway {
        PodGateway::LinkLocal(ll) => vec![(ll, 64)],
        PodGateway::Range => {
            let mut v: Vec<(Ipv6Addr, u8)> = plan.allocs.iter().map(|a| (a.gateway, 128)).collect();
            v.dedup();
            v
        }
    };
    host_nl.set_up(host.index)?;
    for (ip, len) in &host_addrs {
        host_nl.add_addr(host.index, *ip, *len, AddressFlags::Nodad)?;
    }
    for a in plan.allocs {
        host_nl.add_route(&NewRoute::new(a.ip, 128, host.index))?;
    }
    let gateways: Vec<Ipv6Addr> = plan
        .allocs
        .iter()
        .map(|a| gateway_for(plan.gateway, a))
        .collect();
    inside(pod_ns, host_ns, || {
        let ifc = plan.pod_if;
        sysctl("ipv6/conf/lo/disable_ipv6", "0", true)?;
        sysctl(&format!("ipv6/conf/{ifc}/disable_ipv6"), "0", true)?;
        // IPAM guarantees uniqueness: no DAD, so the address is usable immediately (no settle).
        sysctl(&format!("ipv6/conf/{ifc}/accept_dad"), "0", false)?;
        sysctl(&format!("ipv6/conf/{ifc}/keep_addr_on_down"), "1", false)?;
        let mut nl = Netlink::open()?;
        let pod = nl.link_by_name(ifc)?.ok_or_else(|| missing(ifc))?;
        nl.set_up(pod.index)?;
        for a in plan.allocs {
            nl.add_addr(
                pod.index,
                a.ip,
                a.subnet.prefix_len(),
                AddressFlags::Nodad | AddressFlags::Noprefixroute,
            )?;
        }
        let mut done: Vec<(Ipv6Addr, u8, Option<u32>)> = Vec::new();
        let mut add = |nl: &mut Netlink, r: NewRoute| -> Result<()> {
            let key = (r.dst, r.dst_len, r.table);
            if done.contains(&key) {
                return Ok(());
            }
            nl.add_route(&r)?;
            done.push(key);
            Ok(())
        };
        for (a, gw) in plan.allocs.iter().zip(&gateways) {
            if !gw.is_unicast_link_local() {
                // A global gateway must be on-link first (ptp: "gw/128 scope link").
                let mut r = NewRoute::new(*gw, 128, pod.index);
                r.scope_link = true;
                r.src = Some(a.ip);
                add(&mut nl, r)?;
            }
            let mut r = NewRoute::new(a.subnet.network(), a.subnet.prefix_len(), pod.index);
            r.gw = Some(*gw);
            add(&mut nl, r)?;
        }
        for route in plan.routes {
            let ipnet::IpNet::V6(dst) = route.dst else {
                continue;
            };
            let gw = match route.gw {
                Some(std::net::IpAddr::V6(g)) => g,
                _ => gateways[0],
            };
            let mut r = NewRoute::new(dst.network(), dst.prefix_len(), pod.index);
            r.gw = Some(gw);
            r.mtu = route.mtu;
            r.advmss = route.advmss;
            r.priority = route.priority;
            r.table = route.table;
            r.scope = route.scope;
            add(&mut nl, r)?;
        }
        Ok(())
    })?;
    Ok(gateways)
}

fn missing(name: &str) -> Error {
    Error::netlink(
        format!("looking up {name} right after creating it"),
        io::Error::from_raw_os_error(libc::ENODEV),
    )
}

/// Host side facts for CHECK.
pub fn host_link(nl: &mut Netlink, name: &str) -> Result<Option<Link>> {
    nl.link_by_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_are_local_unicast() {
        for _ in 0..100 {
            let m = random_mac();
            assert_eq!(m[0] & 0x03, 0x02);
        }
    }
}
