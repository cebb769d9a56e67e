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
    /// TCP MD5 signature (RFC 2385), as the router has it.
    pub password: Option<String>,
    /// BFD on the session (a `bfd` protocol is added when any peer has it).
    pub bfd: bool,
}

impl Peer {
    pub fn new(addr: Ipv6Addr, asn: u32) -> Self {
        Self {
            addr,
            asn,
            password: None,
            bfd: false,
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

    pub fn peer(mut self, peer: Peer) -> Self {
        self.peers.push(peer);
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
        // Sessions coming and going, in the log a failed test quotes.
        let _ = writeln!(c, "debug protocols {{ states, events }};");
        // Interfaces: a BGP session is direct only over an interface BIRD knows.
        let _ = writeln!(c, "protocol device {{ }}");
        let _ = writeln!(c, "protocol static {STATIC} {{");
        let _ = writeln!(c, "  ipv6;");
        for r in &self.routes {
            let _ = writeln!(c, "  route {r} blackhole;");
        }
        let _ = writeln!(c, "}}");
        if self.peers.iter().any(|p| p.bfd) {
            let _ = writeln!(c, "protocol bfd {{ }}");
        }
        for (i, p) in self.peers.iter().enumerate() {
            let _ = writeln!(c, "protocol bgp slt_peer{i} {{");
            let _ = writeln!(c, "  local {} as {};", self.source, self.asn);
            let _ = writeln!(c, "  neighbor {} as {};", p.addr, p.asn);
            // BIRD waits 5 s before its first attempt by default; tests start both ends at once.
            let _ = writeln!(c, "  connect delay time 1;");
            let _ = writeln!(c, "  connect retry time 2;");
            // After an error (a BFD flap, a refused OPEN) BIRD waits 60 s or more by default
            // before trying again; a test has not that long.
            let _ = writeln!(c, "  error wait time 1, 2;");
            if let Some(pw) = &p.password {
                let _ = writeln!(c, "  password \"{pw}\";");
            }
            if p.bfd {
                let _ = writeln!(c, "  bfd on;");
            }
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
        .peer(Peer::new("fd00:f::1".parse().unwrap(), 65000))
        .routes(["2001:db8::1/128".parse().unwrap()]);
        assert_eq!(
            c.render(),
            "log stderr all;\n\
             router id 10.0.0.2;\n\
             debug protocols { states, events };\n\
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
               error wait time 1, 2;\n  \
               graceful restart on;\n  \
               graceful restart time 120;\n  \
               ipv6 {\n    \
                 import none;\n    \
                 export where proto = \"slt_routes\";\n  \
               };\n\
             }\n"
        );
    }

    #[test]
    fn password_and_bfd() {
        let c = BirdConfig::new(
            Ipv4Addr::new(10, 0, 0, 2),
            64601,
            "fd00:f::2".parse().unwrap(),
        )
        .peer(
            Peer::new("fd00:f::1".parse().unwrap(), 65000)
                .password("s3cret")
                .bfd(),
        )
        .peer(Peer::new("fd00:f::9".parse().unwrap(), 65001));
        let text = c.render();
        assert_eq!(text.matches("protocol bfd { }\n").count(), 1, "{text}");
        assert_eq!(
            text.matches("  password \"s3cret\";\n").count(),
            1,
            "{text}"
        );
        assert_eq!(text.matches("  bfd on;\n").count(), 1, "{text}");
        assert!(text.find("protocol bfd").unwrap() < text.find("protocol bgp").unwrap());
    }
}
