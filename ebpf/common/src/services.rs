//! Map types of the service datapath (kube-proxy replacement): frontends, backend slots,
//! backends, reverse-NAT/frontend records, session affinity, conntrack and configuration.
//!
//! Conventions: addresses are IPv6 in network order (`[u8; 16]`); every port is stored in
//! network byte order exactly as it sits in the packet (`u16::from_ne_bytes(wire)`), so the
//! datapath copies it without swapping and userspace converts with `u16::to_be`/`from_be`.
//!
//! ```text
//! SL_SVC        (frontend addr, port, proto, scope) -> Service { group, count, flags, ... }
//! SL_SVC_SLOTS  (group, slot)                        -> Slot { backend id }
//! SL_BACKENDS   backend id (array index)             -> Backend { addr, port, flags, svc_port }
//! SL_REVNAT     frontend id (array index)            -> RevNat { addr, port, proto, kind }
//! SL_SVC_INFO   service-port id                      -> SvcPortInfo (names, for the CLI)
//! SL_AFFINITY   (client addr, service-port id)       -> Affinity { backend, last use }
//! SL_CT         wire 5-tuple                         -> CtEntry { translated 5-tuple, state, ... }
//! SL_SVC_CONFIG 0                                    -> Config { SNAT address and ports, lifetimes }
//! SL_FRAGS      (src, dst, fragment id, proto)       -> FragPorts (ports for later fragments)
//! ```

/// Lookup scope of a frontend: which side of the node the client is on.
pub mod scope {
    /// Clients are pods of this node (lookups from `sl_from_pod`).
    pub const INTERNAL: u8 = 0;
    /// Clients are outside the node (lookups from `sl_from_uplink`).
    pub const EXTERNAL: u8 = 1;
}

/// Key of `SL_SVC`. `port` 0 with `proto` 58 (ICMPv6) is the frontend address itself: the
/// datapath answers echo requests to it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SvcKey {
    pub addr: [u8; 16],
    /// Network byte order.
    pub port: u16,
    pub proto: u8,
    pub scope: u8,
}
crate::map_type!(SvcKey, 20);

/// `Service::flags`.
pub mod svc_flags {
    /// `sessionAffinity: ClientIP`: `affinity_secs` is the timeout.
    pub const AFFINITY: u16 = 1 << 0;
    /// The slots hold serving-and-terminating backends because none is ready (kube-proxy's
    /// fallback); affinity then only honours terminating backends.
    pub const FALLBACK: u16 = 1 << 1;
    /// The slot group holds this node's backends only (a `Local` traffic policy).
    pub const LOCAL_ONLY: u16 = 1 << 2;
    /// External client and `externalTrafficPolicy: Cluster`: SNAT to a node address when the
    /// chosen backend is on another node, so replies come back through this node.
    pub const SNAT_REMOTE: u16 = 1 << 3;
    /// The frontend is a node address (NodePort): SNAT uses the frontend address itself.
    pub const NODE_PORT: u16 = 1 << 4;
    /// An address entry (port 0, ICMPv6): echo requests to the frontend are answered.
    pub const ECHO: u16 = 1 << 5;
    /// No backend in the slots but the service has some elsewhere (a `Local` policy without a
    /// local endpoint): drop, as kube-proxy does, instead of rejecting.
    pub const DROP_EMPTY: u16 = 1 << 6;
}

/// Value of `SL_SVC`: where a frontend's backends are and how to pick one.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Service {
    /// Slot group in `SL_SVC_SLOTS` (service-port id × 2 + 1 for the node-local group).
    pub group: u32,
    /// Active slots `0..count`; 0 = no endpoint.
    pub count: u16,
    pub flags: u16,
    /// Frontend id (index in `SL_REVNAT`), recorded in conntrack entries.
    pub rev_nat: u32,
    /// Service-port id (key of `SL_SVC_INFO`, owner of the backends, affinity scope).
    pub svc_port: u32,
    /// Session affinity timeout in seconds (with `AFFINITY`).
    pub affinity_secs: u32,
    pub _pad: u32,
}
crate::map_type!(Service, 24);

/// Key of `SL_SVC_SLOTS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SlotKey {
    pub group: u32,
    pub slot: u32,
}
crate::map_type!(SlotKey, 8);

