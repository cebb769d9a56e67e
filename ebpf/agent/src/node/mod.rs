//! Node setup: the node address, the CNI configuration, and routes to other nodes' pods.

pub mod address;
pub mod cni;
pub mod netlink;
