//! The NAT64 maps, pinned by name so bindings and sessions survive an agent restart or upgrade.
//! Types and the agent's view are in `sixlane_common::nat64::maps`; names in `layout`. (The pod
//! links the sessions record live with forwarding: `crate::forward`.)

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap},
};
use sixlane_common::nat64::maps::{
    Bib, BibKey, Config, HeldKey, HeldSyn, MAX_HELD_SYNS, MAX_STATIC_BINDINGS, Session, SessionKey,
};

/// Default sizes. Two entries per binding or session (one per direction): 65,536 bindings and
/// 131,072 sessions. The agent can override them at load time (`LoadOptions::max_entries`).
pub const BIB_ENTRIES: u32 = 131_072;
pub const SESSION_ENTRIES: u32 = 262_144;
pub const SOURCE_ENTRIES: u32 = 256;
/// Two entries per static binding.
pub const STATIC_ENTRIES: u32 = 2 * MAX_STATIC_BINDINGS as u32;

#[map(name = "SL_N64_CONFIG")]
pub static CONFIG: Array<Config> = Array::pinned(1, 0);

/// Pod CIDRs allowed to use the translator; the value is unused (1).
#[map(name = "SL_N64_SOURCES")]
pub static SOURCES: LpmTrie<[u8; 16], u8> = LpmTrie::pinned(SOURCE_ENTRIES, 0);

#[map(name = "SL_N64_BIB")]
pub static BIB: LruHashMap<BibKey, Bib> = LruHashMap::pinned(BIB_ENTRIES, 0);

#[map(name = "SL_N64_SESSIONS")]
pub static SESSIONS: LruHashMap<SessionKey, Session> = LruHashMap::pinned(SESSION_ENTRIES, 0);

/// Static bindings: laid out like [`BIB`], but a plain hash map the datapath only reads, so an
/// operator's mapping is never evicted.
#[map(name = "SL_N64_STATIC")]
pub static STATIC: HashMap<BibKey, Bib> = HashMap::pinned(STATIC_ENTRIES, 0);

/// IPv4 SYNs held for a simultaneous open (`super::hold`): a plain hash map, so a full table
/// refuses new SYNs instead of evicting one the agent has yet to answer.
#[map(name = "SL_N64_HELD")]
pub static HELD: HashMap<HeldKey, HeldSyn> = HashMap::pinned(MAX_HELD_SYNS, 0);
