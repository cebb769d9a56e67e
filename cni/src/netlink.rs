//! A small synchronous rtnetlink client (netlink-packet-route messages over a blocking
//! netlink-sys socket). The plugin runs for milliseconds: no async runtime, one socket per
//! network namespace, one request in flight.

use std::{
    net::{IpAddr, Ipv6Addr},
    os::fd::RawFd,
};

use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL};
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    address::{AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage},
    link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage},
    route::{
        RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteMetric, RouteProtocol,
        RouteScope, RouteType,
    },
};
use sixlane_attach::rtnl::Rtnl;

use crate::error::{Error, Result};

pub struct Netlink {
    rtnl: Rtnl,
}

/// What the plugin needs to know about a link.
#[derive(Clone, Debug, Default)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: Vec<u8>,
    pub mtu: u32,
    pub up: bool,
    pub kind: Option<String>,
}

/// An IPv6 address on a link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Addr {
    pub ip: Ipv6Addr,
    pub prefix: u8,
    pub flags: u32,
}

/// An IPv6 route as read back from the kernel.
#[derive(Clone, Debug, Default)]
pub struct RouteInfo {
    pub dst: Option<Ipv6Addr>,
    pub dst_len: u8,
    pub gw: Option<Ipv6Addr>,
    pub oif: Option<u32>,
    pub table: u32,
    pub mtu: Option<u32>,
    pub advmss: Option<u32>,
}

/// A route to install.
#[derive(Clone, Debug)]
pub struct NewRoute {
    pub dst: Ipv6Addr,
    pub dst_len: u8,
    pub gw: Option<Ipv6Addr>,
    pub oif: u32,
    pub src: Option<Ipv6Addr>,
    pub scope_link: bool,
    pub mtu: Option<u32>,
    pub advmss: Option<u32>,
    pub priority: Option<u32>,
    pub table: Option<u32>,
    pub scope: Option<u8>,
}

impl NewRoute {
    pub fn new(dst: Ipv6Addr, dst_len: u8, oif: u32) -> Self {
        Self {
            dst,
            dst_len,
            gw: None,
            oif,
            src: None,
            scope_link: false,
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        }
    }
}

impl Netlink {
    /// A route netlink socket in the calling thread's current network namespace.
    pub fn open() -> Result<Self> {
        Ok(Self {
            rtnl: Rtnl::open().map_err(|e| Error::netlink("opening socket", e))?,
        })
    }

    /// Sends one request and collects the replies until the ACK (or DONE for dumps).
    fn request(
        &mut self,
        what: &dyn Fn() -> String,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        self.rtnl
            .request(msg, flags)
            .map_err(|e| Error::netlink(what(), e))
    }

