//! Names shared by the loader, the CLI and the CNI plugin: program and map names in the eBPF
//! object and the layout of the bpffs pin directory.
//!
//! ```text
//! <pin root>/                 default /sys/fs/bpf/sixlane
//!   maps/<MAP NAME>           the object's pinned maps, by name (survive restarts; see MAPS)
//!   progs/<program name>      the loaded programs, for the CNI plugin to attach
//!   links/<prog>@<ifname>     TCX links, pinned so they outlive the process that made them
//! ```

/// Default bpffs directory for sixlane's pins.
pub const DEFAULT_PIN_ROOT: &str = "/sys/fs/bpf/sixlane";
/// Sub-directory of the pin root holding maps.
pub const MAPS_DIR: &str = "maps";
/// Sub-directory of the pin root holding programs.
pub const PROGS_DIR: &str = "progs";
/// Sub-directory of the pin root holding TCX links.
pub const LINKS_DIR: &str = "links";

/// Per-CPU datapath counters (see [`crate::metrics`]).
pub const MAP_METRICS: &str = "SL_METRICS";

// Service datapath maps (types in `crate::services`).
/// Frontends: (address, port, protocol, scope) → service.
pub const MAP_SVC: &str = "SL_SVC";
/// Backend slots of each service: (group, slot) → backend id.
pub const MAP_SVC_SLOTS: &str = "SL_SVC_SLOTS";
/// Backends by id.
pub const MAP_BACKENDS: &str = "SL_BACKENDS";
/// Frontends by id (what a conntrack entry's reverse translation belongs to).
pub const MAP_REVNAT: &str = "SL_REVNAT";
/// Service-port names by id (for the CLI and for a restarted agent).
pub const MAP_SVC_INFO: &str = "SL_SVC_INFO";
/// sessionAffinity ClientIP: (client, service port) → backend.
pub const MAP_AFFINITY: &str = "SL_AFFINITY";
/// Service conntrack (LRU).
pub const MAP_CT: &str = "SL_CT";
/// Service datapath configuration (SNAT address and ports, conntrack lifetimes).
pub const MAP_SVC_CONFIG: &str = "SL_SVC_CONFIG";
/// Ports of translated fragmented datagrams, for their later fragments (LRU).
pub const MAP_FRAGS: &str = "SL_FRAGS";

/// Which tc hook a program attaches to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    Ingress,
    Egress,
}

/// tc ingress on the host side of a pod's veth: packets the pod sends (service DNAT, NAT64 6→4).
pub const PROG_FROM_POD: &str = "sl_from_pod";
/// tc egress on the host side of a pod's veth: packets delivered to the pod (reverse NAT).
pub const PROG_TO_POD: &str = "sl_to_pod";
/// tc ingress on the node's uplink: NodePort/external traffic, replies to SNATed and NAT64 flows.
pub const PROG_FROM_UPLINK: &str = "sl_from_uplink";
/// tc egress on the node's uplink.
pub const PROG_TO_UPLINK: &str = "sl_to_uplink";

/// What the CNI plugin attaches to every pod's host-side veth.
pub const POD_PROGRAMS: [(&str, Hook); 2] =
    [(PROG_FROM_POD, Hook::Ingress), (PROG_TO_POD, Hook::Egress)];
/// What the agent attaches to the node's uplink.
pub const UPLINK_PROGRAMS: [(&str, Hook); 2] = [
    (PROG_FROM_UPLINK, Hook::Ingress),
    (PROG_TO_UPLINK, Hook::Egress),
];

/// Maps whose size an operator may set (the agent's `datapath.mapSizes`): the state tables.
/// The others have a fixed layout (configuration entries, counters, program arrays).
pub const RESIZABLE_MAPS: [&str; 11] = [
    MAP_SVC,
    MAP_SVC_SLOTS,
    MAP_BACKENDS,
    MAP_REVNAT,
    MAP_SVC_INFO,
    MAP_AFFINITY,
    MAP_CT,
    MAP_FRAGS,
    MAP_NAT64_SOURCES,
    MAP_NAT64_BIB,
    MAP_NAT64_SESSIONS,
];

