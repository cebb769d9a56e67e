//! Helpers for the NAT64 tests: raw packet builders written from the RFCs (independent of both
//! the datapath and `sixlane_common::nat64`), programming the translator, and a namespace whose
//! routes and neighbours make the datapath's FIB lookups deterministic for `BPF_PROG_TEST_RUN`.
//! [`xlat`]: the translator under `BPF_PROG_TEST_RUN`, as the `nat64_xlat_*` tests drive it.

pub mod agent;
pub mod xlat;

use std::net::{Ipv4Addr, Ipv6Addr};

use sixlane_agent::{
    PinLayout,
    nat64::{Mode, Nat64Config, Ports, Span, state},
};
use sixlane_attach::chain;
use sixlane_testkit::{NetNs, Veth, packet::checksum};

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMP: u8 = 1;
pub const ICMPV6: u8 = 58;

/// TCP flag bits.
pub mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

/// Ethernet frame around `l3`.
pub fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, l3: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + l3.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(l3);
    f
}

/// IPv6 header + payload (`next` is the payload's protocol).
pub fn ipv6(
    tc: u8,
    flow: u32,
    hop: u8,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    next: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut h = vec![
        0x60 | (tc >> 4),
        (tc << 4) | ((flow >> 16) as u8 & 0x0f),
        (flow >> 8) as u8,
        flow as u8,
    ];
    h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    h.push(next);
    h.push(hop);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h.extend_from_slice(payload);
    h
}

/// IPv4 header fields for [`ipv4`].
#[derive(Clone, Copy, Debug)]
pub struct V4 {
    pub tos: u8,
    pub id: u16,
    pub df: bool,
    pub mf: bool,
    /// Fragment offset in 8-byte units.
    pub off: u16,
    pub ttl: u8,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// Option bytes (a multiple of 4).
    pub options: &'static [u8],
}

impl V4 {
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr) -> Self {
        Self {
            tos: 0,
            id: 0,
            df: false,
            mf: false,
            off: 0,
            ttl: 64,
            src,
            dst,
            options: &[],
        }
    }
}

/// IPv4 header (checksum computed) + payload.
pub fn ipv4(h: &V4, proto: u8, payload: &[u8]) -> Vec<u8> {
    let ihl = 20 + h.options.len();
    let total = ihl + payload.len();
    let flags = (u16::from(h.df) << 14) | (u16::from(h.mf) << 13) | (h.off & 0x1fff);
    let mut b = vec![0x40 | (ihl / 4) as u8, h.tos];
    b.extend_from_slice(&(total as u16).to_be_bytes());
    b.extend_from_slice(&h.id.to_be_bytes());
    b.extend_from_slice(&flags.to_be_bytes());
    b.push(h.ttl);
    b.push(proto);
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(&h.src.octets());
    b.extend_from_slice(&h.dst.octets());
    b.extend_from_slice(h.options);
    let c = checksum::compute(&b, 0);
    b[10..12].copy_from_slice(&c.to_be_bytes());
    b.extend_from_slice(payload);
    b
}

/// The pseudo-header an upper-layer checksum covers.
#[derive(Clone, Copy, Debug)]
pub enum Pseudo {
    V4(Ipv4Addr, Ipv4Addr),
    V6(Ipv6Addr, Ipv6Addr),
    /// ICMPv4: none.
    None,
}

impl Pseudo {
    fn sum(self, len: usize, proto: u8) -> u32 {
        match self {
            Pseudo::V4(s, d) => checksum::pseudo_v4(&s.octets(), &d.octets(), len as u16, proto),
            Pseudo::V6(s, d) => checksum::pseudo_v6(&s.octets(), &d.octets(), len as u32, proto),
            Pseudo::None => 0,
        }
    }
}

/// Fills the checksum at `at` of upper-layer `seg` (protocol `proto`) over `pseudo`.
pub fn fill_csum(seg: &mut [u8], at: usize, pseudo: Pseudo, proto: u8) {
    seg[at] = 0;
    seg[at + 1] = 0;
    let mut c = checksum::compute(seg, pseudo.sum(seg.len(), proto));
    if proto == UDP && c == 0 {
        c = 0xffff;
    }
    seg[at..at + 2].copy_from_slice(&c.to_be_bytes());
}

