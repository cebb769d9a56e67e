//! Interface names and indexes in the calling thread's network namespace, and the names of the
//! host-side veths the CNI plugin makes (the agent finds them by the same rule).

use std::ffi::{CStr, CString};

/// The index of interface `name`, if it exists.
pub fn index(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (idx != 0).then_some(idx)
}

/// The name of the interface with index `index`, if it exists.
pub fn name(index: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `buf` has IF_NAMESIZE bytes, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: if_indextoname wrote a NUL-terminated name into `buf`.
    let s = unsafe { CStr::from_ptr(buf.as_ptr()) };
    s.to_str().ok().map(str::to_owned)
}

/// The host-side veth name for an attachment: `sl` + 13 hex digits of a 64-bit FNV-1a hash of
/// `containerID \0 ifname`. Deterministic (DEL and GC find it without state), 15 bytes (IFNAMSIZ),
/// and 52 bits make a collision among a node's pods vanishingly unlikely; a collision would fail
/// ADD with EEXIST, never touch the other pod.
pub fn host_ifname(container_id: &str, ifname: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in container_id
        .as_bytes()
        .iter()
        .chain(&[0u8])
        .chain(ifname.as_bytes())
    {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("sl{:013x}", h >> 12)
}

/// Whether `name` looks like a host veth made by [`host_ifname`].
pub fn is_host_ifname(name: &str) -> bool {
    name.len() == 15
        && name.starts_with("sl")
        && name[2..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_deterministic_short_and_distinct() {
        let a = host_ifname("abc", "eth0");
        assert_eq!(a, host_ifname("abc", "eth0"));
        assert_eq!(a.len(), 15);
        assert!(is_host_ifname(&a), "{a}");
        assert_ne!(a, host_ifname("abc", "eth1"));
        // The separator keeps ("ab","ceth0") apart from ("abc","eth0").
        assert_ne!(host_ifname("ab", "ceth0"), a);
        let mut seen = std::collections::HashSet::new();
        for i in 0..20_000 {
            assert!(seen.insert(host_ifname(&format!("{i:064x}"), "eth0")));
        }
        assert!(!is_host_ifname("eth0"));
        assert!(!is_host_ifname("sltn_1_2"));
    }
}