/// Program array of the stages entry points tail-call into (pinned: a new load swaps entries).
pub const MAP_STAGES: &str = "SL_STAGES";
/// Slots of [`MAP_STAGES`].
pub const STAGE_NAT64_FROM_POD: u32 = 0;
pub const STAGE_NAT64_FROM_UPLINK: u32 = 1;
pub const STAGE_NAT64_HAIRPIN: u32 = 2;
/// Entries of [`MAP_STAGES`] (room for more stages without re-creating the pinned map).
pub const STAGE_SLOTS: u32 = 8;
/// NAT64's half of `sl_from_pod`, tail-called for packets to the NAT64 prefix. A separate
/// program so each is verified alone: NAT64 and the service stage in one program exceed the
/// verifier's complexity budget.
pub const PROG_NAT64_FROM_POD: &str = "sl_nat64_from_pod";
/// NAT64's half of `sl_from_uplink` (IPv4, and IPv6 to the prefix from route-mode nodes).
pub const PROG_NAT64_FROM_UPLINK: &str = "sl_nat64_from_uplink";
/// NAT64 hairpinning (packets to the translator's own pool addresses), tail-called by the two
/// NAT64 programs once their half is done: in either of them it exceeds the verifier's
/// complexity budget.
pub const PROG_NAT64_HAIRPIN: &str = "sl_nat64_hairpin";
/// Which program fills which slot of [`MAP_STAGES`]; the loader installs them.
pub const STAGES: [(u32, &str); 3] = [
    (STAGE_NAT64_FROM_POD, PROG_NAT64_FROM_POD),
    (STAGE_NAT64_FROM_UPLINK, PROG_NAT64_FROM_UPLINK),
    (STAGE_NAT64_HAIRPIN, PROG_NAT64_HAIRPIN),
];

/// tc program counting every packet by direction (the harness's first program).
pub const PROG_COUNT_INGRESS: &str = "sl_count_ingress";
/// tc program counting every packet by direction, egress side.
pub const PROG_COUNT_EGRESS: &str = "sl_count_egress";

/// NAT64 configuration (one `nat64::maps::Config` in an array).
pub const MAP_NAT64_CONFIG: &str = "SL_N64_CONFIG";
/// NAT64 source allow-list: LPM trie of the pod CIDRs that may use the translator.
pub const MAP_NAT64_SOURCES: &str = "SL_N64_SOURCES";
/// NAT64 binding table (RFC 6146 BIB), both directions.
pub const MAP_NAT64_BIB: &str = "SL_N64_BIB";
/// NAT64 session table (RFC 6146), both directions.
pub const MAP_NAT64_SESSIONS: &str = "SL_N64_SESSIONS";
/// NAT64 static bindings (`nat64.staticBindings`), laid out like [`MAP_NAT64_BIB`]: a plain
/// hash map, so they are never evicted; written by the agent only.
pub const MAP_NAT64_STATIC: &str = "SL_N64_STATIC";
/// NAT64 pod links (`nat64::maps::PodLink` by host-side veth ifindex): how replies reach a
/// local pod without a route lookup.
pub const MAP_NAT64_POD_LINKS: &str = "SL_N64_POD_LINKS";
/// NAT64 IPv4 SYNs held for a simultaneous open (`nat64::maps::HeldSyn` by `HeldKey`): written
/// by the datapath, answered and removed by the agent after 6 s.
pub const MAP_NAT64_HELD: &str = "SL_N64_HELD";

/// Per-CPU scratch area of the service stage (not pinned: nothing in it outlives a program run).
pub const MAP_SVC_SCRATCH: &str = "SL_SVC_SCRATCH";
/// Per-CPU budget of the ICMPv6 errors the service stage generates (not pinned).
pub const MAP_ICMP_BUDGET: &str = "SL_ICMP_BUDGET";
/// Per-CPU scratch area of the NAT64 stage, with its route cache (not pinned).
pub const MAP_NAT64_SCRATCH: &str = "SL_N64_SCRATCH";
/// Addresses this node answers Neighbor Discovery for on an uplink (`ndp::Owned` by IPv6
/// address): pinned, so answering goes on while the agent restarts.
pub const MAP_NDP_OWNED: &str = "SL_NDP_OWNED";
/// Until when the datapath answers for the LoadBalancer IPs of [`MAP_NDP_OWNED`] (one `u64`,
/// `ndp::LEASE_KEY`): pinned, so a restarted agent renews the lease its predecessor held.
pub const MAP_NDP_LEASE: &str = "SL_NDP_LEASE";
/// Per-CPU scratch area of the Neighbor Discovery responder (not pinned).
pub const MAP_NDP_SCRATCH: &str = "SL_NDP_SCRATCH";
/// Pod source validation (`source::SourceKey` → `source::ADDRESS`/`ENFORCE`/`ANY`): the
/// sources each pod may send from, by host-side veth; written by the CNI plugin, pinned.
pub const MAP_POD_SOURCES: &str = "SL_POD_SOURCES";
/// aya-log's record buffer (named by `aya-log-ebpf`; the agent forwards the records).
pub const MAP_LOGS: &str = "AYA_LOGS";