/// TCP segment (20-byte header + options) with its checksum.
#[allow(clippy::too_many_arguments)]
pub fn tcp(
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    fl: u8,
    options: &[u8],
    payload: &[u8],
    pseudo: Pseudo,
) -> Vec<u8> {
    let hlen = 20 + options.len();
    let mut t = Vec::new();
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&seq.to_be_bytes());
    t.extend_from_slice(&ack.to_be_bytes());
    t.push(((hlen / 4) as u8) << 4);
    t.push(fl);
    t.extend_from_slice(&64240u16.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 0]);
    t.extend_from_slice(options);
    t.extend_from_slice(payload);
    fill_csum(&mut t, 16, pseudo, TCP);
    t
}

/// UDP datagram with its checksum (`zero`: checksum left 0, IPv4's "none").
pub fn udp(sport: u16, dport: u16, payload: &[u8], pseudo: Pseudo, zero: bool) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    if !zero {
        fill_csum(&mut u, 6, pseudo, UDP);
    }
    u
}

/// ICMP or ICMPv6 message (type, code, the 4 bytes after the checksum, body) with its
/// checksum (`Pseudo::None` for ICMPv4).
pub fn icmp(ty: u8, code: u8, rest: [u8; 4], body: &[u8], pseudo: Pseudo) -> Vec<u8> {
    let mut m = vec![ty, code, 0, 0];
    m.extend_from_slice(&rest);
    m.extend_from_slice(body);
    let proto = if matches!(pseudo, Pseudo::V6(..)) {
        ICMPV6
    } else {
        ICMP
    };
    fill_csum(&mut m, 2, pseudo, proto);
    m
}

/// Echo (request or reply) rest-of-header: identifier and sequence.
pub fn echo_rest(id: u16, seq: u16) -> [u8; 4] {
    let (i, s) = (id.to_be_bytes(), seq.to_be_bytes());
    [i[0], i[1], s[0], s[1]]
}

/// TCP MSS option (kind 2).
pub fn mss_option(mss: u16) -> [u8; 4] {
    let m = mss.to_be_bytes();
    [2, 4, m[0], m[1]]
}

/// Embeds `v4` in a /96 prefix (written out here rather than taken from the library).
pub fn embed96(prefix: Ipv6Addr, v4: Ipv4Addr) -> Ipv6Addr {
    let mut o = prefix.octets();
    o[12..].copy_from_slice(&v4.octets());
    Ipv6Addr::from(o)
}

/// A translating NAT64 configuration for tests.
pub fn config(prefix: &str, pool: &[Ipv4Addr], pods: &[&str], ports: Span) -> Nat64Config {
    Nat64Config {
        mode: Mode::Translate,
        prefix: prefix.parse().expect("prefix"),
        pool: pool.to_vec(),
        ports: Ports {
            tcp: ports,
            udp: ports,
            icmp: ports,
        },
        pod_cidrs: pods.iter().map(|p| p.parse().expect("pod CIDR")).collect(),
        ..Default::default()
    }
}

/// Programs `cfg` into the datapath pinned at `layout`.
pub fn apply(layout: &PinLayout, cfg: &Nat64Config) {
    state::apply(layout, cfg).expect("programming NAT64");
}

/// MAC of an interface (`ip -br link`).
pub fn mac_of(end: &sixlane_testkit::veth::End) -> [u8; 6] {
    let out = end.ip(&["-br", "link", "show", "{}"]).expect("ip link");
    let text = out.split_whitespace().nth(2).expect("mac column");
    let mut m = [0u8; 6];
    for (i, part) in text.split(':').enumerate() {
        m[i] = u8::from_str_radix(part, 16).expect("hex");
    }
    m
}

/// Interface index of `name` inside `ns`.
pub fn ifindex(ns: &NetNs, name: &str) -> u32 {
    let out = ns.ip(&["-o", "link", "show", name]).expect("ip link");
    out.split(':')
        .next()
        .expect("index")
        .trim()
        .parse()
        .expect("number")
}

