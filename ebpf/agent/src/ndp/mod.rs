//! Neighbor Discovery for the addresses this node owns on an uplink's on-link prefix (its pods,
//! and the LoadBalancer IPs it announces in L2 mode), so a provider router that routes only
//! what answers Neighbor Discovery on the link reaches them: no routed prefix, no BGP, no
//! separate daemon.
//!
//! The datapath answers the solicitations (the uplink program, from a pinned table: it goes on
//! answering while the agent restarts). The agent decides which addresses the node owns and
//! keeps the table to that:
//!
//! - [`table`]: the pinned table, read and synced.
pub mod table;
