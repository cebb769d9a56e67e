//! Node setup: the node address, the CNI configuration, routes to other nodes' pods, and the
//! sysctls the datapath needs.

pub mod address;
pub mod candidate;
pub mod cni;
pub mod netlink;
pub mod sysctl;
