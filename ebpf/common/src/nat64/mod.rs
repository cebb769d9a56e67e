//! NAT64 translation rules shared by the eBPF datapath and the agent (RFC 6146 stateful NAT64,
//! RFC 7915 header translation, RFC 6052 address embedding).
//!
//! Plain `no_std` code over fixed-size arrays: the datapath calls it on headers it loaded onto
//! its stack, the unit tests walk it exhaustively on the host.
//!
//! - [`addr`]: Pref64::/n embedding and extraction, non-global IPv4 refusal;
//! - [`header`]: IPv4/IPv6 headers as translated (TOS/traffic class, TTL/hop limit, DF and
//!   fragment identification);
//! - [`icmp`]: ICMP ↔ ICMPv6 type/code tables, pointer mapping, PTB/Fragmentation Needed MTU;
//! - [`csum`]: one's complement arithmetic;
//! - [`tcp`]: session states and timeout classes;
//! - [`hash`]: the keyed hash behind pool placement and IPv4 Identifications;
//! - [`pool`]: choosing the IPv4 transport address of a new binding;
//! - [`maps`]: the map key/value types and the datapath configuration.

pub mod addr;
pub mod csum;
pub mod hash;
pub mod header;
pub mod icmp;
pub mod maps;
pub mod pool;
pub mod tcp;
