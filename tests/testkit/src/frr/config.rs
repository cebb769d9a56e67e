//! The router's configuration, rendered as FRR's own configuration files (one per daemon:
//! bgpd and bfdd read only theirs).

use std::{
    fmt::Write as _,
    net::{Ipv4Addr, Ipv6Addr},
};

/// The ASN a neighbor must have: a number, or FRR's `external` (any but ours) or `internal`
/// (ours).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoteAs {
    Asn(u32),
    External,
    Internal,
}

impl std::fmt::Display for RemoteAs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Asn(n) => write!(f, "{n}"),
            Self::External => f.write_str("external"),
            Self::Internal => f.write_str("internal"),
        }
    }
}

/// What the router does for a peer that restarts (RFC 4724).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GracefulRestart {
    /// FRR's default: helper only (keeps a restarting peer's routes, stale, until it is back
    /// or the restart time runs out).
    #[default]
    Helper,
    /// `bgp graceful-restart`: helper, and restarting itself gracefully.
    Full,
    /// `bgp graceful-restart-disable`: a peer's routes go the moment its session does.
    Disabled,
}

/// One BGP neighbor of the router, IPv6 unicast activated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Neighbor {
    pub addr: Ipv6Addr,
    pub remote_as: RemoteAs,
    pub password: Option<String>,
    /// `neighbor … bfd` (bfdd is started when any neighbor has it).
    pub bfd: bool,
    /// (keepalive, hold) seconds; FRR's defaults when `None`.
    pub timers: Option<(u16, u16)>,
    /// Seconds between connection attempts. FRR's default (120 s) would make a test whose
    /// speaker starts after the router wait minutes: tests use a second.
    pub connect_retry: u16,
}

impl Neighbor {
    pub fn new(addr: Ipv6Addr, remote_as: RemoteAs) -> Self {
        Self {
            addr,
            remote_as,
            password: None,
            bfd: false,
            timers: None,
            connect_retry: 1,
        }
    }

    pub fn password(mut self, password: &str) -> Self {
        self.password = Some(password.to_owned());
        self
    }

    pub fn bfd(mut self) -> Self {
        self.bfd = true;
        self
    }

    pub fn timers(mut self, keepalive: u16, hold: u16) -> Self {
        self.timers = Some((keepalive, hold));
        self
    }
}

/// An upstream router as operators configure one in front of a cluster: eBGP (or iBGP) with
/// each node, IPv6 unicast only, ECMP across nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrrConfig {
    pub hostname: String,
    pub asn: u32,
    pub router_id: Ipv4Addr,
    pub neighbors: Vec<Neighbor>,
    /// `maximum-paths` (eBGP ECMP) in the IPv6 unicast family; 1 = no ECMP.
    pub maximum_paths: u16,
    /// `bgp bestpath as-path multipath-relax`: paths through different neighbor ASNs (a
    /// private ASN per node) count as equal.
    pub multipath_relax: bool,
    pub graceful_restart: GracefulRestart,
}

impl FrrConfig {
    /// A router with ASN `asn`, no neighbors, ECMP over up to 8 paths with multipath-relax.
    pub fn new(asn: u32, router_id: Ipv4Addr) -> Self {
        Self {
            hostname: "router".into(),
            asn,
            router_id,
            neighbors: Vec::new(),
            maximum_paths: 8,
            multipath_relax: true,
            graceful_restart: GracefulRestart::default(),
        }
    }

    pub fn neighbor(mut self, n: Neighbor) -> Self {
        self.neighbors.push(n);
        self
    }

    pub fn maximum_paths(mut self, n: u16) -> Self {
        self.maximum_paths = n;
        self
    }

    pub fn multipath_relax(mut self, on: bool) -> Self {
        self.multipath_relax = on;
        self
    }

    pub fn graceful_restart(mut self, gr: GracefulRestart) -> Self {
        self.graceful_restart = gr;
        self
    }

    /// Whether bfdd must run.
    pub fn needs_bfd(&self) -> bool {
        self.neighbors.iter().any(|n| n.bfd)
    }

    /// zebra's configuration: logging only (the kernel is its source of interfaces).
    pub fn zebra_conf(&self) -> String {
        header(&self.hostname)
    }

    /// bfdd's configuration: logging only (bgpd registers each `neighbor … bfd` session).
    pub fn bfdd_conf(&self) -> String {
        header(&self.hostname)
    }

