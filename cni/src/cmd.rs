//! The verbs. Each returns the success document (if the verb has one) or an [`Error`].

use std::{
    net::{IpAddr, Ipv6Addr},
    path::Path,
};

use ipnet::{IpNet, Ipv6Net};
use serde_json::Value;
use sixlane_attach::chain;

use crate::{
    conf::{Conf, Dataplane},
    dataplane,
    error::{Error, Result},
    ipam::{self, Store, store::current_boot_id},
    log,
    netlink::{Netlink, format_mac},
    plumb::{self, Netns, Plan},
    sources,
    spec::{CniResult, Env, Interface, IpConfig},
};

/// Fallback when the node has no IPv6 route to the outside to take the MTU from.
const DEFAULT_MTU: u32 = 1500;

fn store(conf: &Conf) -> Result<Store> {
    Store::open(&conf.ipam.data_dir, &conf.name, current_boot_id()?)
}

fn open_pod_ns(env: &Env, host: &Netns) -> Result<Netns> {
    let ns = Netns::open(Path::new(&env.netns)).map_err(|e| Error::EnvUnusable {
        var: "CNI_NETNS",
        source: Box::new(e),
    })?;
    if !ns.is_network() {
        return Err(Error::Env {
            var: "CNI_NETNS",
            reason: format!("{} is not a network namespace", env.netns),
        });
    }
    if ns.same_as(host) {
        return Err(Error::Env {
            var: "CNI_NETNS",
            reason: format!(
                "{} is the plugin's own network namespace, not a container's",
                env.netns
            ),
        });
    }
    Ok(ns)
}

/// The MTU of the interface the node's IPv6 traffic leaves through.
fn uplink_mtu(nl: &mut Netlink) -> Result<u32> {
    let probe = Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 1);
    let Some(oif) = nl.route_get(probe)? else {
        return Ok(DEFAULT_MTU);
    };
    Ok(nl.link_by_index(oif)?.map_or(
        DEFAULT_MTU,
        |l| if l.mtu >= 1280 { l.mtu } else { DEFAULT_MTU },
    ))
}

