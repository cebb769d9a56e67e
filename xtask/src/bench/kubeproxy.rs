//! kube-proxy-shaped IPv6 service rulesets for the peers of the service benchmarks, written
//! the way kube-proxy writes them (not a copy of its code; the shapes follow KEP-3866 for
//! nftables mode and `pkg/proxy/iptables` for iptables mode):
//!
//! - **nftables**: one `service-ips` verdict map keyed by address . protocol . port (one lookup
//!   per packet), a chain per service port picking an endpoint with `numgen random`, a chain
//!   per endpoint marking hairpin traffic for masquerade and DNATing.
//! - **iptables**: `KUBE-SERVICES` with one rule per service port, walked linearly (the
//!   measured service is last: kube-proxy orders by map iteration, so this is the worst case),
//!   `KUBE-SVC-*` choosing with `statistic --probability`, `KUBE-SEP-*` doing the DNAT.
//!
//! Service `i` (1-based) is `fd00:96::<i>` with the given ports; every service but the last
//! points at addresses that do not exist; the last one is the benchmark's server.

use std::{fmt::Write as _, net::Ipv6Addr};

/// Pod CIDR for the "masquerade traffic from outside the cluster" rules.
pub const CLUSTER_CIDR: &str = "fd00:a::/64";

pub fn vip(i: usize) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0x96, 0, 0, 0, 0, (i >> 16) as u16, i as u16)
}

/// An endpoint of an unmeasured service: in the server's subnet, never assigned.
pub fn dead_endpoint(i: usize) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0xb, 0, 0, 0, 1, (i >> 16) as u16, i as u16)
}

/// The services of a ruleset: N services, the last one measured.
pub struct Rules<'a> {
    pub n: usize,
    /// Ports of every service (the measured one serves them all on `server`).
    pub ports: &'a [u16],
    pub server: Ipv6Addr,
}

