//! Unique names for test resources.
//!
//! Every name starts with [`PREFIX`] so a sweep can find leftovers, embeds the process id so
//! parallel test binaries never collide (and so a sweep can tell a live run's resources from
//! leftovers), and fits Linux's 15-byte interface name limit: `slt<tag>_<pid hex>_<n hex>`.

use std::sync::atomic::{AtomicU32, Ordering};

/// Prefix of every namespace, interface and pin directory a test creates.
pub const PREFIX: &str = "slt";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A fresh name `slt<tag>_<pid>_<n>` of at most 15 bytes. `tag` is one ASCII letter telling
/// resources apart when debugging (`n` namespace, `a`/`b` veth ends, `p` pins ...).
pub fn unique(tag: char) -> String {
    assert!(
        tag.is_ascii_alphabetic(),
        "tag {tag:?} must be one ASCII letter"
    );
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // n wraps at 4096.
    let name = format!("{PREFIX}{tag}_{:x}_{:x}", pid_field(), n & 0xfff);
    debug_assert!(name.len() <= 15, "{name}");
    name
}

/// This process's id as names carry it: at most 22 bits on Linux (pid_max ≤ 4194304), 6 hex
/// digits.
fn pid_field() -> u32 {
    std::process::id() & 0x3f_ffff
}

/// Whether [`unique`] made `name` in this process.
pub fn made_here(name: &str) -> bool {
    owner_pid(name) == Some(pid_field())
}

/// The process id embedded in a name made by [`unique`], if it is one.
pub fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let mut parts = rest.splitn(3, '_');
    let tag = parts.next()?;
    if tag.len() != 1 {
        return None;
    }
    u32::from_str_radix(parts.next()?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_short_and_prefixed() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let n = unique('a');
            assert!(n.len() <= 15, "{n}");
            assert!(n.starts_with(PREFIX));
            assert_eq!(owner_pid(&n), Some(std::process::id() & 0x3f_ffff));
            assert!(made_here(&n));
            assert!(seen.insert(n));
        }
    }

    #[test]
    fn owner_pid_rejects_foreign_names() {
        assert_eq!(owner_pid("eth0"), None);
        assert_eq!(owner_pid("sltxx_12_3"), None);
        assert_eq!(owner_pid("sltn_zz_3"), None);
        assert_eq!(owner_pid("sltn_1f_3"), Some(0x1f));
        assert!(!made_here("sltn_3fffff_3"));
        assert!(!made_here("eth0"));
    }
}