pub fn add(conf: &Conf, env: &Env) -> Result<Value> {
    if conf.dataplane == Dataplane::Required {
        let missing = dataplane::missing_pins(&conf.pin_root);
        if !missing.is_empty() {
            return Err(Error::TryAgain(format!(
                "dataplane is required but the sixlane datapath is not loaded (missing {}); \
                 start the agent",
                missing.join(", ")
            )));
        }
    }
    let host_ns = Netns::current()?;
    let pod_ns = open_pod_ns(env, &host_ns)?;
    let mut nl = Netlink::open()?;
    let mtu = match conf.mtu {
        Some(m) => m,
        None => uplink_mtu(&mut nl)?,
    };
    let store = store(conf)?;
    let allocs = ipam::allocate(&store, &conf.ipam, &env.container_id, &env.ifname)?;
    let host_if = plumb::host_ifname(&env.container_id, &env.ifname);
    let plan = Plan {
        host_if: &host_if,
        pod_if: &env.ifname,
        mtu,
        gateway: conf.pod_gateway,
        allocs: &allocs,
        routes: &conf.ipam.routes,
    };
    let mut plumbed_ok = false;
    let mut recorded = None;
    let res = (|| {
        plumb::sysctl("ipv6/conf/all/forwarding", "1", true)?;
        let p = plumb::add(&mut nl, &host_ns, &pod_ns, &plan)?;
        plumbed_ok = true;
        let attach = match conf.dataplane {
            Dataplane::Off => false,
            Dataplane::Required => true,
            Dataplane::Optional => {
                let loaded = dataplane::missing_pins(&conf.pin_root).is_empty();
                if !loaded {
                    log::warn("dataplane is optional and not loaded: pod attached without it");
                }
                loaded
            }
        };
        if attach {
            // Sources first: the programs never run on this veth without them.
            let addrs: Vec<Ipv6Addr> = allocs.iter().map(|a| a.ip).collect();
            recorded = sources::record(&conf.pin_root, &host_if, &addrs, conf.source_validation)?;
            dataplane::attach(&conf.pin_root, &host_if, conf.attach)?;
        }
        Ok(p)
    })();
    let plumbed = match res {
        Ok(p) => p,
        Err(e) => {
            log::error(&format!("ADD failed, rolling back: {}", chain(&e)));
            if plumbed_ok && let Err(e2) = nl.del_link_by_name(&host_if) {
                log::error(&format!("rollback: deleting {host_if}: {}", chain(&e2)));
            }
            if recorded.is_some()
                && let Err(e2) = sources::forget(&conf.pin_root, recorded)
            {
                log::error(&format!("rollback: forgetting sources: {}", chain(&e2)));
            }
            if let Err(e2) = ipam::undo(&store, &allocs) {
                log::error(&format!("rollback: releasing addresses: {}", chain(&e2)));
            }
            return Err(e);
        }
    };
    let result = CniResult {
        interfaces: vec![
            Interface {
                name: host_if.clone(),
                mac: plumbed.host_mac,
                mtu: Some(mtu),
                ..Default::default()
            },
            Interface {
                name: env.ifname.clone(),
                mac: plumbed.pod_mac,
                mtu: Some(mtu),
                sandbox: env.netns.clone(),
                ..Default::default()
            },
        ],
        ips: allocs
            .iter()
            .zip(&plumbed.gateways)
            .map(|(a, gw)| IpConfig {
                interface: Some(1),
                address: IpNet::V6(
                    Ipv6Net::new(a.ip, a.subnet.prefix_len()).expect("prefix from a subnet"),
                ),
                gateway: Some(IpAddr::V6(*gw)),
            })
            .collect(),
        routes: conf.ipam.routes.clone(),
        dns: if conf.dns.is_empty() {
            conf.ipam.dns.clone()
        } else {
            conf.dns.clone()
        },
    };
    log::info(&format!(
        "added {} on {} (host {host_if}, mtu {mtu}, dataplane {:?}, attach {}, sources {})",
        allocs
            .iter()
            .map(|a| a.ip.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        env.ifname,
        conf.dataplane,
        conf.attach,
        match recorded {
            None => "not validated",
            Some(_) if conf.source_validation => "validated",
            Some(_) => "opted out",
        }
    ));
    Ok(match &conf.prev_result {
        Some(prev) => result.merged_into(prev, conf.version),
        None => result.to_json(conf.version),
    })
}

/// DEL: best effort, idempotent; needs neither the namespace nor `prevResult`.
pub fn del(conf: &Conf, env: &Env) -> Result<()> {
    let host_if = plumb::host_ifname(&env.container_id, &env.ifname);
    let mut errors = Vec::new();
    // Read before the veth goes: its source entries are keyed by it.
    let ifindex = sixlane_attach::iface::index(&host_if);
    // Deleting the host end removes the pair, the pod interface and the host /128 route, whether
    // or not the container's namespace still exists, and in tc mode the clsact qdisc with
    // sixlane's filters. It goes first: in TCX mode, unregistering the device releases its TCX
    // entries in the same RCU grace period as the device itself, whereas detaching a live link
    // costs one grace period per program (~15 ms each here). The detach below then only finds
    // defunct links and removes their pins (whatever mode ADD used: DEL needs no state).
    match Netlink::open().and_then(|mut nl| nl.del_link_by_name(&host_if)) {
        Ok(true) => log::debug(&format!("deleted {host_if}")),
        Ok(false) => log::debug(&format!("{host_if} was already gone")),
        Err(e) => errors.push(e),
    }
    if let Err(e) = dataplane::detach(&conf.pin_root, &host_if) {
        errors.push(e);
    }
    if let Err(e) = sources::forget(&conf.pin_root, ifindex) {
        errors.push(e);
    }
    match store(conf).and_then(|s| ipam::release(&s, &env.container_id, &env.ifname)) {
        Ok(ips) => log::info(&format!(
            "deleted {}/{}: released [{}]",
            env.container_id,
            env.ifname,
            ips.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )),
        Err(e) => errors.push(e),
    }
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        _ => Err(Error::Many(errors)),
    }
}