/// The map types of the object, numbered as the kernel's `enum bpf_map_type`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapType {
    Hash = 1,
    Array = 2,
    ProgArray = 3,
    PerCpuArray = 6,
    LruHash = 9,
    LpmTrie = 11,
    RingBuf = 27,
}

/// A map of the object: its name, its type, and whether it is pinned by name under
/// [`MAPS_DIR`] (kept across restarts and upgrades, so its layout may not change).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapSpec {
    pub name: &'static str,
    pub kind: MapType,
    pub pinned: bool,
}

const fn map(name: &'static str, kind: MapType, pinned: bool) -> MapSpec {
    MapSpec { name, kind, pinned }
}

/// Pinned maps holding only configuration that the agent writes whole at every start: one that
/// does not match a new datapath's layout is replaced without `replaceIncompatibleMaps`, as
/// nothing in it is lost (NAT64's port-selection secret is drawn again; existing bindings keep
/// their ports).
pub const CONFIG_MAPS: [&str; 1] = [MAP_NAT64_CONFIG];

/// Every map of the eBPF object. The programs name their maps with literals
/// (`#[map(name = "...")]`); a test over the built object (`ebpf/agent/tests/object.rs`) holds
/// them to this table, so a map renamed, added or dropped on one side fails there.
pub const MAPS: [MapSpec; 26] = [
    map(MAP_METRICS, MapType::PerCpuArray, true),
    map(MAP_STAGES, MapType::ProgArray, true),
    map(MAP_SVC, MapType::Hash, true),
    map(MAP_SVC_SLOTS, MapType::Hash, true),
    map(MAP_BACKENDS, MapType::Array, true),
    map(MAP_REVNAT, MapType::Array, true),
    map(MAP_SVC_INFO, MapType::Hash, true),
    map(MAP_AFFINITY, MapType::LruHash, true),
    map(MAP_CT, MapType::LruHash, true),
    map(MAP_SVC_CONFIG, MapType::Array, true),
    map(MAP_FRAGS, MapType::LruHash, true),
    map(MAP_SVC_SCRATCH, MapType::PerCpuArray, false),
    map(MAP_ICMP_BUDGET, MapType::PerCpuArray, false),
    map(MAP_NAT64_CONFIG, MapType::Array, true),
    map(MAP_NAT64_SOURCES, MapType::LpmTrie, true),
    map(MAP_NAT64_BIB, MapType::LruHash, true),
    map(MAP_NAT64_SESSIONS, MapType::LruHash, true),
    map(MAP_NAT64_POD_LINKS, MapType::LruHash, true),
    map(MAP_NAT64_STATIC, MapType::Hash, true),
    map(MAP_NAT64_HELD, MapType::Hash, true),
    map(MAP_NAT64_SCRATCH, MapType::PerCpuArray, false),
    map(MAP_NDP_OWNED, MapType::Hash, true),
    map(MAP_NDP_LEASE, MapType::Array, true),
    map(MAP_NDP_SCRATCH, MapType::PerCpuArray, false),
    map(MAP_POD_SOURCES, MapType::Hash, true),
    map(MAP_LOGS, MapType::RingBuf, false),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_names_are_unique_and_resizable_maps_are_pinned_maps() {
        for (i, m) in MAPS.iter().enumerate() {
            assert!(
                MAPS[..i].iter().all(|o| o.name != m.name),
                "{} listed twice",
                m.name
            );
        }
        for name in CONFIG_MAPS {
            assert!(
                MAPS.iter().any(|m| m.name == name && m.pinned),
                "configuration map {name} is not a pinned map of the object"
            );
        }
        for name in RESIZABLE_MAPS {
            assert!(
                MAPS.iter().any(|m| m.name == name && m.pinned),
                "resizable map {name} is not a pinned map of the object"
            );
        }
    }
}
