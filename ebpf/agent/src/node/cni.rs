//! The CNI configuration the agent writes for the runtime, and the check that the plugin
//! binaries the DaemonSet's init container installs are there.
//!
//! The conflist format is the CNI plugin's contract (`cni/`): `sixlane` with its built-in
//! `sixlane-ipam` (host-local format; not a separate binary) and the keys below.

use std::{
    fs,
    io::Write as _,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
};

use ipnet::Ipv6Net;
use serde_json::{Value, json};

use crate::{
    Error, Result,
    config::{CniConfig, Dataplane},
};
use sixlane_common::layout::DEFAULT_PIN_ROOT;

/// The conflist's network name: also the IPAM store's directory under `cni.dataDir`.
pub const NETWORK: &str = "sixlane";

/// The plugin binaries that must be in `cni.binDir`.
pub const BINARIES: [&str; 1] = ["sixlane"];

/// A route the pods get towards the NAT64 prefix, with an MTU and MSS sized for the IPv4 path
/// (so TCP through NAT64 never needs PMTUD), from `Nat64Config::pod_route`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Nat64Route {
    pub prefix: Ipv6Net,
    pub mtu: u32,
    pub advmss: u32,
}

/// Everything the conflist is built from.
#[derive(Clone, Debug)]
pub struct Inputs<'a> {
    pub cni: &'a CniConfig,
    pub pod_cidr: Ipv6Net,
    pub mtu: u32,
    pub pin_root: &'a Path,
    pub nat64: Option<Nat64Route>,
}

/// The conflist JSON.
pub fn conflist(i: &Inputs<'_>) -> Value {
    let mut routes = vec![json!({"dst": "::/0"})];
    if let Some(n) = i.nat64 {
        routes.push(json!({"dst": n.prefix.to_string(), "mtu": n.mtu, "advmss": n.advmss}));
    }
    let dataplane = match i.cni.dataplane {
        Dataplane::Required => "required",
        Dataplane::Optional => "optional",
        Dataplane::Off => "off",
    };
    json!({
        "cniVersion": "1.0.0",
        "name": NETWORK,
        "plugins": [{
            "type": "sixlane",
            "ipam": {
                "type": "sixlane-ipam",
                "ranges": [[{"subnet": i.pod_cidr.to_string()}]],
                "routes": routes,
                "dataDir": i.cni.data_dir.display().to_string(),
            },
            "mtu": i.mtu,
            "dataplane": dataplane,
            "attach": i.cni.attach.as_str(),
            "pinRoot": i.pin_root.display().to_string(),
            "logFile": i.cni.log_file.display().to_string(),
            "logLevel": i.cni.log_level,
            // containerd then passes the pod's annotations: the source-validation opt-out.
            "capabilities": {"io.kubernetes.cri.pod-annotations": true},
        }]
    })
}

/// Writes `body` to `path` so readers see the old file or the new one, never a part: a
/// temporary file in the same directory, fsync, rename, fsync the directory.
pub fn write_atomic(path: &Path, body: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    // Dot-prefixed and not ending in .conflist/.conf/.json: runtimes ignore it while it exists.
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let res = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(body)?;
        f.set_permissions(fs::Permissions::from_mode(0o644))?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

/// Checks that every plugin binary is installed and executable.
pub fn check_binaries(bin_dir: &Path) -> Result<()> {
    for b in BINARIES {
        let path = bin_dir.join(b);
        match fs::metadata(&path) {
            Ok(md) if md.is_file() && md.permissions().mode() & 0o111 != 0 => {}
            Ok(_) => return Err(Error::CniPluginNotExecutable { path }),
            Err(_) => return Err(Error::CniPluginMissing { path }),
        }
    }
    Ok(())
}

/// Writes the conflist if its content changed; returns its path and whether it was written.
pub fn install(i: &Inputs<'_>) -> Result<(PathBuf, bool)> {
    let path = i.cni.conf_dir.join(&i.cni.conf_name);
    let mut body = serde_json::to_vec_pretty(&conflist(i)).expect("json");
    body.push(b'\n');
    if fs::read(&path).is_ok_and(|old| old == body) {
        return Ok((path, false));
    }
    fs::create_dir_all(&i.cni.conf_dir).map_err(|e| Error::io("writing", &i.cni.conf_dir, e))?;
    write_atomic(&path, &body).map_err(|e| Error::io("writing", &path, e))?;
    Ok((path, true))
}

/// The default pin root as the CNI plugin sees it (for docs and tests).
pub fn default_pin_root() -> &'static Path {
    Path::new(DEFAULT_PIN_ROOT)
}