/// Value of `SL_SVC_SLOTS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Slot {
    pub backend: u32,
}
crate::map_type!(Slot, 4);

/// Slot group of a service port: its cluster-wide or its node-local backends.
#[inline(always)]
pub const fn group(svc_port: u32, local: bool) -> u32 {
    svc_port * 2 + if local { 1 } else { 0 }
}

/// `Backend::flags` (the EndpointSlice conditions plus liveness).
pub mod backend_flags {
    /// The slot is in use (array entries are never deleted, only cleared).
    pub const ALIVE: u8 = 1 << 0;
    pub const READY: u8 = 1 << 1;
    pub const SERVING: u8 = 1 << 2;
    pub const TERMINATING: u8 = 1 << 3;
    /// Runs on this node.
    pub const LOCAL: u8 = 1 << 4;
}

/// Value of `SL_BACKENDS` (an array indexed by backend id; id 0 is never used).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Backend {
    pub addr: [u8; 16],
    /// Network byte order.
    pub port: u16,
    pub proto: u8,
    pub flags: u8,
    /// The service port this backend belongs to (backends are per service port).
    pub svc_port: u32,
}
crate::map_type!(Backend, 24);

/// `RevNat::kind`.
pub mod frontend_kind {
    pub const CLUSTER_IP: u8 = 1;
    pub const EXTERNAL_IP: u8 = 2;
    pub const LOAD_BALANCER: u8 = 3;
    pub const NODE_PORT: u8 = 4;
}

/// Value of `SL_REVNAT` (an array indexed by frontend id): the frontend a flow was addressed
/// to. Conntrack entries carry the id, so tools can name the service of every flow.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RevNat {
    pub addr: [u8; 16],
    /// Network byte order.
    pub port: u16,
    pub proto: u8,
    /// `frontend_kind`; 0 = unused entry.
    pub kind: u8,
    pub svc_port: u32,
}
crate::map_type!(RevNat, 24);

/// Bytes of the name in [`SvcPortInfo`].
pub const SVC_NAME_LEN: usize = 120;

/// Value of `SL_SVC_INFO`: what a service-port id stands for, so the CLI can name services
/// from the pins alone, and a restarted agent can map its ids back to Services.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SvcPortInfo {
    /// Network byte order.
    pub port: u16,
    pub proto: u8,
    pub name_len: u8,
    pub _pad: [u8; 4],
    /// `namespace/name/port-name`, UTF-8, `name_len` bytes used.
    pub name: [u8; SVC_NAME_LEN],
}
crate::map_type!(SvcPortInfo, 128);

impl Default for SvcPortInfo {
    fn default() -> Self {
        Self {
            port: 0,
            proto: 0,
            name_len: 0,
            _pad: [0; 4],
            name: [0; SVC_NAME_LEN],
        }
    }
}

/// Key of `SL_AFFINITY` (sessionAffinity ClientIP is per client address and service port, as
/// kube-proxy's are).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AffinityKey {
    pub client: [u8; 16],
    pub svc_port: u32,
    pub _pad: u32,
}
crate::map_type!(AffinityKey, 24);

/// Value of `SL_AFFINITY`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Affinity {
    pub backend: u32,
    pub _pad: u32,
    /// `bpf_ktime_get_coarse_ns` (CLOCK_MONOTONIC_COARSE) of the last new flow that used it.
    pub last_ns: u64,
}
crate::map_type!(Affinity, 16);

/// Key of `SL_CT`: the 5-tuple as it appears on the wire at the hook that translates it.
/// ICMPv6 errors are looked up with the reversed tuple of the packet they quote. `src` and
/// `dst` come first and together, as in the IPv6 header (the datapath copies them in one go).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CtKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// Network byte order.
    pub sport: u16,
    /// Network byte order.
    pub dport: u16,
    pub proto: u8,
    // Two fields, not `[u8; 3]`: zeroing 3 bytes makes LLVM emit a memset call the BPF
    // verifier rejects.
    pub _pad: u8,
    pub _pad2: u16,
}
crate::map_type!(CtKey, 40);

impl CtKey {
    /// The same flow seen from the other side.
    #[inline(always)]
    pub const fn reversed(&self) -> CtKey {
        CtKey {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            proto: self.proto,
            _pad: 0,
            _pad2: 0,
        }
    }
}

