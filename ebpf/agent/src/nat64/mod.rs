//! NAT64 in userspace: the operator's configuration ([`Nat64Config`], the `nat64:` key of the
//! agent's YAML), programming it into the pinned maps, garbage collection of idle sessions and
//! unused bindings, static bindings ([`statics`]), and the `sixlane-agent nat64` CLI. The
//! translation itself is in the eBPF datapath (`ebpf/programs/src/nat64`), its rules in
//! `sixlane_common::nat64`.
//!
//! The daemon (`crate::daemon`) validates `Nat64Config` with the rest of the configuration,
//! [`state::apply`]s it after every load, runs [`gc::collect`] every 10 s, gives the CNI the
//! pods' route from [`Nat64Config::pod_route`], and in route mode installs a route to the prefix
//! via `gateway`.

pub mod cli;
pub mod config;
pub mod gc;
pub mod held;
pub mod state;
pub mod statics;

pub use config::{
    ErrorSource, Identification, Mode, Nat64Config, PodRoute, Ports, Span, Timeouts, UnsolicitedTcp,
};
