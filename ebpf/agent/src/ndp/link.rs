//! The uplink's index and Ethernet address, what the datapath puts in its advertisements.

use crate::{Error, Result};

use super::owned::Uplink;

/// Looks `name` up in the agent's network namespace.
pub fn uplink(name: &str) -> Result<Uplink> {
    let err = |what, source| Error::Ndp {
        what,
        uplink: name.to_owned(),
        source,
    };
    let ifindex = nix::net::if_::if_nametoindex(name)
        .map_err(|e| err("looking up the interface index", e.into()))?;
    let addrs =
        nix::ifaddrs::getifaddrs().map_err(|e| err("listing interface addresses", e.into()))?;
    let mac = addrs
        .filter(|a| a.interface_name == name)
        .find_map(|a| a.address?.as_link_addr()?.addr())
        .ok_or_else(|| {
            err(
                "reading the Ethernet address",
                std::io::Error::other("the interface has no link-layer address"),
            )
        })?;
    Ok(Uplink { ifindex, mac })
}
