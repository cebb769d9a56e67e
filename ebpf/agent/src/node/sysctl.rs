//! Kernel settings (sysctls) the agent needs on its node. A setting it cannot apply makes the
//! agent not ready, with a reason naming the sysctl, the path tried and the fix: a warning in a
//! log nobody reads would leave, say, NAT64 silently not forwarding.
//!
//! Each setting is read first through the agent's own `/proc/sys` (which shows the network
//! namespace the agent runs in, the node's): already right, nothing is written. Otherwise it is
//! written under `node.sysctlDir`. Under kubelet the runtime mounts a container's `/proc/sys`
//! read-only, so the DaemonSet mounts the host's `/proc/sys/net` at `/host/proc/sys/net` (as
//! Cilium does) and its configuration sets `sysctlDir: /host/proc/sys`; as a plain root process
//! the agent writes `/proc/sys` itself. The value is read back through `/proc/sys`, so a
//! directory that is not this node's (a wrong mount) is caught too.

use std::{
    fs,
    path::{Path, PathBuf},
};

use sixlane_attach::chain;

use crate::{
    Error, Result,
    config::{Config, PROC_SYS},
    nat64::config::Mode as Nat64Mode,
};

/// One setting the agent needs, and why (for the reason it reports when it cannot apply it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sysctl {
    /// Dotted name, `net.ipv4.ip_forward`.
    pub key: &'static str,
    pub value: &'static str,
    pub needed_by: &'static str,
}

impl Sysctl {
    /// The file of this sysctl under a `/proc/sys`-like directory.
    pub fn path_under(&self, root: &Path) -> PathBuf {
        root.join(self.key.replace('.', "/"))
    }
}

/// The sysctls `cfg` needs.
pub fn wanted(cfg: &Config) -> Vec<Sysctl> {
    let mut w = Vec::new();
    if cfg.nat64.mode == Nat64Mode::Translate {
        // bpf_fib_lookup refuses IPv4 forwarding lookups where forwarding is off: translated
        // packets would be dropped.
        w.push(Sysctl {
            key: "net.ipv4.ip_forward",
            value: "1",
            needed_by: "NAT64 (nat64.mode: translate)",
        });
    }
    w
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path)
        .map(|v| v.trim().to_owned())
        .map_err(|e| Error::io("reading", path, e))
}

/// Applies one setting: read through `read_root` (the agent's own `/proc/sys`), written under
/// `write_root` only when it differs, then read back.
pub fn apply(s: &Sysctl, read_root: &Path, write_root: &Path) -> Result<()> {
    let read_path = s.path_under(read_root);
    if read(&read_path)? == s.value {
        return Ok(());
    }
    let path = s.path_under(write_root);
    fs::write(&path, s.value).map_err(|source| Error::SysctlWrite {
        key: s.key,
        value: s.value,
        needed_by: s.needed_by,
        path: path.clone(),
        source,
    })?;
    let got = read(&read_path)?;
    if got != s.value {
        return Err(Error::SysctlNotApplied {
            key: s.key,
            value: s.value,
            path,
            read: read_path,
            got,
        });
    }
    tracing::info!(key = s.key, value = s.value, path = %path.display(), "sysctl set");
    Ok(())
}

/// Applies every sysctl `cfg` needs; returns one readiness reason per setting not in place.
pub fn ensure(cfg: &Config) -> Vec<String> {
    wanted(cfg)
        .iter()
        .filter_map(|s| apply(s, Path::new(PROC_SYS), &cfg.node.sysctl_dir).err())
        .map(|e| {
            let reason = chain(&e).to_string();
            tracing::error!("{reason}");
            reason
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FWD: Sysctl = Sysctl {
        key: "net.ipv4.ip_forward",
        value: "1",
        needed_by: "NAT64 (nat64.mode: translate)",
    };

    /// A `/proc/sys` stand-in under the temp dir with `net.ipv4.ip_forward` at `value`.
    struct Root(PathBuf);

    impl Root {
        fn new(tag: &str, value: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("sixlane-sysctl-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(dir.join("net/ipv4")).unwrap();
            fs::write(dir.join("net/ipv4/ip_forward"), format!("{value}\n")).unwrap();
            Self(dir)
        }
        fn value(&self) -> String {
            fs::read_to_string(FWD.path_under(&self.0)).unwrap()
        }
    }

    impl Drop for Root {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_setting_already_in_place_is_not_written() {
        let proc_sys = Root::new("set", "1");
        // Writing anywhere under here would fail: nothing may be tried.
        let nowhere = proc_sys.0.join("missing");
        apply(&FWD, &proc_sys.0, &nowhere).unwrap();
        assert_eq!(proc_sys.value(), "1\n", "left untouched");
    }

    #[test]
    fn a_setting_that_differs_is_written_and_read_back() {
        let proc_sys = Root::new("write", "0");
        apply(&FWD, &proc_sys.0, &proc_sys.0).unwrap();
        assert_eq!(proc_sys.value(), "1");
    }

    #[test]
    fn an_unwritable_setting_names_the_sysctl_the_path_and_the_fix() {
        let proc_sys = Root::new("ro", "0");
        // What the DaemonSet looks like without the proc-sys-net mount.
        let host = proc_sys.0.join("host/proc/sys");
        let e = apply(&FWD, &proc_sys.0, &host).unwrap_err();
        assert!(matches!(e, Error::SysctlWrite { .. }), "{e:?}");
        let msg = chain(&e).to_string();
        for part in [
            "cannot set net.ipv4.ip_forward=1, which NAT64 (nat64.mode: translate) needs",
            &format!(
                "writing {}: No such file or directory",
                host.join("net/ipv4/ip_forward").display()
            ),
            "sysctl -w net.ipv4.ip_forward=1",
            "node.sysctlDir",
        ] {
            assert!(msg.contains(part), "{part:?} missing from: {msg}");
        }
        assert_eq!(msg.matches("No such file").count(), 1, "{msg}");
        assert_eq!(proc_sys.value(), "0\n");
    }

    #[test]
    fn a_write_that_does_not_reach_this_node_is_caught() {
        let proc_sys = Root::new("own", "0");
        let elsewhere = Root::new("other", "0");
        let e = apply(&FWD, &proc_sys.0, &elsewhere.0).unwrap_err();
        assert!(
            matches!(&e, Error::SysctlNotApplied { got, .. } if got == "0"),
            "{e:?}"
        );
        assert!(e.to_string().contains("is not this node's"), "{e}");
    }

    #[test]
    fn only_translating_nodes_need_ip_forward() {
        let mut cfg = Config::default();
        assert!(wanted(&cfg).is_empty());
        cfg.nat64.mode = Nat64Mode::Translate;
        assert_eq!(wanted(&cfg), [FWD]);
        cfg.nat64.mode = Nat64Mode::Route;
        assert!(wanted(&cfg).is_empty());
    }
}
