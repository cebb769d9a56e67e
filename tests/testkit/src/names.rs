//! Unique names for test resources.
//!
//! Every name starts with [`PREFIX`] so a sweep can find leftovers, embeds the process id so
//! parallel test binaries never collide, and fits Linux's 15-byte interface name limit.

use std::sync::atomic::{AtomicU32, Ordering};

/// Prefix of every namespace, interface and pin directory a test creates.
pub const PREFIX: &str = "slt";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A fresh name `slt<tag><pid><n>` of at most 15 bytes. `tag` (≤ 2 chars) tells resources apart
/// when debugging (`n` namespace, `v` veth, `p` pins ...).
pub fn unique(tag: &str) -> String {
    assert!(tag.len() <= 2, "tag {tag:?} too long");
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // pid: at most 22 bits on Linux (pid_max ≤ 4194304) = 6 hex digits; n wraps at 4096.
    let name = format!(
        "{PREFIX}{tag}{:x}-{:x}",
        std::process::id() & 0x3f_ffff,
        n & 0xfff
    );
    debug_assert!(name.len() <= 15, "{name}");
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_short_and_prefixed() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let n = unique("vv");
            assert!(n.len() <= 15, "{n}");
            assert!(n.starts_with(PREFIX));
            assert!(seen.insert(n));
        }
    }
}