/// `CtEntry::flags`.
pub mod ct_flags {
    /// The original direction (client → frontend); without it, a reply-direction entry.
    pub const FORWARD: u16 = 1 << 0;
    /// Hooks at which the entry's translation is applied; at other hooks a matching packet
    /// passes untouched.
    pub const AT_FROM_POD: u16 = 1 << 1;
    pub const AT_TO_POD: u16 = 1 << 2;
    pub const AT_FROM_UPLINK: u16 = 1 << 3;
    pub const AT_TO_UPLINK: u16 = 1 << 4;
    /// After translating, send the packet back out of the interface it came from, MACs
    /// swapped (hairpin: client and backend are the same pod).
    pub const REDIRECT_BACK: u16 = 1 << 5;
    /// The flow's source was translated to a node/frontend address (NodePort SNAT, hairpin).
    pub const SNAT: u16 = 1 << 6;
    /// The client is the backend itself.
    pub const HAIRPIN: u16 = 1 << 7;
    /// The client is outside the node (arrived on the uplink).
    pub const EXTERNAL: u16 = 1 << 8;
    /// After translating, route the packet again (FIB lookup, then redirect to the new
    /// next hop): it was already routed, towards the frontend (a node process's flow, seen on
    /// the uplink's egress).
    pub const ROUTE: u16 = 1 << 9;
    /// The client is a process of the node itself (host network).
    pub const HOST: u16 = 1 << 10;
    /// A reply entry whose client is a local pod (veth `CtEntry::ifindex`): an ingress hook
    /// may translate the reply itself and deliver it into the client pod when the route to the
    /// client still leads out of that veth, bypassing the node's forwarding and the veth's
    /// egress (where `AT_TO_POD` would translate it otherwise).
    pub const PEER: u16 = 1 << 11;
}

/// `Config::flags`.
pub mod config_flags {
    /// Never deliver service traffic straight into local pods (`ct_flags::PEER`): every packet
    /// takes the node's forwarding path and the pod veth's egress (qdiscs such as the
    /// `bandwidth` plugin's ingress shaping apply to it).
    pub const NO_POD_FAST_PATH: u32 = 1 << 0;
}

/// `CtEntry::state` bits (TCP; other protocols only use `SEEN_REPLY`).
pub mod ct_state {
    pub const SYN: u8 = 1 << 0;
    pub const ESTABLISHED: u8 = 1 << 1;
    pub const FIN_FORWARD: u8 = 1 << 2;
    pub const FIN_REPLY: u8 = 1 << 3;
    pub const RST: u8 = 1 << 4;
    pub const SEEN_REPLY: u8 = 1 << 5;

    /// Both sides finished or one reset: the connection only lingers for late segments.
    #[inline(always)]
    pub const fn closing(s: u8) -> bool {
        s & RST != 0 || (s & FIN_FORWARD != 0 && s & FIN_REPLY != 0)
    }
}

/// Value of `SL_CT`: what a packet matching the key becomes. Both entries of a connection
/// (forward and reply) carry the same `state`, kept in step on state changes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtEntry {
    pub new_src: [u8; 16],
    pub new_dst: [u8; 16],
    /// Network byte order.
    pub new_sport: u16,
    /// Network byte order.
    pub new_dport: u16,
    pub flags: u16,
    pub state: u8,
    pub _pad: u8,
    /// Frontend id (`SL_REVNAT`).
    pub rev_nat: u32,
    /// Backend id (`SL_BACKENDS`) chosen for the flow.
    pub backend: u32,
    /// CLOCK_MONOTONIC ns after which the entry is dead (the datapath ignores it and userspace
    /// garbage collection removes it).
    pub expires_ns: u64,
    pub created_ns: u64,
    /// Host-side veth of the local pod this entry's packets go to, 0 = unknown: a pod client's
    /// veth on its reply entry (set at creation), a local backend's on the forward entry
    /// (learned from the backend's first reply). With `ct_flags::PEER`/a forward entry, the
    /// ingress hooks deliver translated packets straight into that pod (`bpf_redirect_peer`).
    pub ifindex: u32,
    pub _pad2: u32,
}
crate::map_type!(CtEntry, 72);

