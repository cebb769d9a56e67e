//! Neighbor Discovery for the addresses this node owns on an uplink's on-link prefix (its pods
//! and, in L2 mode, LoadBalancer IPs), so a provider router that routes only what answers
//! Neighbor Discovery on the link reaches them: no routed prefix, no BGP, no separate daemon.
//!
//! The datapath answers the solicitations (the uplink program, from a pinned table: it goes on
//! answering while the agent restarts). The agent decides which addresses the node owns and
//! keeps the table to that:
//!
//! - [`table`]: the pinned table, read and synced;
//! - [`config`]: the `ndp` section;
//! - [`watch`]: changes of the CNI plugin's IPAM store (`crate::ipam`), the node's pods;
//! - [`owned`]: which of them (and on which uplink) the node answers for;
//! - [`claims`]: the L2 LoadBalancer IPs, and which this node could answer for;
//! - [`peers`]: the other nodes on the link and their heartbeats, [`heartbeat`], the thread
//!   exchanging them, [`elect`], the owner of each LoadBalancer IP among them, and [`lease`],
//!   the datapath's lease on the ones owned here;
//! - [`link`]: the uplink's index and MAC;
//! - [`mld`]: the solicited-node multicast memberships;
//! - [`advertise`]: unsolicited advertisements for addresses newly answered here;
//! - [`responder`]: the task tying them together;
//! - [`status`], [`metrics`], [`cli`]: what it reports, and `sixlane-agent ndp`.

pub mod advertise;
pub mod claims;
pub mod cli;
pub mod config;
pub mod elect;
pub mod heartbeat;
pub mod lease;
pub mod link;
pub mod metrics;
pub mod mld;
pub mod owned;
pub mod peers;
pub mod responder;
pub mod status;
pub mod table;
pub mod watch;