/// A namespace standing in for a node, for `BPF_PROG_TEST_RUN` fixtures whose FIB lookups must
/// resolve: an IPv4 uplink (the pool address, a default route via a gateway with a static
/// neighbour) and a pod interface (a /128 route and static neighbour for each pod address).
/// Nothing is ever sent: test runs only return verdicts and packets.
pub struct XlatNode {
    // Drop order: links, then namespaces.
    pub uplink: Veth,
    pub pod: Veth,
    pub ns: NetNs,
    pub peer_ns: NetNs,
    pub uplink_if: u32,
    pub pod_if: u32,
    pub uplink_mac: [u8; 6],
    pub gw_mac: [u8; 6],
    pub pod_host_mac: [u8; 6],
    pub pod_mac: [u8; 6],
}

pub const GW4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 254);

impl XlatNode {
    /// `pool` is configured on the uplink (/24), `pods` get routes on the pod interface.
    pub fn new(pool: Ipv4Addr, pods: &[Ipv6Addr]) -> Self {
        let ns = NetNs::new().expect("netns");
        let peer_ns = NetNs::new().expect("peer netns");
        for (k, v) in [
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv6.conf.all.forwarding", "1"),
            ("net.ipv6.conf.all.accept_dad", "0"),
            ("net.ipv6.conf.default.accept_dad", "0"),
        ] {
            ns.sysctl(k, v).expect("sysctl");
        }
        let uplink = Veth::new(Some(&ns), Some(&peer_ns)).expect("uplink veth");
        let pod = Veth::new(Some(&ns), Some(&peer_ns)).expect("pod veth");
        uplink
            .a
            .ip(&["addr", "add", &format!("{pool}/24"), "dev", "{}"])
            .expect("pool address");
        let uplink_mac = mac_of(&uplink.a);
        let gw_mac = mac_of(&uplink.b);
        let pod_host_mac = mac_of(&pod.a);
        let pod_mac = mac_of(&pod.b);
        set_gateway_mac(&uplink.a, gw_mac);
        ns.ip(&["route", "add", "default", "via", &GW4.to_string()])
            .expect("default route");
        route_pods(&pod.a, pods, pod_mac);
        let uplink_if = ifindex(&ns, &uplink.a.name);
        let pod_if = ifindex(&ns, &pod.a.name);
        Self {
            uplink,
            pod,
            ns,
            peer_ns,
            uplink_if,
            pod_if,
            uplink_mac,
            gw_mac,
            pod_host_mac,
            pod_mac,
        }
    }
}

/// Makes `mac` the IPv4 gateway's (`GW4`) permanent neighbour entry on uplink `end`.
pub fn set_gateway_mac(end: &sixlane_testkit::veth::End, mac: [u8; 6]) {
    permanent_neighbour(end, &GW4.to_string(), mac);
}

/// A /128 route through `end` and a permanent neighbour entry (MAC `mac`) for each of `pods`, as
/// the CNI plugin's host side of a pod veth has (static, so FIB lookups resolve without ND).
pub fn route_pods(end: &sixlane_testkit::veth::End, pods: &[Ipv6Addr], mac: [u8; 6]) {
    for p in pods {
        end.ip(&["-6", "route", "add", &format!("{p}/128"), "dev", "{}"])
            .expect("pod route");
        permanent_neighbour(end, &p.to_string(), mac);
    }
}

/// A static neighbour entry (`addr` at `mac`) on `end`, so FIB lookups resolve without ARP/ND.
fn permanent_neighbour(end: &sixlane_testkit::veth::End, addr: &str, mac: [u8; 6]) {
    end.ip(&[
        "neigh",
        "replace",
        addr,
        "lladdr",
        &fmt_mac(mac),
        "dev",
        "{}",
        "nud",
        "permanent",
    ])
    .unwrap_or_else(|e| panic!("neighbour {addr}: {}", chain(&e)));
}

