//! BIRD 2's whole configuration for this node, from its resolved BGP settings and what it
//! announces. Pure and deterministic (peers by name, announcements by prefix), so the agent
//! rewrites the file and asks BIRD to `configure` only when the text changes, and golden files
//! (`testdata/`, checked with `bird -p`) pin it.
//!
//! - `protocol static sixlane_announce`: one blackhole route per announcement, carrying its
//!   communities and local preference. The routes exist only in BIRD's table: the kernel
//!   protocol exports nothing but BGP routes, and the node's datapath answers for these
//!   addresses. Changing them is a `configure` that re-announces, no session reset.
//! - One `protocol bgp peer_<name>` per peer: a directly connected neighbour (on a link of
//!   the node; multihop is not supported), graceful restart on, BFD if asked, an `ipv6`
//!   channel that exports exactly the static routes above and imports only `bgp.import`'s
//!   prefixes (and their longer ones), or nothing.
//! - With `routing.mode: bgp`, `protocol kernel sixlane_kernel`: the BGP routes into the
//!   kernel table, ECMP across peers offering equal paths, kept while BIRD restarts
//!   gracefully. BIRD marks its kernel routes `proto bird` (12) — it has no setting for the
//!   protocol number — and only ever touches those, never the agent's or anyone else's.
//!
//! Passwords are in the text: whoever writes it keeps the file private (mode 0600).

use std::fmt::Write as _;

use ipnet::Ipv6Net;

use crate::routing::{
    announce::Announcement,
    bird::password::Passwords,
    config::{Community, NodeBgp, PeerConfig},
};

/// The static protocol holding the announcements (`show route protocol sixlane_announce`).
pub const STATIC_PROTOCOL: &str = "sixlane_announce";
/// The kernel protocol (`routing.mode: bgp`).
pub const KERNEL_PROTOCOL: &str = "sixlane_kernel";

/// BIRD's protocol for the peer called `name`.
pub fn peer_protocol(name: &str) -> String {
    format!("peer_{name}")
}

/// Where learned routes go in the kernel (`routing.mode: bgp`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelExport {
    /// `routing.table`.
    pub table: u32,
}

/// Everything the configuration is made of.
#[derive(Clone, Copy, Debug)]
pub struct Render<'a> {
    pub node: &'a NodeBgp,
    pub announcements: &'a [Announcement],
    /// `bgp.import`: what peers' routes are accepted (empty: none).
    pub import: &'a [Ipv6Net],
    /// `Some` with `routing.mode: bgp`.
    pub kernel: Option<KernelExport>,
    pub graceful_restart_secs: u32,
    /// By peer name ([`super::password::read`]).
    pub passwords: &'a Passwords,
}

/// BIRD's configuration text.
pub fn render(r: &Render<'_>) -> String {
    let mut out = String::new();
    out.push_str(concat!(
        "# BIRD 2 configuration written by sixlane-agent from its bgp settings and the\n",
        "# cluster's state: do not edit, it is rewritten on every change.\n",
        "log stderr { info, remote, warning, error, auth, fatal, bug };\n",
        "# `show protocols` gives dates and times (the agent reads when sessions changed state).\n",
        "timeformat protocol iso long;\n",
    ));
    let _ = writeln!(out, "router id {};", r.node.router_id);
    out.push_str(concat!(
        "\n# Interfaces and their addresses: the BGP sessions are on connected links.\n",
        "protocol device sixlane_device {\n}\n",
    ));
    announcements(&mut out, r.announcements);
    if r.node.peers.iter().any(|p| p.bfd) {
        out.push_str("\nprotocol bfd sixlane_bfd {\n}\n");
    }
    if let Some(k) = r.kernel {
        kernel(&mut out, k);
    }
    for peer in &r.node.peers {
        bgp(&mut out, r, peer);
    }
    out
}

fn announcements(out: &mut String, list: &[Announcement]) {
    let _ = write!(
        out,
        concat!(
            "\n# What this node announces. Blackholes in BIRD's table only: the kernel protocol\n",
            "# exports BGP routes alone.\n",
            "protocol static {} {{\n",
            "  ipv6;\n",
        ),
        STATIC_PROTOCOL
    );
    for a in list {
        let mut attrs = String::new();
        for c in &a.communities {
            match c {
                Community::Standard(x, y) => {
                    let _ = write!(attrs, " bgp_community.add(({x}, {y}));");
                }
                Community::Large(x, y, z) => {
                    let _ = write!(attrs, " bgp_large_community.add(({x}, {y}, {z}));");
                }
            }
        }
        if let Some(p) = a.local_pref {
            let _ = write!(attrs, " bgp_local_pref = {p};");
        }
        let attrs = if attrs.is_empty() {
            String::new()
        } else {
            format!(" {{{attrs} }}")
        };
        let _ = writeln!(
            out,
            "  route {} blackhole{attrs};  # {}",
            a.prefix,
            a.kind.name()
        );
    }
    out.push_str("}\n");
}

fn kernel(out: &mut String, k: KernelExport) {
    let _ = write!(
        out,
        concat!(
            "\n# routing.mode: bgp: the routes learned from peers into the kernel (as proto bird),\n",
            "# one ECMP route where peers offer equal paths, kept across a graceful restart.\n",
            "protocol kernel {} {{\n",
            "  ipv6 {{\n",
            "    import none;\n",
            "    export where source = RTS_BGP;\n",
            "  }};\n",
            "  kernel table {};\n",
            "  merge paths on;\n",
            "  graceful restart on;\n",
            "}}\n",
        ),
        KERNEL_PROTOCOL, k.table
    );
}

fn bgp(out: &mut String, r: &Render<'_>, peer: &PeerConfig) {
    let _ = writeln!(out, "\nprotocol bgp {} {{", peer_protocol(&peer.name));
    let _ = writeln!(out, "  local as {};", r.node.asn);
    let port = peer.port.map(|p| format!(" port {p}")).unwrap_or_default();
    let _ = writeln!(out, "  neighbor {}{port} as {};", peer.address, peer.asn);
    out.push_str("  direct;\n");
    if let Some(h) = peer.hold_time {
        let _ = writeln!(out, "  hold time {h};");
    }
    if let Some(k) = peer.keepalive_time {
        let _ = writeln!(out, "  keepalive time {k};");
    }
    if let Some(pw) = r.passwords.get(&peer.name) {
        let _ = writeln!(out, "  password \"{}\";", pw.as_str());
    }
    if peer.bfd {
        out.push_str("  bfd on;\n");
    }
    let _ = writeln!(
        out,
        "  graceful restart on;\n  graceful restart time {};",
        r.graceful_restart_secs
    );
    let ebgp = peer.asn != r.node.asn;
    if ebgp && !r.import.is_empty() {
        // The nodes usually share one ASN: the router passes node A's pod CIDR to node B with
        // that ASN in the path, which B would take for a loop. The import list keeps loops out.
        out.push_str("  allow local as 1;\n");
    }
    out.push_str("  ipv6 {\n");
    // What the import filter refuses stays visible (`show route filtered`): a router sending
    // prefixes outside `bgp.import` is the usual reason a route is missing.
    out.push_str("    import keep filtered on;\n");
    if r.import.is_empty() {
        out.push_str("    import none;\n");
    } else {
        let set: Vec<String> = r.import.iter().map(|n| format!("{n}+")).collect();
        let _ = writeln!(out, "    import where net ~ [ {} ];", set.join(", "));
    }
    let _ = writeln!(out, "    export where proto = \"{STATIC_PROTOCOL}\";");
    out.push_str("  };\n}\n");
}

#[cfg(test)]
mod tests;