#[cfg(test)]
mod tests {
    use std::{
        io::Read as _,
        sync::{
            Barrier,
            atomic::{AtomicBool, Ordering},
        },
        thread,
    };

    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sixlane-cni-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn conflist_has_exactly_the_plugin_contract() {
        let cni = CniConfig::default();
        let mut i = Inputs {
            cni: &cni,
            pod_cidr: "fd00:10:244:1::/64".parse().unwrap(),
            mtu: 1500,
            pin_root: default_pin_root(),
            nat64: None,
        };
        let want = json!({
            "cniVersion": "1.0.0",
            "name": "sixlane",
            "plugins": [{
                "type": "sixlane",
                "ipam": {
                    "type": "sixlane-ipam",
                    "ranges": [[{"subnet": "fd00:10:244:1::/64"}]],
                    "routes": [{"dst": "::/0"}],
                    "dataDir": "/var/lib/cni/networks"
                },
                "mtu": 1500,
                "dataplane": "required",
                "attach": "tc",
                "pinRoot": "/sys/fs/bpf/sixlane",
                "logFile": "/var/log/sixlane-cni.log",
                "logLevel": "info",
                "capabilities": {"io.kubernetes.cri.pod-annotations": true}
            }]
        });
        assert_eq!(conflist(&i), want);
        i.nat64 = Some(Nat64Route {
            prefix: "64:ff9b::/96".parse().unwrap(),
            mtu: 1480,
            advmss: 1420,
        });
        assert_eq!(
            conflist(&i)["plugins"][0]["ipam"]["routes"][1],
            json!({"dst": "64:ff9b::/96", "mtu": 1480, "advmss": 1420})
        );
    }

    #[test]
    fn install_writes_atomically_and_only_on_change() {
        let d = tmpdir("install");
        let cni = CniConfig {
            conf_dir: d.join("net.d"),
            ..Default::default()
        };
        let i = Inputs {
            cni: &cni,
            pod_cidr: "fd00:10::/64".parse().unwrap(),
            mtu: 1400,
            pin_root: Path::new("/sys/fs/bpf/x"),
            nat64: None,
        };
        let (path, wrote) = install(&i).unwrap();
        assert!(wrote);
        assert_eq!(path, d.join("net.d/10-sixlane.conflist"));
        let v: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(v["plugins"][0]["mtu"], 1400);
        assert!(
            !install(&i).unwrap().1,
            "unchanged content is not rewritten"
        );
        let leftovers: Vec<_> = fs::read_dir(d.join("net.d")).unwrap().flatten().collect();
        assert_eq!(leftovers.len(), 1, "no temporary files left");

        // A changed conflist replaces the file rather than rewriting it: a runtime that opened
        // the old one still reads all of it.
        let mut old = fs::File::open(&path).unwrap();
        let changed = Inputs {
            mtu: 1500,
            ..i.clone()
        };
        assert!(install(&changed).unwrap().1);
        let mut was = String::new();
        old.read_to_string(&mut was).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&was).unwrap(), v);
        let now: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(now["plugins"][0]["mtu"], 1500);

        // A reader polling the path while it is rewritten sees one whole conflist or the other,
        // never a missing, empty or partial file.
        let (started, done) = (Barrier::new(2), AtomicBool::new(false));
        thread::scope(|s| {
            s.spawn(|| {
                started.wait();
                loop {
                    let body = fs::read(&path).expect("the conflist is always there");
                    let v: Value = serde_json::from_slice(&body).expect("a whole conflist");
                    let mtu = &v["plugins"][0]["mtu"];
                    assert!(mtu == 1400 || mtu == 1500, "{mtu}");
                    if done.load(Ordering::Relaxed) {
                        break;
                    }
                }
            });
            started.wait();
            for n in 0..50 {
                assert!(install(if n % 2 == 0 { &i } else { &changed }).unwrap().1);
            }
            done.store(true, Ordering::Relaxed);
        });
        let leftovers: Vec<_> = fs::read_dir(d.join("net.d")).unwrap().flatten().collect();
        assert_eq!(leftovers.len(), 1, "no temporary files left");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn binaries_must_be_installed_and_executable() {
        let d = tmpdir("bins");
        let e = check_binaries(&d).unwrap_err().to_string();
        assert!(e.contains("sixlane is not installed"), "{e}");
        for b in BINARIES {
            fs::write(d.join(b), "#!/bin/sh\n").unwrap();
        }
        assert!(matches!(
            check_binaries(&d),
            Err(Error::CniPluginNotExecutable { .. })
        ));
        for b in BINARIES {
            fs::set_permissions(d.join(b), fs::Permissions::from_mode(0o755)).unwrap();
        }
        check_binaries(&d).unwrap();
        fs::remove_dir_all(&d).unwrap();
    }
}