pub fn fmt_mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// RFC 6052 §2.2 embedding for any allowed prefix length, written bit by bit from the figure
/// (the 32 IPv4 bits follow the prefix, skipping bits 64–71), independently of the library.
pub fn embed(prefix: Ipv6Addr, len: u8, v4: Ipv4Addr) -> Ipv6Addr {
    let p = u128::from(prefix);
    let v = u32::from(v4);
    let mut out = if len == 0 {
        0
    } else {
        p & (!0u128 << (128 - u32::from(len)))
    };
    let mut bit = u32::from(len);
    for i in 0..32 {
        if bit == 64 {
            bit = 72;
        }
        if v & (1 << (31 - i)) != 0 {
            out |= 1u128 << (127 - bit);
        }
        bit += 1;
    }
    Ipv6Addr::from(out)
}

/// ICMPv6 → ICMPv4 per RFC 7915 §5.2 as the tests expect it: (type, code, how the 4 bytes after
/// the checksum are filled). `None`: silently dropped.
pub fn rfc7915_icmp6_to_4(ty: u8, code: u8) -> Option<(u8, u8, RestKind)> {
    use RestKind::*;
    Some(match (ty, code) {
        (128, 0) => (8, 0, Echo),
        (129, 0) => (0, 0, Echo),
        (1, 0) | (1, 2) | (1, 3) => (3, 1, Zero),
        (1, 1) => (3, 10, Zero),
        (1, 4) => (3, 3, Zero),
        (2, 0) => (3, 4, Mtu),
        (3, 0) => (11, 0, Zero),
        (3, 1) => (11, 1, Zero),
        (4, 0) => (12, 0, Pointer),
        (4, 1) => (3, 2, Zero),
        _ => return None,
    })
}

/// ICMPv4 → ICMPv6 per RFC 7915 §4.2 as the tests expect it.
pub fn rfc7915_icmp4_to_6(ty: u8, code: u8) -> Option<(u8, u8, RestKind)> {
    use RestKind::*;
    Some(match (ty, code) {
        (8, 0) => (128, 0, Echo),
        (0, 0) => (129, 0, Echo),
        (3, 0 | 1 | 5 | 6 | 7 | 8 | 11 | 12) => (1, 0, Zero),
        (3, 2) => (4, 1, NextHeaderPointer),
        (3, 3) => (1, 4, Zero),
        (3, 4) => (2, 0, Mtu),
        (3, 9 | 10 | 13 | 15) => (1, 1, Zero),
        (11, 0) => (3, 0, Zero),
        (11, 1) => (3, 1, Zero),
        (12, 0 | 2) => (4, 0, Pointer),
        _ => return None,
    })
}

/// How the field after an ICMP checksum is translated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestKind {
    Echo,
    Zero,
    Mtu,
    Pointer,
    /// ICMPv4 protocol unreachable: pointer to IPv6's Next Header (6).
    NextHeaderPointer,
}

/// RFC 7915 figure 3 (IPv4 → IPv6 parameter problem pointer).
pub fn rfc7915_pointer4_to_6(p: u8) -> Option<u32> {
    Some(match p {
        0 => 0,
        1 => 1,
        2 | 3 => 4,
        8 => 7,
        9 => 6,
        12..=15 => 8,
        16..=19 => 24,
        _ => return None,
    })
}

/// RFC 7915 figure 6 (IPv6 → IPv4 parameter problem pointer).
pub fn rfc7915_pointer6_to_4(p: u32) -> Option<u8> {
    Some(match p {
        0 => 0,
        1 => 1,
        4 | 5 => 2,
        6 => 9,
        7 => 8,
        8..=23 => 12,
        24..=39 => 16,
        _ => return None,
    })
}

/// A simulated IPv4 internet behind a node, for NAT64 integration tests:
///
/// ```text
///  node ns                          rtr ns                              inet ns
///  up 198.18.0.1/24 (pool) <-veth-> 198.18.0.254/24  198.18.1.1/24 <-veth-> 198.18.1.10/24
///  default via 198.18.0.254         ip_forward                            default via 198.18.1.1
/// ```
///
/// The node gets the uplink programs on `up`; pods attach with `sim::SimPod`.
pub struct Internet {
    pub up: Veth,
    pub wan: Veth,
    pub rtr: NetNs,
    pub inet: NetNs,
}

