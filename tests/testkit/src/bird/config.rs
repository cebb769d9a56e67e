//! A plain BIRD 2 speaker's configuration: static routes announced over eBGP, nothing
//! imported. What an operator would write by hand to announce a prefix, and the floor the
//! agent's own rendering is measured against.

use std::{
    fmt::Write as _,
    net::{Ipv4Addr, Ipv6Addr},
};

use ipnet::Ipv6Net;

/// One BGP session of the speaker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub addr: Ipv6Addr,
    pub asn: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BirdConfig {
    pub router_id: Ipv4Addr,
    pub asn: u32,
    /// The session's source address (the next hop the peers get).
    pub source: Ipv6Addr,
    pub peers: Vec<Peer>,
    /// Announced as blackhole routes of a `static` protocol.
    pub routes: Vec<Ipv6Net>,
    /// `graceful restart on` with this restart time (seconds); off when `None`.
    pub graceful_restart: Option<u32>,
}

/// The static protocol whose routes, and only those, are exported.
const STATIC: &str = "slt_routes";

impl BirdConfig {
    pub fn new(router_id: Ipv4Addr, asn: u32, source: Ipv6Addr) -> Self {
        Self {
            router_id,
            asn,
            source,
            peers: Vec::new(),
            routes: Vec::new(),
            graceful_restart: Some(120),
        }
    }

    pub fn peer(mut self, addr: Ipv6Addr, asn: u32) -> Self {
        self.peers.push(Peer { addr, asn });
        self
    }

    pub fn routes(mut self, routes: impl IntoIterator<Item = Ipv6Net>) -> Self {
        self.routes = routes.into_iter().collect();
        self
    }

    /// BIRD's configuration text; logging goes to stderr (the daemon's log file).
    pub fn render(&self) -> String {
        let mut c = String::new();
        let _ = writeln!(c, "log stderr all;");
        let _ = writeln!(c, "router id {};", self.router_id);
        // Interfaces: a BGP session is direct only over an interface BIRD knows.
        let _ = writeln!(c, "protocol device {{ }}");
        let _ = writeln!(c, "protocol static {STATIC} {{");
        let _ = writeln!(c, "  ipv6;");
        for r in &self.routes {
            let _ = writeln!(c, "  route {r} blackhole;");
        }
        let _ = writeln!(c, "}}");
        for (i, p) in self.peers.iter().enumerate() {
            let _ = writeln!(c, "protocol bgp slt_peer{i} {{");
            let _ = writeln!(c, "  local {} as {};", self.source, self.asn);
            let _ = writeln!(c, "  neighbor {} as {};", p.addr, p.asn);
            // BIRD waits 5 s before its first attempt by default; tests start both ends at once.
            let _ = writeln!(c, "  connect delay time 1;");
            let _ = writeln!(c, "  connect retry time 2;");
            if let Some(t) = self.graceful_restart {
                let _ = writeln!(c, "  graceful restart on;");
                let _ = writeln!(c, "  graceful restart time {t};");
            }
            let _ = writeln!(c, "  ipv6 {{");
            let _ = writeln!(c, "    import none;");
            let _ = writeln!(c, "    export where proto = \"{STATIC}\";");
            let _ = writeln!(c, "  }};");
            let _ = writeln!(c, "}}");
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_routes_exported_to_each_peer() {
        let c = BirdConfig::new(
            Ipv4Addr::new(10, 0, 0, 2),
            64601,
            "fd00:f::2".parse().unwrap(),
        )
        .peer("fd00:f::1".parse().unwrap(), 65000)
        .routes(["2001:db8::1/128".parse().unwrap()]);
        assert_eq!(
            c.render(),
            "log stderr all;\n\
             router id 10.0.0.2;\n\
             protocol device { }\n\
             protocol static slt_routes {\n  \
               ipv6;\n  \
               route 2001:db8::1/128 blackhole;\n\
             }\n\
             protocol bgp slt_peer0 {\n  \
               local fd00:f::2 as 64601;\n  \
               neighbor fd00:f::1 as 65000;\n  \
               connect delay time 1;\n  \
               connect retry time 2;\n  \
               graceful restart on;\n  \
               graceful restart time 120;\n  \
               ipv6 {\n    \
                 import none;\n    \
                 export where proto = \"slt_routes\";\n  \
               };\n\
             }\n"
        );
    }
}
