//! Reading addresses and links, and keeping the pod CIDR routes to other nodes, over rtnetlink.

use std::{collections::BTreeMap, net::Ipv6Addr};

use futures::TryStreamExt as _;
use ipnet::Ipv6Net;
use rtnetlink::{
    Handle, RouteMessageBuilder,
    packet_route::{
        AddressFamily,
        address::{AddressAttribute, AddressFlags},
        link::LinkAttribute,
        route::{RouteAddress, RouteAttribute, RouteMessage, RouteProtocol},
    },
};
use serde::Serialize;
use sixlane_attach::chain;
use tracing::{info, warn};

use super::candidate::LocalAddr;
use crate::{Error, Result, error::NetlinkRequest, reconcile::NodeInfo};

fn req(request: NetlinkRequest) -> impl FnOnce(rtnetlink::Error) -> Error {
    move |source| Error::Netlink { request, source }
}

/// Opens an rtnetlink connection (its driver runs on the current tokio runtime).
pub fn connect() -> Result<Handle> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(Error::Rtnetlink)?;
    tokio::spawn(conn);
    Ok(handle)
}

/// Interface index → name.
pub async fn links(h: &Handle) -> Result<BTreeMap<u32, (String, u32)>> {
    let mut out = BTreeMap::new();
    let mut s = h.link().get().execute();
    while let Some(m) = s.try_next().await.map_err(req(NetlinkRequest::ListLinks))? {
        let mut name = String::new();
        let mut mtu = 0;
        for a in &m.attributes {
            match a {
                LinkAttribute::IfName(n) => name = n.clone(),
                LinkAttribute::Mtu(v) => mtu = *v,
                _ => {}
            }
        }
        out.insert(m.header.index, (name, mtu));
    }
    Ok(out)
}

/// MTU of `ifname`.
pub async fn link_mtu(h: &Handle, ifname: &str) -> Result<u32> {
    links(h)
        .await?
        .into_values()
        .find(|(n, _)| n == ifname)
        .map(|(_, mtu)| mtu)
        .ok_or_else(|| Error::NoSuchLink(ifname.into()))
}

/// Every IPv6 address on this host with its flags.
pub async fn local_addrs(h: &Handle) -> Result<Vec<LocalAddr>> {
    let names = links(h).await?;
    let mut out = Vec::new();
    let mut s = h.address().get().execute();
    while let Some(m) = s
        .try_next()
        .await
        .map_err(req(NetlinkRequest::ListAddresses))?
    {
        if m.header.family != AddressFamily::Inet6 {
            continue;
        }
        // The extended IFA_FLAGS attribute, when present, supersedes the header's 8 bits.
        let mut flags = AddressFlags::from_bits_retain(u32::from(m.header.flags.bits()));
        let mut addr = None;
        for a in &m.attributes {
            match a {
                AddressAttribute::Address(std::net::IpAddr::V6(v6)) => addr = Some(*v6),
                AddressAttribute::Flags(f) => flags = *f,
                _ => {}
            }
        }
        let Some(addr) = addr else { continue };
        out.push(LocalAddr {
            addr,
            interface: names
                .get(&m.header.index)
                .map(|(n, _)| n.clone())
                .unwrap_or_else(|| format!("if{}", m.header.index)),
            prefix_len: m.header.prefix_len,
            permanent: flags.contains(AddressFlags::Permanent),
            temporary: flags.contains(AddressFlags::Secondary),
            deprecated: flags.contains(AddressFlags::Deprecated),
            tentative: flags.contains(AddressFlags::Tentative),
            dad_failed: flags.contains(AddressFlags::Dadfailed),
        });
    }
    Ok(out)
}

/// A pod CIDR route to another node.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct PodRoute {
    pub dst: Ipv6Net,
    pub via: Ipv6Addr,
    pub node: String,
}

/// The routes static routing wants: every other node's IPv6 pod CIDRs via its first IPv6
/// InternalIP. Nodes without either are skipped (returned as warnings).
pub fn desired_routes(
    nodes: &[NodeInfo],
    me: &str,
    own_cidr: Option<Ipv6Net>,
) -> (Vec<PodRoute>, Vec<String>) {
    let mut routes = Vec::new();
    let mut warnings = Vec::new();
    for n in nodes.iter().filter(|n| n.name != me) {
        if n.pod_cidrs.is_empty() {
            warnings.push(format!("node {}: no IPv6 pod CIDR yet; no route", n.name));
            continue;
        }
        let Some(via) = n.internal_ips.first() else {
            warnings.push(format!(
                "node {}: no IPv6 InternalIP; no route to its pods",
                n.name
            ));
            continue;
        };
        for c in &n.pod_cidrs {
            if own_cidr.is_some_and(|o| o.contains(c) || c.contains(&o)) {
                warnings.push(format!(
                    "node {}: pod CIDR {c} overlaps ours; not routed",
                    n.name
                ));
                continue;
            }
            routes.push(PodRoute {
                dst: *c,
                via: *via,
                node: n.name.clone(),
            });
        }
    }
    routes.sort();
    routes.dedup_by(|a, b| a.dst == b.dst);
    (routes, warnings)
}