pub const NODE4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const RTR4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 254);
pub const RTR_WAN4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
pub const SERVER4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 10);

impl Internet {
    /// Builds the IPv4 side of `node` (which must have IPv6 forwarding on already) and turns
    /// on IPv4 forwarding there (the FIB lookups of the datapath need it).
    pub fn new(node: &NetNs) -> sixlane_testkit::Result<Self> {
        let rtr = NetNs::new()?;
        let inet = NetNs::new()?;
        node.sysctl("net.ipv4.ip_forward", "1")?;
        rtr.sysctl("net.ipv4.ip_forward", "1")?;
        let up = Veth::new(Some(node), Some(&rtr))?;
        let wan = Veth::new(Some(&rtr), Some(&inet))?;
        up.a.ip(&["addr", "add", &format!("{NODE4}/24"), "dev", "{}"])?;
        up.b.ip(&["addr", "add", &format!("{RTR4}/24"), "dev", "{}"])?;
        wan.a
            .ip(&["addr", "add", &format!("{RTR_WAN4}/24"), "dev", "{}"])?;
        wan.b
            .ip(&["addr", "add", &format!("{SERVER4}/24"), "dev", "{}"])?;
        node.ip(&["route", "add", "default", "via", &RTR4.to_string()])?;
        inet.ip(&["route", "add", "default", "via", &RTR_WAN4.to_string()])?;
        Ok(Self { up, wan, rtr, inet })
    }

    /// The node's uplink interface name.
    pub fn uplink(&self) -> &str {
        &self.up.a.name
    }
}

/// Attaches the uplink programs (`layout::UPLINK_PROGRAMS`) to `iface` in `ns`.
pub fn attach_uplink(ns: &NetNs, layout: &PinLayout, iface: &str) {
    use sixlane_common::layout::UPLINK_PROGRAMS;
    ns.enter(|| {
        for (prog, hook) in UPLINK_PROGRAMS {
            sixlane_attach::tcx::attach_pinned(layout, prog, iface, hook)
                .unwrap_or_else(|e| panic!("attaching {prog} to {iface}: {}", chain(&e)));
        }
    });
}

/// A minimal HTTP/1.0 server on a socket bound inside `ns`: answers GET with `body`, and any
/// request with a body (POST) with the number of bytes it received. Runs until the process
/// ends; its listener is closed with the returned guard's drop.
pub struct HttpServer {
    pub addr: std::net::SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl HttpServer {
    pub fn start(ns: &NetNs, addr: std::net::SocketAddr, body: Vec<u8>) -> Self {
        use std::{
            io::{BufRead as _, BufReader, Read as _, Write as _},
            sync::{
                Arc,
                atomic::{AtomicBool, Ordering},
            },
        };
        let listener = ns
            .enter(|| std::net::TcpListener::bind(addr))
            .expect("bind HTTP server");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local addr");
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let body = Arc::new(body);
        std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                let (s, _) = match listener.accept() {
                    Ok(c) => c,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(std::time::Duration::from_millis(5));
                        continue;
                    }
                    Err(_) => break,
                };
                let body = body.clone();
                std::thread::spawn(move || {
                    let _ = s.set_nonblocking(false);
                    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(30)));
                    let mut r = BufReader::new(s);
                    let mut len = 0usize;
                    loop {
                        let mut line = String::new();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let mut got = vec![0u8; len];
                    if r.read_exact(&mut got).is_err() {
                        return;
                    }
                    let reply: Vec<u8> = if len > 0 {
                        format!("received {len}").into_bytes()
                    } else {
                        body.to_vec()
                    };
                    let mut s = r.into_inner();
                    let _ = write!(
                        s,
                        "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n",
                        reply.len()
                    );
                    let _ = s.write_all(&reply);
                });
            }
        });
        Self { addr, stop }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
