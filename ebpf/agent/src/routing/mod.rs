//! Reachability from outside the cluster: BGP with BIRD 2 as the engine. sixlane never speaks
//! BGP itself; it decides what this node announces and learns and writes BIRD's configuration.
//!
//! - [`config`]: the `bgp` section, resolved per node; [`router_id`]: IDs derived from node
//!   names;
//! - [`announce`]: what this node announces, a pure function of the cluster state;
//! - [`bird`]: BIRD's configuration.

pub mod announce;
pub mod bird;
pub mod config;
pub mod router_id;
