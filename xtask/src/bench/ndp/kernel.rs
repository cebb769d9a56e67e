//! The `kernel-proxy-*` modes: the node's kernel answers from a proxy entry for the pod's
//! address (`ip -6 neigh add proxy`) with `proxy_ndp` on the uplink, as operators set it up by
//! hand. With the default `proxy_delay` a multicast solicitation is answered after a random
//! delay (up to 0.8 s); a unicast one reaches the proxy code only with `all.proxy_ndp` (else it
//! is forwarded like any packet to the pod), so `kernel-proxy-0` sets that and `proxy_delay` 0.
//! Everything goes with the node's namespace.

use super::topo::{Link, POD};

/// How the proxy is set up.
#[derive(Clone, Copy)]
pub enum Proxy {
    /// `proxy_ndp` on the uplink only, `proxy_delay` left at its default.
    Default,
    /// `proxy_delay` 0 on the uplink, and `all.proxy_ndp`.
    Immediate,
}

pub fn start(link: &Link, how: Proxy) -> anyhow::Result<()> {
    let up = link.up();
    link.node
        .sysctl(&format!("net.ipv6.conf.{up}.proxy_ndp"), "1")?;
    if let Proxy::Immediate = how {
        link.node
            .sysctl(&format!("net.ipv6.neigh.{up}.proxy_delay"), "0")?;
        link.node.sysctl("net.ipv6.conf.all.proxy_ndp", "1")?;
    }
    link.node
        .ip(&["-6", "neigh", "add", "proxy", &POD.to_string(), "dev", up])?;
    Ok(())
}