    /// Creates a veth pair: `name` here, its peer `peer_name` directly in the namespace `peer_ns`
    /// (no move, no rename afterwards), both with `mtu` and the given MACs, both down.
    pub fn create_veth(
        &mut self,
        name: &str,
        mac: [u8; 6],
        peer_name: &str,
        peer_mac: [u8; 6],
        peer_ns: RawFd,
        mtu: u32,
    ) -> Result<()> {
        let mut peer = LinkMessage::default();
        peer.attributes = vec![
            LinkAttribute::IfName(peer_name.to_owned()),
            LinkAttribute::Address(peer_mac.to_vec()),
            LinkAttribute::Mtu(mtu),
            LinkAttribute::NetNsFd(peer_ns),
        ];
        let mut m = LinkMessage::default();
        m.attributes = vec![
            LinkAttribute::IfName(name.to_owned()),
            LinkAttribute::Address(mac.to_vec()),
            LinkAttribute::Mtu(mtu),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Veth),
                LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
            ]),
        ];
        self.request(
            &|| format!("creating veth {name} (peer {peer_name})"),
            RouteNetlinkMessage::NewLink(m),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    /// The link called `name`, if any.
    pub fn link_by_name(&mut self, name: &str) -> Result<Option<Link>> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_owned()));
        self.get_link(&|| format!("looking up link {name}"), m)
    }

    pub fn link_by_index(&mut self, index: u32) -> Result<Option<Link>> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        self.get_link(&|| format!("looking up link #{index}"), m)
    }

    /// `RTM_GETLINK` for the link `m` names; `None` when there is none.
    fn get_link(&mut self, what: &dyn Fn() -> String, m: LinkMessage) -> Result<Option<Link>> {
        match self.request(what, RouteNetlinkMessage::GetLink(m), 0) {
            Ok(r) => Ok(r.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(to_link(&l)),
                _ => None,
            })),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn set_up(&mut self, index: u32) -> Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
        self.request(
            &|| format!("setting link #{index} up"),
            RouteNetlinkMessage::SetLink(m),
            NLM_F_ACK,
        )
        .map(drop)
    }

    /// Deletes the link called `name`; `Ok(false)` when there is none.
    pub fn del_link_by_name(&mut self, name: &str) -> Result<bool> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_owned()));
        match self.request(
            &|| format!("deleting link {name}"),
            RouteNetlinkMessage::DelLink(m),
            NLM_F_ACK,
        ) {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Adds `ip/prefix` to link `index` with `flags` (IFA_F_*), e.g. NODAD | NOPREFIXROUTE.
    pub fn add_addr(
        &mut self,
        index: u32,
        ip: Ipv6Addr,
        prefix: u8,
        flags: AddressFlags,
    ) -> Result<()> {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet6;
        m.header.prefix_len = prefix;
        m.header.index = index;
        m.header.flags = AddressHeaderFlags::from_bits_truncate(flags.bits() as u8);
        m.attributes = vec![
            AddressAttribute::Local(IpAddr::V6(ip)),
            AddressAttribute::Address(IpAddr::V6(ip)),
            AddressAttribute::Flags(flags),
        ];
        self.request(
            &|| format!("adding address {ip}/{prefix} to link #{index}"),
            RouteNetlinkMessage::NewAddress(m),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    /// IPv6 addresses of link `index`.
    pub fn addrs(&mut self, index: u32) -> Result<Vec<Addr>> {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet6;
        let replies = self.request(
            &|| "listing addresses".to_owned(),
            RouteNetlinkMessage::GetAddress(m),
            NLM_F_DUMP,
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|r| match r {
                RouteNetlinkMessage::NewAddress(a) if a.header.index == index => {
                    let mut ip = None;
                    let mut flags = u32::from(a.header.flags.bits());
                    for attr in &a.attributes {
                        match attr {
                            AddressAttribute::Address(IpAddr::V6(v)) => ip = Some(*v),
                            AddressAttribute::Flags(f) => flags = f.bits(),
                            _ => {}
                        }
                    }
                    ip.map(|ip| Addr {
                        ip,
                        prefix: a.header.prefix_len,
                        flags,
                    })
                }
                _ => None,
            })
            .collect())
    }

    pub fn add_route(&mut self, r: &NewRoute) -> Result<()> {
        let mut m = RouteMessage::default();
        m.header = route_header(r.dst_len);
        if let Some(t) = r.table {
            if t < 256 {
                m.header.table = t as u8;
            } else {
                m.header.table = 0;
                m.attributes.push(RouteAttribute::Table(t));
            }
        }
        m.header.scope = match r.scope {
            Some(s) => RouteScope::from(s),
            None if r.scope_link => RouteScope::Link,
            None => RouteScope::Universe,
        };
        m.attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet6(r.dst)));
        m.attributes.push(RouteAttribute::Oif(r.oif));
        if let Some(gw) = r.gw {
            m.attributes
                .push(RouteAttribute::Gateway(RouteAddress::Inet6(gw)));
        }
        if let Some(src) = r.src {
            m.attributes
                .push(RouteAttribute::PrefSource(RouteAddress::Inet6(src)));
        }
        if let Some(p) = r.priority {
            m.attributes.push(RouteAttribute::Priority(p));
        }
        let mut metrics = Vec::new();
        if let Some(mtu) = r.mtu.filter(|m| *m > 0) {
            metrics.push(RouteMetric::Mtu(mtu));
        }
        if let Some(mss) = r.advmss.filter(|m| *m > 0) {
            metrics.push(RouteMetric::Advmss(mss));
        }
        if !metrics.is_empty() {
            m.attributes.push(RouteAttribute::Metrics(metrics));
        }
        let (dst, len) = (r.dst, r.dst_len);
        self.request(
            &|| format!("adding route {dst}/{len} (dev #{})", r.oif),
            RouteNetlinkMessage::NewRoute(m),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    /// All IPv6 unicast routes of every table.
    pub fn routes(&mut self) -> Result<Vec<RouteInfo>> {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet6;
        let replies = self.request(
            &|| "listing routes".to_owned(),
            RouteNetlinkMessage::GetRoute(m),
            NLM_F_DUMP,
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|r| match r {
                RouteNetlinkMessage::NewRoute(m) => Some(to_route(&m)),
                _ => None,
            })
            .collect())
    }

    /// The output interface the kernel would use for `dst` (`ip route get`), if routable.
    pub fn route_get(&mut self, dst: Ipv6Addr) -> Result<Option<u32>> {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet6;
        m.header.destination_prefix_length = 128;
        m.attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet6(dst)));
        match self.request(
            &|| format!("route lookup for {dst}"),
            RouteNetlinkMessage::GetRoute(m),
            0,
        ) {
            Ok(r) => Ok(r.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewRoute(m) => to_route(&m).oif,
                _ => None,
            })),
            Err(Error::Netlink { source, .. })
                if matches!(
                    source.raw_os_error(),
                    Some(libc::ENETUNREACH) | Some(libc::EHOSTUNREACH)
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

fn route_header(dst_len: u8) -> RouteHeader {
    RouteHeader {
        address_family: AddressFamily::Inet6,
        destination_prefix_length: dst_len,
        table: RouteHeader::RT_TABLE_MAIN,
        protocol: RouteProtocol::Boot,
        scope: RouteScope::Universe,
        kind: RouteType::Unicast,
        ..Default::default()
    }
}

fn to_link(l: &LinkMessage) -> Link {
    let mut out = Link {
        index: l.header.index,
        up: l.header.flags.contains(LinkFlags::Up),
        ..Default::default()
    };
    for a in &l.attributes {
        match a {
            LinkAttribute::IfName(n) => out.name = n.clone(),
            LinkAttribute::Address(m) => out.mac = m.clone(),
            LinkAttribute::Mtu(m) => out.mtu = *m,
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Kind(k) = i {
                        out.kind = Some(k.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    out
}

fn to_route(m: &RouteMessage) -> RouteInfo {
    let mut r = RouteInfo {
        dst_len: m.header.destination_prefix_length,
        table: u32::from(m.header.table),
        ..Default::default()
    };
    for a in &m.attributes {
        match a {
            RouteAttribute::Destination(RouteAddress::Inet6(d)) => r.dst = Some(*d),
            RouteAttribute::Gateway(RouteAddress::Inet6(g)) => r.gw = Some(*g),
            RouteAttribute::Oif(i) => r.oif = Some(*i),
            RouteAttribute::Table(t) => r.table = *t,
            RouteAttribute::Metrics(ms) => {
                for metric in ms {
                    match metric {
                        RouteMetric::Mtu(v) => r.mtu = Some(*v),
                        RouteMetric::Advmss(v) => r.advmss = Some(*v),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    r
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