pub fn check(conf: &Conf, env: &Env) -> Result<()> {
    let prev = conf
        .prev_result
        .as_ref()
        .ok_or_else(|| Error::config("prevResult", "CHECK needs the ADD result in prevResult"))?;
    let prev = CniResult::from_prev(prev)?;
    let store = store(conf)?;
    let held = ipam::check(&store, &env.container_id, &env.ifname)?;
    if held.is_empty() {
        return Err(Error::Check(format!(
            "no IP reservation for {}/{} in {}",
            env.container_id,
            env.ifname,
            store.dir().display()
        )));
    }
    let pod_idx = prev
        .interfaces
        .iter()
        .position(|i| i.name == env.ifname && i.sandbox == env.netns)
        .ok_or_else(|| {
            Error::Check(format!(
                "prevResult has no interface {} in sandbox {}",
                env.ifname, env.netns
            ))
        })?;
    let host_if = plumb::host_ifname(&env.container_id, &env.ifname);
    let want_ips: Vec<&IpConfig> = prev
        .ips
        .iter()
        .filter(|ip| ip.interface == Some(pod_idx))
        .collect();
    for ip in &want_ips {
        if !held.contains(&ip.address.addr()) {
            return Err(Error::Check(format!(
                "{} is not reserved for {}/{}",
                ip.address.addr(),
                env.container_id,
                env.ifname
            )));
        }
    }
    let host_ns = Netns::current()?;
    let pod_ns = open_pod_ns(env, &host_ns)?;
    let mut nl = Netlink::open()?;
    let host = nl
        .link_by_name(&host_if)?
        .ok_or_else(|| Error::Check(format!("host interface {host_if} does not exist")))?;
    let host_routes = nl.routes()?;
    for ip in &want_ips {
        let IpAddr::V6(a) = ip.address.addr() else {
            continue;
        };
        if !host_routes
            .iter()
            .any(|r| r.dst == Some(a) && r.dst_len == 128 && r.oif == Some(host.index))
        {
            return Err(Error::Check(format!(
                "host route {a}/128 dev {host_if} is missing"
            )));
        }
    }
    if conf.dataplane == Dataplane::Required {
        dataplane::verify(&conf.pin_root, &host_if)?;
        let addrs: Vec<Ipv6Addr> = want_ips
            .iter()
            .filter_map(|ip| match ip.address.addr() {
                IpAddr::V6(a) => Some(a),
                IpAddr::V4(_) => None,
            })
            .collect();
        sources::verify(&conf.pin_root, &host_if, &addrs, conf.source_validation)?;
    }
    let want_mac = prev.interfaces[pod_idx].mac.to_ascii_lowercase();
    plumb::inside(&pod_ns, &host_ns, || {
        let mut nl = Netlink::open()?;
        let link = nl.link_by_name(&env.ifname)?.ok_or_else(|| {
            Error::Check(format!(
                "interface {} is missing in {}",
                env.ifname, env.netns
            ))
        })?;
        if link.kind.as_deref() != Some("veth") {
            return Err(Error::Check(format!(
                "{} is a {:?} interface, not a veth",
                env.ifname, link.kind
            )));
        }
        if !want_mac.is_empty() && format_mac(&link.mac) != want_mac {
            return Err(Error::Check(format!(
                "{} has MAC {}, prevResult says {want_mac}",
                env.ifname,
                format_mac(&link.mac)
            )));
        }
        if !link.up {
            return Err(Error::Check(format!("{} is down", env.ifname)));
        }
        let addrs = nl.addrs(link.index)?;
        for ip in &want_ips {
            let IpNet::V6(net) = ip.address else { continue };
            if !addrs
                .iter()
                .any(|a| a.ip == net.addr() && a.prefix == net.prefix_len())
            {
                return Err(Error::Check(format!(
                    "address {net} is missing on {}",
                    env.ifname
                )));
            }
        }
        let routes = nl.routes()?;
        for r in &prev.routes {
            let IpNet::V6(dst) = r.dst else { continue };
            let found = routes.iter().any(|k| {
                let dst_ok = k.dst_len == dst.prefix_len()
                    && k.dst.unwrap_or(Ipv6Addr::UNSPECIFIED) == dst.network();
                let gw_ok = match r.gw {
                    Some(IpAddr::V6(g)) => k.gw == Some(g),
                    _ => true,
                };
                let table_ok = r.table.is_none_or(|t| k.table == t);
                dst_ok && gw_ok && table_ok
            });
            if !found {
                return Err(Error::Check(format!(
                    "route {dst} is missing in {}",
                    env.netns
                )));
            }
        }
        Ok(())
    })
}

pub fn status(conf: &Conf) -> Result<()> {
    if conf.dataplane == Dataplane::Required {
        let missing = dataplane::missing_pins(&conf.pin_root);
        if !missing.is_empty() {
            return Err(Error::NotAvailable(format!(
                "dataplane is required but the sixlane datapath is not loaded (missing {})",
                missing.join(", ")
            )));
        }
    }
    let store = store(conf)?;
    let full = ipam::exhausted(&store, &conf.ipam)?;
    if !full.is_empty() {
        return Err(Error::NotAvailable(format!(
            "no addresses left in range set(s) {}",
            full.iter()
                .map(|i| format!("{i} ({})", conf.ipam.ranges[*i]))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(())
}

pub fn gc(conf: &Conf) -> Result<()> {
    let mut errors = Vec::new();
    match store(conf).and_then(|s| ipam::gc(&s, &conf.valid_attachments)) {
        Ok(released) if !released.is_empty() => log::info(&format!(
            "GC released {}",
            released
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )),
        Ok(_) => {}
        Err(e) => errors.push(e),
    }
    if conf.pin_root.exists() {
        let res = Netlink::open().and_then(|mut nl| {
            dataplane::prune_defunct(&conf.pin_root, &mut |name| {
                !matches!(nl.link_by_name(name), Ok(None))
            })
        });
        match res {
            Ok(pruned) if !pruned.is_empty() => {
                log::info(&format!("GC removed defunct links {}", pruned.join(", ")));
            }
            Ok(_) => {}
            Err(e) => errors.push(e),
        }
        match sources::gc(&conf.pin_root) {
            Ok(pruned) if !pruned.is_empty() => {
                log::info(&format!(
                    "GC removed the sources of defunct ifindexes {pruned:?}"
                ));
            }
            Ok(_) => {}
            Err(e) => errors.push(e),
        }
    }
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        _ => Err(Error::Many(errors)),
    }
}
