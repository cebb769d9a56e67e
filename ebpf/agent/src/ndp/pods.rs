//! This node's pods' addresses, from the CNI plugin's IPAM store (host-local's layout,
//! `<dataDir>/<network>/<ip>`, one file per reserved address): the plugin is a separate process,
//! and the store is where every ADD and DEL lands first, on this node, without the API server.

use std::{collections::BTreeSet, io, net::Ipv6Addr, path::Path};

/// The IPv6 addresses reserved in network directory `dir` (none if it does not exist yet).
pub fn reserved(dir: &Path) -> io::Result<BTreeSet<Ipv6Addr>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(e) => return Err(e),
    };
    let mut out = BTreeSet::new();
    for e in entries {
        // Bookkeeping (`lock`, `last_reserved_ip.N`) and temporary files do not parse.
        if let Ok(a) = e?.file_name().to_string_lossy().parse::<Ipv6Addr>() {
            out.insert(a);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_reservations_and_skips_bookkeeping() {
        let dir = std::env::temp_dir().join(format!("sixlane-ndp-pods-{}", std::process::id()));
        assert!(reserved(&dir).unwrap().is_empty());
        std::fs::create_dir_all(&dir).unwrap();
        for f in [
            "2001:db8::a",
            "2001:db8::b",
            "lock",
            "last_reserved_ip.0",
            ".2001:db8::c.tmp1",
        ] {
            std::fs::write(dir.join(f), "id\r\neth0").unwrap();
        }
        let got = reserved(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let want: BTreeSet<Ipv6Addr> = ["2001:db8::a", "2001:db8::b"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert_eq!(got, want);
    }
}
