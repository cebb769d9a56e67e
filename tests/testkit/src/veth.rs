//! veth pairs deleted when the guard drops.

use crate::{NetNs, Result, cmd, names};

/// One end of a veth pair as seen by a test: its name and the namespace it lives in (`None` =
/// the namespace the test runs in).
#[derive(Debug, Clone)]
pub struct End {
    pub name: String,
    pub ns: Option<String>,
}

impl End {
    /// `ip [-n ns] args...` with `{}` in `args` replaced by this end's name.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        let args: Vec<String> = args.iter().map(|a| a.replace("{}", &self.name)).collect();
        let mut full: Vec<&str> = Vec::new();
        if let Some(ns) = &self.ns {
            full.extend(["-n", ns.as_str()]);
        }
        full.extend(args.iter().map(String::as_str));
        cmd::ip(&full)
    }
}

/// A veth pair, both ends up. Deleting one end deletes the pair, which is what drop does.
#[derive(Debug)]
pub struct Veth {
    pub a: End,
    pub b: End,
}

impl Veth {
    /// Creates a pair with unique names, end `a` in `a_ns` and `b` in `b_ns` (`None` = current
    /// namespace), both set up.
    pub fn new(a_ns: Option<&NetNs>, b_ns: Option<&NetNs>) -> Result<Self> {
        let v = Self::new_down(a_ns, b_ns)?;
        v.a.ip(&["link", "set", "{}", "up"])?;
        v.b.ip(&["link", "set", "{}", "up"])?;
        Ok(v)
    }

    /// Like [`Veth::new`] but both ends stay down, for tests that must configure an interface
    /// (sysctls, address generation) before the kernel starts sending on it.
    pub fn new_down(a_ns: Option<&NetNs>, b_ns: Option<&NetNs>) -> Result<Self> {
        Self::named(names::unique('a'), a_ns, names::unique('b'), b_ns)
    }

    /// Creates a pair with chosen names (which should start with [`names::PREFIX`]); both ends
    /// stay down.
    pub fn named(
        a_name: String,
        a_ns: Option<&NetNs>,
        b_name: String,
        b_ns: Option<&NetNs>,
    ) -> Result<Self> {
        // Create in the current namespace, then move: creating directly with `netns` on both
        // ends leaves nothing to clean if the second move fails.
        cmd::ip(&[
            "link", "add", &a_name, "type", "veth", "peer", "name", &b_name,
        ])?;
        let veth = Self {
            a: End {
                name: a_name,
                ns: None,
            },
            b: End {
                name: b_name,
                ns: None,
            },
        };
        let mut veth = veth;
        if let Some(ns) = b_ns {
            cmd::ip(&["link", "set", &veth.b.name, "netns", ns.name()])?;
            veth.b.ns = Some(ns.name().to_owned());
        }
        if let Some(ns) = a_ns {
            cmd::ip(&["link", "set", &veth.a.name, "netns", ns.name()])?;
            veth.a.ns = Some(ns.name().to_owned());
        }
        Ok(veth)
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        // Either end's namespace may already be gone (taking the pair with it): try both.
        if self.a.ip(&["link", "del", "{}"]).is_err() {
            let _ = self.b.ip(&["link", "del", "{}"]);
        }
    }
}
