//! DNS64 for tests and the demo: real resolvers from Debian's `unbound`, run in namespaces.
//!
//! - [`Unbound::authority`]: an authoritative stand-in for the IPv4 internet's DNS (static
//!   `local-data` records, IPv4 only);
//! - [`Unbound::dns64`]: a recursive resolver with the `dns64` module (RFC 6147): for a name
//!   with only A records it synthesizes AAAA records in the NAT64 prefix;
//! - [`with_resolver`]: runs a command in a namespace with a private `/etc/resolv.conf`
//!   pointing at a resolver, so ordinary programs (curl, getent) resolve through it.
//!
//! Processes are ended and their directories removed when the guards drop.

use std::{
    fmt::Write as _,
    fs,
    net::IpAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use crate::{ChildGuard, Error, NetNs, Result, names};

/// A running unbound and its directory (configuration, pid file, resolv.conf for clients).
#[derive(Debug)]
pub struct Unbound {
    child: ChildGuard,
    dir: PathBuf,
    listen: IpAddr,
}

/// Ports the NAT64 translator may own on a pool address (sixlane's default range): a resolver
/// running on a translating node must not source its queries from them, or the replies would
/// be taken for unsolicited NAT64 traffic (see docs/nat64.md, "The node's own traffic").
pub const NAT64_PORTS: &str = "61001-65535";

fn common(dir: &Path, listen: IpAddr) -> String {
    let mut c = String::new();
    let _ = writeln!(c, "server:");
    let _ = writeln!(c, "  interface: {listen}");
    let _ = writeln!(c, "  port: 53");
    let _ = writeln!(c, "  do-ip4: yes");
    let _ = writeln!(c, "  do-ip6: yes");
    let _ = writeln!(c, "  access-control: 0.0.0.0/0 allow");
    let _ = writeln!(c, "  access-control: ::/0 allow");
    let _ = writeln!(c, "  username: \"\"");
    let _ = writeln!(c, "  chroot: \"\"");
    let _ = writeln!(c, "  directory: \"{}\"", dir.display());
    let _ = writeln!(c, "  pidfile: \"{}/unbound.pid\"", dir.display());
    let _ = writeln!(c, "  use-syslog: no");
    let _ = writeln!(c, "  logfile: \"\"");
    let _ = writeln!(c, "  verbosity: 1");
    let _ = writeln!(c, "  do-daemonize: no");
    let _ = writeln!(c, "  num-threads: 1");
    let _ = writeln!(c, "  do-not-query-localhost: no");
    let _ = writeln!(c, "  outgoing-port-avoid: {NAT64_PORTS}");
    c
}

impl Unbound {
    fn wait_ready(&self, ns: &NetNs) -> Result<()> {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            let out = ns.exec("ss", &["-Hlnu", "sport = :53"])?;
            if out.contains(&self.listen.to_string()) {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(50));
        }
        Err(Error::Timeout {
            what: format!("unbound to listen on {}:53 in {}", self.listen, ns.name()),
            secs: 10,
        })
    }

    /// An authoritative stand-in: `zone` answered from `records` (name, address), nothing else.
    pub fn authority(
        ns: &NetNs,
        listen: IpAddr,
        zone: &str,
        records: &[(&str, IpAddr)],
    ) -> Result<Self> {
        let dir_hint = PathBuf::from("/nonexistent");
        let mut c = common(&dir_hint, listen);
        let _ = writeln!(c, "  module-config: \"iterator\"");
        let _ = writeln!(c, "  local-zone: \"{zone}\" static");
        for (name, addr) in records {
            let rr = if addr.is_ipv4() { "A" } else { "AAAA" };
            let _ = writeln!(c, "  local-data: \"{name} 60 IN {rr} {addr}\"");
        }
        Self::start_fixing_dir(ns, listen, c)
    }

    /// A DNS64 resolver (unbound's `dns64` module, RFC 6147) synthesizing AAAA records in
    /// `prefix` (e.g. `fd00:6464::/96`) for names with only A records. Names under each
    /// `(zone, upstream)` are resolved by forwarding to that upstream.
    pub fn dns64(
        ns: &NetNs,
        listen: IpAddr,
        prefix: &str,
        forward: &[(&str, IpAddr)],
    ) -> Result<Self> {
        let dir_hint = PathBuf::from("/nonexistent");
        let mut c = common(&dir_hint, listen);
        let _ = writeln!(c, "  module-config: \"dns64 iterator\"");
        let _ = writeln!(c, "  dns64-prefix: {prefix}");
        for (zone, _) in forward {
            let _ = writeln!(c, "  domain-insecure: \"{zone}\"");
            // unbound answers RFC 6761 names (test., invalid., ...) itself by default; a
            // transparent local zone lets the forwarded zone through.
            let _ = writeln!(c, "  local-zone: \"{zone}\" transparent");
        }
        for (zone, upstream) in forward {
            let _ = writeln!(c, "forward-zone:");
            let _ = writeln!(c, "  name: \"{zone}\"");
            let _ = writeln!(c, "  forward-addr: {upstream}");
        }
        Self::start_fixing_dir(ns, listen, c)
    }

    // The configuration names its own directory, known only once created.
    fn start_fixing_dir(ns: &NetNs, listen: IpAddr, conf: String) -> Result<Self> {
        let marker = "/nonexistent";
        let dir = std::env::temp_dir().join(names::unique('u'));
        let conf = conf.replace(marker, &dir.display().to_string());
        let mut u = Self::start_in(ns, listen, conf, &dir)?;
        u.dir = dir;
        Ok(u)
    }

    fn start_in(ns: &NetNs, listen: IpAddr, conf: String, dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir).map_err(|source| Error::Io {
            what: "creating unbound directory",
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join("unbound.conf");
        fs::write(&path, &conf).map_err(|source| Error::Io {
            what: "writing unbound configuration",
            path: path.clone(),
            source,
        })?;
        let checked = Command::new("unbound-checkconf")
            .arg(&path)
            .output()
            .map_err(|source| Error::Spawn {
                cmd: "unbound-checkconf".into(),
                source,
            })?;
        if !checked.status.success() {
            let _ = fs::remove_dir_all(dir);
            return Err(Error::Command {
                cmd: format!("unbound-checkconf {}", path.display()),
                status: checked.status.to_string(),
                stderr: String::from_utf8_lossy(&checked.stdout).into_owned()
                    + &String::from_utf8_lossy(&checked.stderr),
            });
        }
        let mut cmd = ns.command("unbound");
        cmd.args(["-d", "-c"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = ChildGuard::spawn(&mut cmd)?;
        let u = Self {
            child,
            dir: dir.to_owned(),
            listen,
        };
        u.wait_ready(ns)?;
        Ok(u)
    }

    pub fn addr(&self) -> IpAddr {
        self.listen
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// A resolv.conf naming this resolver (written next to its configuration).
    pub fn resolv_conf(&self) -> Result<PathBuf> {
        let p = self.dir.join("resolv.conf");
        fs::write(
            &p,
            format!("nameserver {}\noptions timeout:2 attempts:2\n", self.listen),
        )
        .map_err(|source| Error::Io {
            what: "writing resolv.conf",
            path: p.clone(),
            source,
        })?;
        Ok(p)
    }
}

impl Drop for Unbound {
    fn drop(&mut self) {
        self.child.terminate();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A command running `program args...` in `ns` with `resolv_conf` bind-mounted over
/// `/etc/resolv.conf` in a private mount namespace (nothing changes for anyone else).
pub fn with_resolver(ns: &NetNs, resolv_conf: &Path, program: &str, args: &[&str]) -> Command {
    let mut script = format!(
        "mount --bind {} /etc/resolv.conf && exec {program}",
        shell_quote(&resolv_conf.display().to_string())
    );
    for a in args {
        script.push(' ');
        script.push_str(&shell_quote(a));
    }
    let mut c = ns.command("unshare");
    c.args(["--mount", "--propagation", "private", "sh", "-c", &script]);
    c
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}