    /// bgpd's configuration. Policy: `no bgp ebgp-requires-policy`, the router accepts and
    /// re-advertises everything (RFC 8212 filters are the operator's business, not what the
    /// tests examine).
    pub fn bgpd_conf(&self) -> String {
        let mut c = header(&self.hostname);
        let _ = writeln!(c, "router bgp {}", self.asn);
        let _ = writeln!(c, " bgp router-id {}", self.router_id);
        let _ = writeln!(c, " no bgp ebgp-requires-policy");
        let _ = writeln!(c, " no bgp default ipv4-unicast");
        let _ = writeln!(c, " bgp log-neighbor-changes");
        if self.multipath_relax {
            let _ = writeln!(c, " bgp bestpath as-path multipath-relax");
        }
        match self.graceful_restart {
            GracefulRestart::Helper => {}
            GracefulRestart::Full => {
                let _ = writeln!(c, " bgp graceful-restart");
            }
            GracefulRestart::Disabled => {
                let _ = writeln!(c, " bgp graceful-restart-disable");
            }
        }
        for n in &self.neighbors {
            let a = n.addr;
            let _ = writeln!(c, " neighbor {a} remote-as {}", n.remote_as);
            if let Some(p) = &n.password {
                let _ = writeln!(c, " neighbor {a} password {p}");
            }
            if let Some((keepalive, hold)) = n.timers {
                let _ = writeln!(c, " neighbor {a} timers {keepalive} {hold}");
            }
            let _ = writeln!(c, " neighbor {a} timers connect {}", n.connect_retry);
            if n.bfd {
                let _ = writeln!(c, " neighbor {a} bfd");
            }
        }
        let _ = writeln!(c, " !");
        let _ = writeln!(c, " address-family ipv6 unicast");
        let _ = writeln!(c, "  maximum-paths {}", self.maximum_paths);
        for n in &self.neighbors {
            let _ = writeln!(c, "  neighbor {} activate", n.addr);
        }
        let _ = writeln!(c, " exit-address-family");
        let _ = writeln!(c, "exit");
        let _ = writeln!(c, "!");
        c
    }
}

/// Every daemon logs to stdout (the daemon's log file, see `daemon.rs`).
fn header(hostname: &str) -> String {
    format!("hostname {hostname}\nlog stdout informational\n!\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bgpd_conf_has_each_neighbor_activated_for_ipv6_with_its_options() {
        let n1: Ipv6Addr = "fd00:f::2".parse().unwrap();
        let n2: Ipv6Addr = "fd00:f::3".parse().unwrap();
        let c = FrrConfig::new(65000, Ipv4Addr::new(10, 255, 0, 1))
            .neighbor(Neighbor::new(n1, RemoteAs::Asn(64601)).password("s3cret"))
            .neighbor(Neighbor::new(n2, RemoteAs::External).bfd().timers(1, 3))
            .graceful_restart(GracefulRestart::Full);
        assert!(c.needs_bfd());
        assert_eq!(
            c.bgpd_conf(),
            "hostname router\n\
             log stdout informational\n\
             !\n\
             router bgp 65000\n \
             bgp router-id 10.255.0.1\n \
             no bgp ebgp-requires-policy\n \
             no bgp default ipv4-unicast\n \
             bgp log-neighbor-changes\n \
             bgp bestpath as-path multipath-relax\n \
             bgp graceful-restart\n \
             neighbor fd00:f::2 remote-as 64601\n \
             neighbor fd00:f::2 password s3cret\n \
             neighbor fd00:f::2 timers connect 1\n \
             neighbor fd00:f::3 remote-as external\n \
             neighbor fd00:f::3 timers 1 3\n \
             neighbor fd00:f::3 timers connect 1\n \
             neighbor fd00:f::3 bfd\n \
             !\n \
             address-family ipv6 unicast\n  \
             maximum-paths 8\n  \
             neighbor fd00:f::2 activate\n  \
             neighbor fd00:f::3 activate\n \
             exit-address-family\n\
             exit\n\
             !\n"
        );
    }

    #[test]
    fn without_relax_ecmp_or_graceful_restart() {
        let c = FrrConfig::new(65000, Ipv4Addr::new(10, 255, 0, 1))
            .maximum_paths(1)
            .multipath_relax(false)
            .graceful_restart(GracefulRestart::Disabled);
        let text = c.bgpd_conf();
        assert!(!text.contains("multipath-relax"), "{text}");
        assert!(text.contains(" bgp graceful-restart-disable\n"), "{text}");
        assert!(text.contains("  maximum-paths 1\n"), "{text}");
        assert!(!c.needs_bfd());
    }
}