/// Keeps the routes marked with our protocol equal to a desired set.
#[derive(Debug)]
pub struct RouteTable {
    handle: Handle,
    protocol: u8,
    table: u32,
}

fn route_dst_via(m: &RouteMessage) -> Option<(Ipv6Net, Option<Ipv6Addr>)> {
    let mut dst = None;
    let mut via = None;
    for a in &m.attributes {
        match a {
            RouteAttribute::Destination(RouteAddress::Inet6(d)) => dst = Some(*d),
            RouteAttribute::Gateway(RouteAddress::Inet6(g)) => via = Some(*g),
            _ => {}
        }
    }
    let net = Ipv6Net::new(
        dst.unwrap_or(Ipv6Addr::UNSPECIFIED),
        m.header.destination_prefix_length,
    )
    .ok()?;
    Some((net, via))
}

fn route_table(m: &RouteMessage) -> u32 {
    m.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(m.header.table))
}

impl RouteTable {
    pub fn new(handle: Handle, protocol: u8, table: u32) -> Self {
        Self {
            handle,
            protocol,
            table,
        }
    }

    /// Our routes currently in the kernel.
    pub async fn list(&self) -> Result<Vec<(RouteMessage, Ipv6Net, Option<Ipv6Addr>)>> {
        let msg = RouteMessageBuilder::<Ipv6Addr>::new().build();
        let mut s = self.handle.route().get(msg).execute();
        let mut out = Vec::new();
        while let Some(m) = s
            .try_next()
            .await
            .map_err(req(NetlinkRequest::ListRoutes))?
        {
            if m.header.protocol != RouteProtocol::from(self.protocol)
                || route_table(&m) != self.table
            {
                continue;
            }
            if let Some((dst, via)) = route_dst_via(&m) {
                out.push((m, dst, via));
            }
        }
        Ok(out)
    }

    /// Adds, replaces and removes our routes so exactly `want` exists. Returns the number of
    /// changes; every failure is reported, none stops the others.
    pub async fn sync(&self, want: &[PodRoute]) -> (usize, Vec<Error>) {
        let mut errors = Vec::new();
        let mut changes = 0;
        let have = match self.list().await {
            Ok(h) => h,
            Err(e) => return (0, vec![e]),
        };
        for (msg, dst, via) in &have {
            if !want.iter().any(|w| w.dst == *dst && Some(w.via) == *via) {
                match self.handle.route().del(msg.clone()).execute().await {
                    Ok(()) => {
                        info!(%dst, via = ?via, "removed pod CIDR route");
                        changes += 1;
                    }
                    Err(e) => errors.push(req(NetlinkRequest::RemoveRoute { dst: *dst })(e)),
                }
            }
        }
        for w in want {
            if have
                .iter()
                .any(|(_, d, v)| *d == w.dst && *v == Some(w.via))
            {
                continue;
            }
            let msg = RouteMessageBuilder::<Ipv6Addr>::new()
                .destination_prefix(w.dst.network(), w.dst.prefix_len())
                .gateway(w.via)
                .protocol(RouteProtocol::from(self.protocol))
                .table_id(self.table)
                .build();
            match self.handle.route().add(msg).replace().execute().await {
                Ok(()) => {
                    info!(dst = %w.dst, via = %w.via, node = %w.node, "pod CIDR route installed");
                    changes += 1;
                }
                Err(e) => {
                    warn!(dst = %w.dst, via = %w.via, error = %chain(&e), "cannot install pod CIDR route");
                    errors.push(req(NetlinkRequest::AddRoute {
                        dst: w.dst,
                        via: w.via,
                    })(e));
                }
            }
        }
        (changes, errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, ips: &[&str], cidrs: &[&str]) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            internal_ips: ips.iter().map(|i| i.parse().unwrap()).collect(),
            external_ips: vec![],
            pod_cidrs: cidrs.iter().map(|c| c.parse().unwrap()).collect(),
            leaving: false,
            labels: Default::default(),
        }
    }

    #[test]
    fn routes_to_every_other_node() {
        let nodes = [
            node("a", &["fd00::a"], &["fd00:10:a::/64"]),
            node("b", &["fd00::b", "fd00::bb"], &["fd00:10:b::/64"]),
            node("c", &[], &["fd00:10:c::/64"]),
            node("d", &["fd00::d"], &[]),
            node("e", &["fd00::e"], &["fd00:10:a::/80"]),
        ];
        let (routes, warnings) =
            desired_routes(&nodes, "a", Some("fd00:10:a::/64".parse().unwrap()));
        assert_eq!(
            routes,
            [PodRoute {
                dst: "fd00:10:b::/64".parse().unwrap(),
                via: "fd00::b".parse().unwrap(),
                node: "b".into()
            }]
        );
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(warnings[0].contains("node c: no IPv6 InternalIP"));
        assert!(warnings[1].contains("node d: no IPv6 pod CIDR"));
        assert!(warnings[2].contains("overlaps ours"));
    }
}
