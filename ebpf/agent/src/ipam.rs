//! The CNI plugin's IPAM store, host-local's layout: `<dataDir>/<network>/<ip>`, one file per
//! reserved address holding `<container id>\r\n<ifname>` (older versions wrote the id alone);
//! `last_reserved_ip.N`, `lock` and temporary files are bookkeeping. The plugin is a separate
//! process, and the store is where every ADD and DEL lands first, on this node, without the API
//! server: Neighbor Discovery answers for its addresses, source validation backfills from it, and
//! `sixlane-agent ipam` lists it.

use std::{
    collections::BTreeSet,
    io,
    net::{IpAddr, Ipv6Addr},
    path::Path,
};

use serde::Serialize;

use crate::{Error, Result};

/// One reservation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reservation {
    pub network: String,
    pub address: IpAddr,
    pub container_id: String,
    pub ifname: String,
}

/// The IPv6 addresses reserved in network directory `dir` (none if it does not exist yet):
/// file names only, no file read.
pub fn reserved(dir: &Path) -> io::Result<BTreeSet<Ipv6Addr>> {
    let mut out = BTreeSet::new();
    for e in entries(dir)? {
        if let Ok(a) = e?.file_name().to_string_lossy().parse::<Ipv6Addr>() {
            out.insert(a);
        }
    }
    Ok(out)
}

/// The reservations of every network under `data_dir` (or only `network`), sorted.
pub fn reservations(data_dir: &Path, network: Option<&str>) -> Result<Vec<Reservation>> {
    let err = |e| Error::io("reading", data_dir, e);
    let mut out = Vec::new();
    for net in std::fs::read_dir(data_dir).map_err(err)? {
        let net = net.map_err(err)?;
        let name = net.file_name().to_string_lossy().into_owned();
        if !net.file_type().map_err(err)?.is_dir() || network.is_some_and(|n| n != name) {
            continue;
        }
        out.extend(network_reservations(&net.path(), &name)?);
    }
    out.sort_by(|a, b| (&a.network, a.address).cmp(&(&b.network, b.address)));
    Ok(out)
}

/// The reservations in network directory `dir` (none if it does not exist yet). A file removed
/// while it is read (a concurrent DEL) is skipped.
pub fn network_reservations(dir: &Path, network: &str) -> Result<Vec<Reservation>> {
    let mut out = Vec::new();
    for f in entries(dir).map_err(|e| Error::io("reading", dir, e))? {
        let f = f.map_err(|e| Error::io("reading", dir, e))?;
        let Ok(address) = f.file_name().to_string_lossy().parse::<IpAddr>() else {
            continue;
        };
        let text = match std::fs::read_to_string(f.path()) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("reading", f.path(), e)),
        };
        let mut lines = text.split(['\r', '\n']).filter(|l| !l.is_empty());
        out.push(Reservation {
            network: network.to_owned(),
            address,
            container_id: lines.next().unwrap_or_default().trim().to_owned(),
            ifname: lines.next().unwrap_or_default().trim().to_owned(),
        });
    }
    Ok(out)
}

/// `dir`'s entries; an empty iterator if it does not exist.
fn entries(dir: &Path) -> io::Result<Box<dyn Iterator<Item = io::Result<std::fs::DirEntry>>>> {
    match std::fs::read_dir(dir) {
        Ok(e) => Ok(Box::new(e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Box::new(std::iter::empty())),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("sixlane-ipam-{tag}-{}", std::process::id()))
    }

    #[test]
    fn addresses_skip_bookkeeping() {
        let dir = tmp("reserved");
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

    #[test]
    fn reservations_read_the_host_local_layout() {
        let dir = tmp("layout");
        let net = dir.join("sixlane");
        std::fs::create_dir_all(&net).unwrap();
        std::fs::write(net.join("fd00:10::5"), "0123456789abcdef0123\r\neth0").unwrap();
        std::fs::write(net.join("fd00:10::3"), "oldstyleid").unwrap();
        std::fs::write(net.join("last_reserved_ip.0"), "fd00:10::5").unwrap();
        std::fs::write(net.join("lock"), "").unwrap();
        let rows = reservations(&dir, None).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].address.to_string(), "fd00:10::3");
        assert_eq!(
            (rows[0].container_id.as_str(), rows[0].ifname.as_str()),
            ("oldstyleid", "")
        );
        assert_eq!(rows[1].container_id, "0123456789abcdef0123");
        assert_eq!(rows[1].ifname, "eth0");
        assert!(reservations(&dir, Some("other")).unwrap().is_empty());
        assert!(
            network_reservations(&dir.join("nope"), "nope")
                .unwrap()
                .is_empty()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