impl CtEntry {
    /// The tuple a matching packet is rewritten to.
    #[inline(always)]
    pub const fn translated(&self, proto: u8) -> CtKey {
        CtKey {
            src: self.new_src,
            dst: self.new_dst,
            sport: self.new_sport,
            dport: self.new_dport,
            proto,
            _pad: 0,
            _pad2: 0,
        }
    }

    /// Key of the other entry of the same connection: the translated tuple, reversed.
    #[inline(always)]
    pub const fn sibling(&self, proto: u8) -> CtKey {
        self.translated(proto).reversed()
    }
}

/// Key of `SL_FRAGS`: an IPv6 fragmented datagram (RFC 8200 §4.5: source, destination and
/// identification), as seen at the hook that translated its first fragment.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FragKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// Host byte order.
    pub id: u32,
    pub proto: u8,
    pub _pad: u8,
    pub _pad2: u16,
}
crate::map_type!(FragKey, 40);

/// Value of `SL_FRAGS`: the ports of the first fragment, which later fragments lack.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FragPorts {
    /// Network byte order.
    pub sport: u16,
    pub dport: u16,
}
crate::map_type!(FragPorts, 4);

/// Default conntrack lifetimes in seconds (a zero in [`Config`] selects these).
pub mod lifetime {
    /// TCP before the handshake completes.
    pub const TCP_SYN: u32 = 60;
    /// Established TCP (kube-proxy's nf_conntrack default is 5 days; Cilium uses 6 hours).
    pub const TCP_ESTABLISHED: u32 = 6 * 3600;
    /// TCP after RST or FIN from both sides.
    pub const TCP_CLOSING: u32 = 10;
    /// UDP and everything else.
    pub const OTHER: u32 = 60;
}

/// Default SNAT source ports: above Linux's default ephemeral range (32768–60999) so they do
/// not collide with the node's own connections.
pub const SNAT_PORT_MIN: u16 = 61000;
pub const SNAT_PORT_MAX: u16 = 65535;

/// Value of `SL_SVC_CONFIG` (one entry, index 0), written by the agent. All-zero is valid:
/// defaults apply and SNAT uses the frontend address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Config {
    /// Source address for SNAT of external flows to remote backends when the frontend is not a
    /// node address (external and LoadBalancer IPs). Zero: the frontend address.
    pub snat_addr: [u8; 16],
    /// Host byte order; 0 = `SNAT_PORT_MIN` / `SNAT_PORT_MAX`.
    pub snat_port_min: u16,
    pub snat_port_max: u16,
    pub tcp_syn_secs: u32,
    pub tcp_established_secs: u32,
    pub tcp_closing_secs: u32,
    pub other_secs: u32,
    /// `config_flags` bits (0: the defaults).
    pub flags: u32,
}
crate::map_type!(Config, 40);

/// Default map sizes (override with `LoadOptions::max_entries`).
pub mod sizes {
    pub const SERVICES: u32 = 65536;
    pub const SLOTS: u32 = 131072;
    pub const BACKENDS: u32 = 65536;
    pub const REVNAT: u32 = 65536;
    pub const SVC_INFO: u32 = 65536;
    pub const AFFINITY: u32 = 65536;
    pub const CONNTRACK: u32 = 262144;
    pub const FRAGS: u32 = 8192;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reversal_and_sibling() {
        let k = CtKey {
            src: [1; 16],
            dst: [2; 16],
            sport: 10,
            dport: 20,
            proto: 6,
            ..Default::default()
        };
        assert_eq!(k.reversed().reversed(), k);
        let e = CtEntry {
            new_src: [1; 16],
            new_dst: [3; 16],
            new_sport: 10,
            new_dport: 30,
            ..Default::default()
        };
        let s = e.sibling(6);
        assert_eq!((s.src, s.dst, s.sport, s.dport), ([3; 16], [1; 16], 30, 10));
    }

    #[test]
    fn closing_needs_rst_or_both_fins() {
        use ct_state::*;
        assert!(!closing(FIN_FORWARD | ESTABLISHED));
        assert!(closing(FIN_FORWARD | FIN_REPLY));
        assert!(closing(RST));
    }

    #[test]
    fn groups_do_not_overlap() {
        assert_ne!(group(1, true), group(2, false));
        assert_eq!(group(3, false) + 1, group(3, true));
    }
}