impl Rules<'_> {
    fn endpoint(&self, i: usize) -> Ipv6Addr {
        if i == self.n {
            self.server
        } else {
            dead_endpoint(i)
        }
    }

    /// Whether service `i` has port `p` (unmeasured services have only the first port).
    fn ports_of(&self, i: usize) -> &[u16] {
        if i == self.n {
            self.ports
        } else {
            &self.ports[..1]
        }
    }

    fn nft_service(out: &mut String, i: usize, port: u16, ep: Ipv6Addr) {
        let _ = writeln!(
            out,
            "add chain ip6 slbench ep-{i}-{port}-0\n\
             add rule ip6 slbench ep-{i}-{port}-0 ip6 saddr {ep} jump mark-for-masquerade\n\
             add rule ip6 slbench ep-{i}-{port}-0 meta l4proto tcp dnat to [{ep}]:{port}\n\
             add chain ip6 slbench svc-{i}-{port}\n\
             add rule ip6 slbench svc-{i}-{port} numgen random mod 1 vmap {{ 0 : goto ep-{i}-{port}-0 }}"
        );
    }

    /// `nft -f` input: the whole table.
    pub fn nft(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "add table ip6 slbench\n\
             add map ip6 slbench service-ips { type ipv6_addr . inet_proto . inet_service : verdict ; }\n\
             add set ip6 slbench cluster-ips { type ipv6_addr ; }\n\
             add chain ip6 slbench mark-for-masquerade\n\
             add rule ip6 slbench mark-for-masquerade meta mark set meta mark | 0x4000\n\
             add chain ip6 slbench masquerading { type nat hook postrouting priority srcnat ; policy accept ; }\n\
             add rule ip6 slbench masquerading meta mark & 0x4000 == 0 return\n\
             add rule ip6 slbench masquerading meta mark set meta mark ^ 0x4000\n\
             add rule ip6 slbench masquerading masquerade fully-random\n\
             add chain ip6 slbench services\n\
             add rule ip6 slbench services ip6 daddr . meta l4proto . th dport vmap @service-ips\n\
             add chain ip6 slbench nat-prerouting { type nat hook prerouting priority dstnat ; policy accept ; }\n\
             add rule ip6 slbench nat-prerouting jump services\n\
             add chain ip6 slbench nat-output { type nat hook output priority -100 ; policy accept ; }\n\
             add rule ip6 slbench nat-output jump services\n",
        );
        for i in 1..=self.n {
            for &p in self.ports_of(i) {
                Self::nft_service(&mut out, i, p, self.endpoint(i));
            }
        }
        // Elements in batches: one huge element list is slow to parse for nft 1.0.
        let mut elems: Vec<String> = Vec::new();
        let mut ips: Vec<String> = Vec::new();
        for i in 1..=self.n {
            ips.push(vip(i).to_string());
            for &p in self.ports_of(i) {
                elems.push(format!("{} . tcp . {p} : goto svc-{i}-{p}", vip(i)));
            }
        }
        for chunk in elems.chunks(2000) {
            let _ = writeln!(
                out,
                "add element ip6 slbench service-ips {{ {} }}",
                chunk.join(", ")
            );
        }
        for chunk in ips.chunks(2000) {
            let _ = writeln!(
                out,
                "add element ip6 slbench cluster-ips {{ {} }}",
                chunk.join(", ")
            );
        }
        out
    }

    /// `nft -f` input adding service `n + 1` to a loaded table (kube-proxy's partial sync).
    pub fn nft_add_one(&self) -> String {
        let i = self.n + 1;
        let p = self.ports[0];
        let mut out = String::new();
        Self::nft_service(&mut out, i, p, dead_endpoint(i));
        let _ = writeln!(
            out,
            "add element ip6 slbench service-ips {{ {} . tcp . {p} : goto svc-{i}-{p} }}\n\
             add element ip6 slbench cluster-ips {{ {} }}",
            vip(i),
            vip(i)
        );
        out
    }

    fn ipt_chains(out: &mut String, i: usize, port: u16) {
        let _ = writeln!(
            out,
            ":KUBE-SVC-{i}-{port} - [0:0]\n:KUBE-SEP-{i}-{port} - [0:0]"
        );
    }

    fn ipt_service(out: &mut String, i: usize, port: u16, ep: Ipv6Addr) {
        let v = vip(i);
        let _ = writeln!(
            out,
            "-A KUBE-SVC-{i}-{port} ! -s {CLUSTER_CIDR} -d {v}/128 -p tcp -m comment --comment \"bench/svc{i}:p{port} cluster IP\" -m tcp --dport {port} -j KUBE-MARK-MASQ\n\
             -A KUBE-SVC-{i}-{port} -m comment --comment \"bench/svc{i}:p{port} -> [{ep}]:{port}\" -j KUBE-SEP-{i}-{port}\n\
             -A KUBE-SEP-{i}-{port} -s {ep}/128 -m comment --comment \"bench/svc{i}:p{port}\" -j KUBE-MARK-MASQ\n\
             -A KUBE-SEP-{i}-{port} -p tcp -m comment --comment \"bench/svc{i}:p{port}\" -m tcp -j DNAT --to-destination [{ep}]:{port}"
        );
    }

    fn ipt_services_chain(&self, out: &mut String, upto: usize) {
        for i in 1..=upto {
            for &p in self.ports_of(i) {
                let _ = writeln!(
                    out,
                    "-A KUBE-SERVICES -d {}/128 -p tcp -m comment --comment \"bench/svc{i}:p{p} cluster IP\" -m tcp --dport {p} -j KUBE-SVC-{i}-{p}",
                    vip(i)
                );
            }
        }
    }

    /// `ip6tables-restore` input: the whole nat table.
    pub fn iptables(&self) -> String {
        let mut out = String::from(
            "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
             :KUBE-SERVICES - [0:0]\n:KUBE-POSTROUTING - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n",
        );
        for i in 1..=self.n {
            for &p in self.ports_of(i) {
                Self::ipt_chains(&mut out, i, p);
            }
        }
        out.push_str(
            "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
             -A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
             -A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n\
             -A KUBE-MARK-MASQ -j MARK --or-mark 0x4000\n\
             -A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n\
             -A KUBE-POSTROUTING -j MARK --xor-mark 0x4000\n\
             -A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully\n",
        );
        self.ipt_services_chain(&mut out, self.n);
        for i in 1..=self.n {
            for &p in self.ports_of(i) {
                Self::ipt_service(&mut out, i, p, self.endpoint(i));
            }
        }
        out.push_str("COMMIT\n");
        out
    }

    /// `ip6tables-restore --noflush` input adding service `n + 1`: the whole `KUBE-SERVICES`
    /// chain again plus the new chains (kube-proxy's MinimizeIPTablesRestore shape).
    pub fn iptables_add_one(&self) -> String {
        let i = self.n + 1;
        let p = self.ports[0];
        let mut out = String::from("*nat\n:KUBE-SERVICES - [0:0]\n");
        Self::ipt_chains(&mut out, i, p);
        self.ipt_services_chain(&mut out, self.n);
        let _ = writeln!(
            out,
            "-A KUBE-SERVICES -d {}/128 -p tcp -m comment --comment \"bench/svc{i}:p{p} cluster IP\" -m tcp --dport {p} -j KUBE-SVC-{i}-{p}",
            vip(i)
        );
        Self::ipt_service(&mut out, i, p, dead_endpoint(i));
        out.push_str("COMMIT\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(n: usize) -> Rules<'static> {
        Rules {
            n,
            ports: &[7000, 5201],
            server: "fd00:b::2".parse().unwrap(),
        }
    }

    #[test]
    fn nft_has_one_element_per_service_port_and_the_server_last() {
        let t = rules(3).nft();
        assert_eq!(t.matches(": goto svc-").count(), 4, "{t}");
        assert!(t.contains("dnat to [fd00:b::2]:7000"));
        assert!(t.contains("dnat to [fd00:b::2]:5201"));
        assert!(t.contains("fd00:96::3 . tcp . 5201 : goto svc-3-5201"));
        assert!(!t.contains("svc-2-5201"));
        let add = rules(3).nft_add_one();
        assert!(
            add.contains("fd00:96::4 . tcp . 7000 : goto svc-4-7000"),
            "{add}"
        );
    }

    #[test]
    fn iptables_walks_every_service_before_the_measured_one() {
        let t = rules(3).iptables();
        let dispatch: Vec<&str> = t
            .lines()
            .filter(|l| l.starts_with("-A KUBE-SERVICES"))
            .collect();
        assert_eq!(dispatch.len(), 4);
        assert!(dispatch[3].contains("fd00:96::3/128") && dispatch[3].contains("5201"));
        assert!(t.ends_with("COMMIT\n"));
        assert!(t.contains("DNAT --to-destination [fd00:b::2]:7000"));
        let add = rules(3).iptables_add_one();
        assert_eq!(
            add.lines()
                .filter(|l| l.starts_with("-A KUBE-SERVICES"))
                .count(),
            5
        );
        assert!(add.contains(":KUBE-SVC-4-7000"));
    }

    #[test]
    fn addresses_do_not_collide_at_scale() {
        assert_ne!(vip(1), vip(65537));
        assert_ne!(dead_endpoint(2), dead_endpoint(65538));
        assert_eq!(vip(10000).to_string(), "fd00:96::2710");
    }
}
