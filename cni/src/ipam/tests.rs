//! Allocator and store against a temporary directory (no root needed).

use std::{
    fs,
    net::{IpAddr, Ipv6Addr},
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
};

use super::*;

struct Tmp(PathBuf);

impl Tmp {
    fn new() -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "sixlane-ipam-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn ip(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// (subnet, rangeStart, rangeEnd)
type Spec<'a> = (&'a str, Option<&'a str>, Option<&'a str>);

fn conf(dir: &Path, sets: &[&[Spec<'_>]]) -> IpamConf {
    IpamConf {
        kind: "sixlane-ipam".into(),
        ranges: sets
            .iter()
            .map(|set| {
                RangeSet::canonicalize(
                    &set.iter()
                        .map(|(subnet, start, end)| RangeSpec {
                            subnet: subnet.parse().unwrap(),
                            start: start.map(ip),
                            end: end.map(ip),
                            gateway: None,
                        })
                        .collect::<Vec<_>>(),
                )
                .unwrap()
            })
            .collect(),
        routes: Vec::new(),
        data_dir: dir.to_owned(),
        dns: Default::default(),
        requested: Vec::new(),
    }
}

fn store(dir: &Path, boot: &str) -> Store {
    Store::open(dir, "net", boot.into()).unwrap()
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir.join("net"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn round_robin_wraps_and_exhausts() {
    let t = Tmp::new();
    let c = conf(&t.0, &[&[("fd00::/64", Some("fd00::1"), Some("fd00::4"))]]);
    let s = store(&t.0, "b1");
    let a = allocate(&s, &c, "c1", "eth0").unwrap();
    assert_eq!(a[0].ip, ip("fd00::2"), "the gateway ::1 is skipped");
    assert_eq!(a[0].gateway, ip("fd00::1"));
    let b = allocate(&s, &c, "c2", "eth0").unwrap();
    assert_eq!(b[0].ip, ip("fd00::3"));
    release(&s, "c1", "eth0").unwrap();
    // Round robin: ::4 next even though ::2 is free again, then wrap to ::2.
    assert_eq!(allocate(&s, &c, "c3", "eth0").unwrap()[0].ip, ip("fd00::4"));
    assert_eq!(allocate(&s, &c, "c4", "eth0").unwrap()[0].ip, ip("fd00::2"));
    assert_eq!(exhausted(&s, &c).unwrap(), vec![0]);
    let e = allocate(&s, &c, "c5", "eth0").unwrap_err();
    assert_eq!(e.code(), 11);
    assert!(e.to_string().contains("no IP addresses available"), "{e}");
    release(&s, "c2", "eth0").unwrap();
    assert!(exhausted(&s, &c).unwrap().is_empty());
}

#[test]
fn duplicate_allocation_is_refused_and_sets_roll_back() {
    let t = Tmp::new();
    let c = conf(
        &t.0,
        &[
            &[("fd00::/64", None, None)],
            &[("fd01::/64", Some("fd01::2"), Some("fd01::2"))],
        ],
    );
    let s = store(&t.0, "b1");
    let a = allocate(&s, &c, "c1", "eth0").unwrap();
    assert_eq!(a.len(), 2);
    assert_eq!(a[1].ip, ip("fd01::2"));
    assert_eq!(allocate(&s, &c, "c1", "eth0").unwrap_err().code(), 11);
    // Set 1 is full: c2's address from set 0 must be given back.
    let before = files(&t.0);
    assert!(allocate(&s, &c, "c2", "eth0").is_err());
    let after: Vec<String> = files(&t.0);
    assert_eq!(
        before.iter().filter(|f| f.contains(':')).count(),
        after.iter().filter(|f| f.contains(':')).count()
    );
}

#[test]
fn a_reservation_whose_bookkeeping_fails_is_released() {
    let t = Tmp::new();
    let c = conf(&t.0, &[&[("fd00::/64", None, None)]]);
    let s = store(&t.0, "b1");
    // `last_reserved_ip.0` cannot be replaced: a directory stands in its place.
    fs::create_dir_all(t.0.join("net/last_reserved_ip.0")).unwrap();
    let e = allocate(&s, &c, "c1", "eth0").unwrap_err();
    assert!(e.to_string().contains("last_reserved_ip.0"), "{e}");
    let left: Vec<String> = files(&t.0)
        .into_iter()
        .filter(|f| f.contains(':'))
        .collect();
    assert!(left.is_empty(), "the failed ADD left {left:?}");
    // Once the store is usable again, the address is free.
    fs::remove_dir(t.0.join("net/last_reserved_ip.0")).unwrap();
    assert_eq!(allocate(&s, &c, "c1", "eth0").unwrap()[0].ip, ip("fd00::2"));
}

#[test]
fn requested_addresses_are_honoured_or_fail() {
    let t = Tmp::new();
    let mut c = conf(&t.0, &[&[("fd00::/64", None, None)]]);
    c.requested = vec![ip("fd00::99")];
    let s = store(&t.0, "b1");
    assert_eq!(
        allocate(&s, &c, "c1", "eth0").unwrap()[0].ip,
        ip("fd00::99")
    );
    let e = allocate(&s, &c, "c2", "eth0").unwrap_err();
    assert_eq!(e.code(), 11, "{e}");
    assert!(e.to_string().contains("not available"));
    // host-local writes last_reserved_ip for requested addresses too.
    assert_eq!(
        fs::read_to_string(t.0.join("net/last_reserved_ip.0")).unwrap(),
        "fd00::99"
    );
}

#[test]
fn on_disk_format_is_host_locals() {
    let t = Tmp::new();
    let c = conf(&t.0, &[&[("fd00:10:244:1::/64", None, None)]]);
    let s = store(&t.0, "b1");
    allocate(&s, &c, "abc123", "eth0").unwrap();
    let dir = t.0.join("net");
    assert_eq!(
        files(&t.0),
        ["fd00:10:244:1::2", "last_reserved_ip.0", "lock"]
    );
    assert_eq!(
        fs::read(dir.join("fd00:10:244:1::2")).unwrap(),
        b"abc123\r\neth0"
    );
    assert_eq!(
        fs::read(dir.join("last_reserved_ip.0")).unwrap(),
        b"fd00:10:244:1::2"
    );
    let mode = |p: &str| fs::metadata(dir.join(p)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("fd00:10:244:1::2"), 0o600);
    assert_eq!(mode("last_reserved_ip.0"), 0o600);
    assert_eq!(
        fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o755
    );
    // Nothing of ours inside the network directory besides host-local's files: the boot stamps
    // live in <dataDir>/.sixlane/<network>.
    assert!(t.0.join(".sixlane/net/fd00:10:244:1::2").exists());
}

#[test]
fn reads_what_host_local_wrote() {
    let t = Tmp::new();
    let dir = t.0.join("net");
    fs::create_dir_all(&dir).unwrap();
    // As host-local leaves it: a current-format file, a legacy id-only file, an IPv4 file from an
    // old dual-stack config, last_reserved_ip and the lock.
    fs::write(dir.join("fd00::5"), "ctr-a\r\neth0").unwrap();
    fs::write(dir.join("fd00::6"), "ctr-legacy").unwrap();
    fs::write(dir.join("10.0.0.5"), "ctr-v4\r\neth0").unwrap();
    fs::write(dir.join("last_reserved_ip.0"), "fd00::6").unwrap();
    fs::write(dir.join("lock"), "").unwrap();
    let c = conf(&t.0, &[&[("fd00::/64", None, None)]]);
    let s = store(&t.0, "b1");
    // Round robin continues after host-local's last reservation.
    assert_eq!(
        allocate(&s, &c, "new", "eth0").unwrap()[0].ip,
        ip("fd00::7")
    );
    // The reservations are respected and found by ID (legacy files by container ID alone).
    assert_eq!(
        check(&s, "ctr-a", "eth0").unwrap(),
        [IpAddr::V6(ip("fd00::5"))]
    );
    assert_eq!(
        check(&s, "ctr-legacy", "eth9").unwrap(),
        [IpAddr::V6(ip("fd00::6"))]
    );
    assert_eq!(
        release(&s, "ctr-legacy", "eth0").unwrap(),
        [IpAddr::V6(ip("fd00::6"))]
    );
    assert_eq!(
        release(&s, "ctr-a", "eth0").unwrap(),
        [IpAddr::V6(ip("fd00::5"))]
    );
    assert!(!dir.join("fd00::5").exists());
    // A requested address host-local holds is not handed out twice.
    let mut c2 = c.clone();
    c2.requested = vec![ip("fd00::7")];
    assert_eq!(allocate(&s, &c2, "other", "eth0").unwrap_err().code(), 11);
}

#[test]
fn gc_keeps_only_valid_attachments() {
    let t = Tmp::new();
    let c = conf(&t.0, &[&[("fd00::/64", None, None)]]);
    let s = store(&t.0, "b1");
    for id in ["a", "b", "c"] {
        allocate(&s, &c, id, "eth0").unwrap();
    }
    fs::write(t.0.join("net/fd00::50"), "legacy-keep").unwrap();
    fs::write(t.0.join("net/fd00::51"), "legacy-drop").unwrap();
    fs::write(t.0.join("net/fd00::52"), "").unwrap(); // a crashed writer's empty file
    let valid = vec![
        ("a".to_owned(), "eth0".to_owned()),
        ("legacy-keep".to_owned(), "eth1".to_owned()),
    ];
    let mut released = gc(&s, &valid).unwrap();
    released.sort();
    let want: Vec<IpAddr> = ["fd00::3", "fd00::4", "fd00::51", "fd00::52"]
        .iter()
        .map(|s| IpAddr::V6(ip(s)))
        .collect();
    assert_eq!(released, want);
    assert_eq!(
        files(&t.0),
        ["fd00::2", "fd00::50", "last_reserved_ip.0", "lock"]
    );
    // Stamps of released addresses are gone too.
    assert!(!t.0.join(".sixlane/net/fd00::3").exists());
    assert!(t.0.join(".sixlane/net/fd00::2").exists());
}

#[test]
fn reservations_from_an_earlier_boot_are_released_once() {
    let t = Tmp::new();
    let c = conf(&t.0, &[&[("fd00::/64", None, None)]]);
    let s1 = store(&t.0, "boot-1");
    allocate(&s1, &c, "old", "eth0").unwrap(); // fd00::2
    // host-local's reservation (unstamped) survives: we cannot know its boot.
    fs::write(t.0.join("net/fd00::40"), "hl\r\neth0").unwrap();
    drop(s1);
    let s2 = store(&t.0, "boot-2");
    let a = allocate(&s2, &c, "new", "eth0").unwrap();
    assert_eq!(a[0].ip, ip("fd00::3"), "round robin still continues");
    assert!(
        !t.0.join("net/fd00::2").exists(),
        "boot-1 reservation released"
    );
    assert!(t.0.join("net/fd00::40").exists());
    assert_eq!(
        fs::read_to_string(t.0.join(".sixlane/net/boot")).unwrap(),
        "boot-2"
    );
    // A stamp whose address was re-reserved by someone else since is not trusted.
    let s3 = store(&t.0, "boot-3");
    fs::write(t.0.join("net/fd00::3"), "someone-else\r\neth0").unwrap();
    allocate(&s3, &c, "x", "eth0").unwrap();
    assert!(t.0.join("net/fd00::3").exists());
}

#[test]
fn stale_temp_files_of_dead_writers_are_removed() {
    let t = Tmp::new();
    let c = conf(&t.0, &[&[("fd00::/64", None, None)]]);
    let s = store(&t.0, "b1");
    allocate(&s, &c, "a", "eth0").unwrap();
    // pid 0x3fffff is above any pid_max: certainly dead.
    let stale = t.0.join("net/.last_reserved_ip.0.tmp4194303");
    fs::write(&stale, "fd00::9").unwrap();
    release(&s, "a", "eth0").unwrap();
    assert!(!stale.exists());
}

#[test]
fn parallel_allocations_in_one_process_are_distinct() {
    let t = Tmp::new();
    let c = conf(&t.0, &[&[("fd00::/120", None, None)]]);
    let ips: Vec<Ipv6Addr> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..32)
            .map(|i| {
                let (c, dir) = (&c, &t.0);
                sc.spawn(move || {
                    let s = store(dir, "b1");
                    allocate(&s, c, &format!("c{i}"), "eth0").unwrap()[0].ip
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let uniq: std::collections::HashSet<_> = ips.iter().collect();
    assert_eq!(uniq.len(), 32);
}
