//! A namespace's IPv6 kernel FIB as `ip -6 -j route` prints it: what a router really forwards
//! with, read without asking the routing daemon that put it there.

use std::net::Ipv6Addr;

use ipnet::Ipv6Net;
use serde::Deserialize;

use crate::{Error, NetNs, Result};

/// One route of the main table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub dst: Ipv6Net,
    /// `bgp`, `kernel`, `static`, `boot`, ... (iproute2's names).
    pub protocol: String,
    /// One entry per path (several: ECMP).
    pub nexthops: Vec<Nexthop>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Nexthop {
    pub gateway: Option<Ipv6Addr>,
    pub dev: Option<String>,
}

impl Route {
    /// The gateways, sorted.
    pub fn gateways(&self) -> Vec<Ipv6Addr> {
        let mut v: Vec<Ipv6Addr> = self.nexthops.iter().filter_map(|n| n.gateway).collect();
        v.sort();
        v
    }
}

#[derive(Deserialize)]
struct RawNexthop {
    gateway: Option<String>,
    dev: Option<String>,
}

#[derive(Deserialize)]
struct RawRoute {
    dst: String,
    #[serde(default)]
    protocol: String,
    gateway: Option<String>,
    dev: Option<String>,
    nexthops: Option<Vec<RawNexthop>>,
}

/// What printed the text these parse.
const IP_ROUTE: &str = "ip -6 -j route";

fn addr(text: &str) -> Result<Ipv6Addr> {
    text.parse().map_err(|source| Error::Address {
        what: IP_ROUTE,
        text: text.to_owned(),
        source,
    })
}

/// `dst` as iproute2 prints it: `default`, a prefix, or a bare address for a /128.
fn dst(text: &str) -> Result<Ipv6Net> {
    if text == "default" {
        return Ok(Ipv6Net::default());
    }
    if text.contains('/') {
        return text.parse().map_err(|source| Error::Prefix {
            what: IP_ROUTE,
            text: text.to_owned(),
            source,
        });
    }
    Ok(Ipv6Net::from(addr(text)?))
}

fn gateway(text: Option<String>) -> Result<Option<Ipv6Addr>> {
    text.map(|g| addr(&g)).transpose()
}

/// Decodes `ip -6 -j route` output.
pub fn parse(json: &str) -> Result<Vec<Route>> {
    let raw: Vec<RawRoute> = serde_json::from_str(json).map_err(|source| Error::Json {
        what: IP_ROUTE.into(),
        source,
    })?;
    raw.into_iter()
        .map(|r| {
            let nexthops = match r.nexthops {
                Some(list) => list
                    .into_iter()
                    .map(|n| {
                        Ok(Nexthop {
                            gateway: gateway(n.gateway)?,
                            dev: n.dev,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?,
                None => vec![Nexthop {
                    gateway: gateway(r.gateway)?,
                    dev: r.dev,
                }],
            };
            Ok(Route {
                dst: dst(&r.dst)?,
                protocol: r.protocol,
                nexthops,
            })
        })
        .collect()
}

/// The main table's IPv6 routes in `ns`.
pub fn routes(ns: &NetNs) -> Result<Vec<Route>> {
    parse(&ns.exec("ip", &["-6", "-j", "route", "show", "table", "main"])?)
}

/// The route to exactly `prefix` in `ns`'s main table, if any.
pub fn route(ns: &NetNs, prefix: Ipv6Net) -> Result<Option<Route>> {
    Ok(routes(ns)?.into_iter().find(|r| r.dst == prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_multipath_default_and_host_routes() {
        let routes = parse(
            r#"[{"dst":"2001:db8::1","nhid":21,"gateway":"fe80::2","dev":"sltr0",
                 "protocol":"bgp","metric":20,"flags":[],"pref":"medium"},
                {"dst":"2001:db8:96::/108","protocol":"bgp","metric":20,"flags":[],
                 "nexthops":[{"gateway":"fe80::3","dev":"sltr1","weight":1,"flags":[]},
                             {"gateway":"fe80::2","dev":"sltr0","weight":1,"flags":[]}]},
                {"dst":"fd00:f::/64","dev":"sltr0","protocol":"kernel","metric":256,"flags":[]},
                {"dst":"default","gateway":"fd00:f::1","dev":"eth0","flags":[]}]"#,
        )
        .unwrap();
        assert_eq!(routes.len(), 4);
        assert_eq!(routes[0].dst, "2001:db8::1/128".parse::<Ipv6Net>().unwrap());
        assert_eq!(routes[0].protocol, "bgp");
        assert_eq!(
            routes[0].gateways(),
            ["fe80::2".parse::<Ipv6Addr>().unwrap()]
        );
        assert_eq!(
            routes[1].gateways(),
            [
                "fe80::2".parse::<Ipv6Addr>().unwrap(),
                "fe80::3".parse().unwrap()
            ]
        );
        assert_eq!(routes[2].nexthops[0].gateway, None);
        assert_eq!(routes[2].nexthops[0].dev.as_deref(), Some("sltr0"));
        assert_eq!(routes[3].dst, Ipv6Net::default());
        assert!(parse(r#"[{"dst":"nonsense"}]"#).is_err());
    }
}
