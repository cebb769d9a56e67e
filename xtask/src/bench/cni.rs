//! CNI ADD/DEL latency: the plugin binary exec'd the way a runtime does (CNI_*
//! environment, configuration on stdin) from a thread inside a fresh node namespace, against pod
//! namespaces created beforehand (not timed). Serial: one ADD after another, then the DELs.
//! Parallel: 32 ADDs released at once, then 32 DELs. Same IPv6 /64, same host-local-format data
//! dir layout for every mode.
//!
//! Correctness gates (a trial that fails one is an error, not a number): every ADD succeeds with
//! a distinct address, the dataplane modes really attached the pod programs in their mode (a
//! sixlane tc filter, or a TCX link pin, on the first pod's host veth), and after the DELs no
//! reservation and no pod veth is left.

use std::{
    collections::HashSet,
    fs::File,
    io::Write as _,
    net::Ipv6Addr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Barrier,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use nix::sched::{CloneFlags, setns};
use serde_json::{Value, json};
use sixlane_testkit::{NetNs, PinDir, names};

use super::{Ctx, Metric, Mode, Role, Scenario, Values, stats::quantile};
use crate::sh;

pub struct Cni;

/// Pods per phase.
const N: usize = 32;
const SUBNET: &str = "fd00:10:244::/64";
const NETWORK: &str = "slbench";
const BRIDGE: &str = "slbr0";

impl Scenario for Cni {
    fn name(&self) -> &'static str {
        "cni"
    }

    fn about(&self) -> &'static str {
        "CNI ADD/DEL latency, 32 serial then 32 parallel, IPv6 /64, plugin exec'd in a node netns"
    }

    fn modes(&self) -> Vec<Mode> {
        vec![
            Mode {
                name: "noop",
                role: Role::Limit,
                about: "/bin/true as the plugin: exec + harness floor",
            },
            Mode {
                name: "ptp",
                role: Role::Peer,
                about: "Debian containernetworking-plugins ptp + host-local (waits for DAD)",
            },
            Mode {
                name: "bridge",
                role: Role::Peer,
                about: "Debian containernetworking-plugins bridge (isGateway) + host-local",
            },
            Mode {
                name: "sixlane",
                role: Role::Ours,
                about: "sixlane plugin, built-in IPAM, dataplane off",
            },
            Mode {
                name: "sixlane-dp",
                role: Role::Ours,
                about: "sixlane plugin with dataplane required, default attach (tc: clsact + cls_bpf filters)",
            },
            Mode {
                name: "sixlane-dp-tcx",
                role: Role::Ours,
                about: "sixlane plugin with dataplane required, attach tcx (pinned TCX links)",
            },
        ]
    }

    fn metrics(&self) -> Vec<Metric> {
        let lower = |name, unit| Metric::new(name, unit, false);
        vec![
            lower("add_p50", "ms"),
            lower("add_p99", "ms"),
            lower("del_p50", "ms"),
            lower("del_p99", "ms"),
            lower("par_add_p50", "ms"),
            lower("par_add_wall", "ms"),
            lower("par_del_wall", "ms"),
        ]
    }

    fn trial(&self, mode: &Mode, ctx: &Ctx) -> anyhow::Result<Values> {
        let node = NetNs::new()?;
        node.sysctl("net.ipv6.conf.all.forwarding", "1")?;
        let pods: Vec<NetNs> = (0..N).map(|_| NetNs::new()).collect::<Result<_, _>>()?;
        let data = std::env::temp_dir().join(names::unique('d'));
        let _data_guard = RemoveDir(data.clone());
        let pins = PinDir::new()?;
        let root = crate::workspace_root();
        let (bin, conf): (PathBuf, Value) = match mode.name {
            "noop" => ("/bin/true".into(), sixlane_conf(&data)),
            "ptp" => ("/usr/lib/cni/ptp".into(), ptp_conf(&data)),
            "bridge" => ("/usr/lib/cni/bridge".into(), bridge_conf(&data)),
            "sixlane" => (root.join("target/release/sixlane"), sixlane_conf(&data)),
            "sixlane-dp" | "sixlane-dp-tcx" => {
                let r = pins.path().to_string_lossy().into_owned();
                sh::output(Command::new(&ctx.agent).args(["--pin-root", &r, "load"]))?;
                let mut c = sixlane_conf(&data);
                c["dataplane"] = json!("required");
                c["pinRoot"] = json!(r);
                // No `attach` key: the plugin's default (tc).
                if mode.name == "sixlane-dp-tcx" {
                    c["attach"] = json!("tcx");
                }
                (root.join("target/release/sixlane"), c)
            }
            other => bail!("unknown mode {other}"),
        };
        if !bin.exists() {
            bail!("{} is missing", bin.display());
        }
        let runner = Runner {
            bin,
            conf: serde_json::to_vec(&conf)?,
            node: node.path(),
            check: mode.name != "noop",
        };
        let attached = |adds: &[Op]| -> anyhow::Result<()> {
            let host_if = adds
                .first()
                .and_then(|o| o.host_if.as_deref())
                .unwrap_or_default();
            match mode.name {
                "sixlane-dp" => gate_tc_filter(host_if),
                "sixlane-dp-tcx" => {
                    let pin = pins.path().join(format!("links/sl_from_pod@{host_if}"));
                    if pin.exists() {
                        Ok(())
                    } else {
                        bail!("no TCX link pin {}", pin.display())
                    }
                }
                _ => Ok(()),
            }
        };
        let mut v = Values::new();
        // Serial.
        let (adds, dels) = thread::scope(|s| {
            s.spawn(|| -> anyhow::Result<(Vec<Op>, Vec<Op>)> {
                runner.enter()?;
                let adds = (0..N)
                    .map(|i| runner.op("ADD", &format!("s{i}"), &pods[i]))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                // In the node namespace, untimed.
                attached(&adds)?;
                let dels = (0..N)
                    .map(|i| runner.op("DEL", &format!("s{i}"), &pods[i]))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                Ok((adds, dels))
            })
            .join()
            .expect("serial phase panicked")
        })?;
        runner.gates(&adds, &data, &node)?;
        v.insert("add_p50", pct(&adds, 0.5));
        v.insert("add_p99", pct(&adds, 0.99));
        v.insert("del_p50", pct(&dels, 0.5));
        v.insert("del_p99", pct(&dels, 0.99));
        // Parallel.
        let (adds, add_wall) = runner.parallel("ADD", &pods)?;
        let (_, del_wall) = runner.parallel("DEL", &pods)?;
        runner.gates(&adds, &data, &node)?;
        v.insert("par_add_p50", pct(&adds, 0.5));
        v.insert("par_add_wall", ms(add_wall));
        v.insert("par_del_wall", ms(del_wall));
        Ok(v)
    }
}

struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn ipam(data: &Path, kind: &str) -> Value {
    json!({
        "type": kind,
        "ranges": [[{"subnet": SUBNET}]],
        "routes": [{"dst": "::/0"}],
        "dataDir": data,
    })
}

fn sixlane_conf(data: &Path) -> Value {
    json!({"cniVersion": "1.0.0", "name": NETWORK, "type": "sixlane", "mtu": 1500,
           "dataplane": "off", "logLevel": "warn", "ipam": ipam(data, "sixlane-ipam")})
}

fn ptp_conf(data: &Path) -> Value {
    json!({"cniVersion": "1.0.0", "name": NETWORK, "type": "ptp", "ipMasq": false, "mtu": 1500,
           "ipam": ipam(data, "host-local")})
}

fn bridge_conf(data: &Path) -> Value {
    json!({"cniVersion": "1.0.0", "name": NETWORK, "type": "bridge", "bridge": BRIDGE,
           "isGateway": true, "ipMasq": false, "hairpinMode": false, "mtu": 1500,
           "ipam": ipam(data, "host-local")})
}

/// One timed invocation and the address and host interface it returned (ADD).
struct Op {
    took: Duration,
    ip: Option<Ipv6Addr>,
    host_if: Option<String>,
}

/// sixlane's filter (pref 6, handle 0x516c: `sixlane_attach::tc::{PRIORITY, HANDLE}`, direct
/// action) is on `host_if`'s ingress hook. Runs `tc` from the calling thread's namespace.
fn gate_tc_filter(host_if: &str) -> anyhow::Result<()> {
    let out = Command::new("tc")
        .args(["-j", "filter", "show", "dev", host_if, "ingress"])
        .output()?;
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let found = v.as_array().is_some_and(|fs| {
        fs.iter().any(|f| {
            f["pref"] == 6
                && f["options"]["handle"] == "0x516c"
                && f["options"]["direct-action"] == true
        })
    });
    if !found {
        bail!("no sixlane tc filter on {host_if}: {v}");
    }
    Ok(())
}

struct Runner {
    bin: PathBuf,
    conf: Vec<u8>,
    node: PathBuf,
    check: bool,
}

impl Runner {
    /// Moves the calling thread into the node namespace; processes it spawns start there.
    fn enter(&self) -> anyhow::Result<()> {
        let f =
            File::open(&self.node).with_context(|| format!("opening {}", self.node.display()))?;
        setns(&f, CloneFlags::CLONE_NEWNET).context("setns into the node")?;
        Ok(())
    }

    fn op(&self, cmd: &str, id: &str, pod: &NetNs) -> anyhow::Result<Op> {
        let start = Instant::now();
        let mut child = Command::new(&self.bin)
            .env_clear()
            .env("CNI_COMMAND", cmd)
            .env("CNI_CONTAINERID", id)
            .env("CNI_NETNS", pod.path())
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", "/usr/lib/cni")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawning {}", self.bin.display()))?;
        // A plugin may exit without reading stdin (the no-op does): EPIPE is not a failure.
        match child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(&self.conf)
        {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e.into()),
            _ => {}
        }
        let out = child.wait_with_output()?;
        let took = start.elapsed();
        if !out.status.success() {
            bail!(
                "{cmd} {id} failed: {} {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let (ip, host_if) = if self.check && cmd == "ADD" {
            let doc: Value = serde_json::from_slice(&out.stdout)
                .with_context(|| format!("{cmd} {id}: result is not JSON"))?;
            let a = doc["ips"][0]["address"].as_str().unwrap_or("");
            let ip = a
                .split('/')
                .next()
                .unwrap_or("")
                .parse()
                .with_context(|| format!("{cmd} {id}: no address in {doc}"))?;
            (
                Some(ip),
                doc["interfaces"][0]["name"].as_str().map(str::to_owned),
            )
        } else {
            (None, None)
        };
        Ok(Op { took, ip, host_if })
    }

    /// `cmd` for every pod at once; returns the ops and the wall time.
    fn parallel(&self, cmd: &str, pods: &[NetNs]) -> anyhow::Result<(Vec<Op>, Duration)> {
        let barrier = Barrier::new(pods.len());
        let start = std::sync::OnceLock::<Instant>::new();
        let results: Vec<anyhow::Result<(Op, Instant)>> = thread::scope(|s| {
            let hs: Vec<_> = pods
                .iter()
                .enumerate()
                .map(|(i, pod)| {
                    let (barrier, start) = (&barrier, &start);
                    s.spawn(move || {
                        self.enter()?;
                        barrier.wait();
                        start.get_or_init(Instant::now);
                        let op = self.op(cmd, &format!("p{i}"), pod)?;
                        Ok((op, Instant::now()))
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| h.join().expect("parallel op panicked"))
                .collect()
        });
        let mut ops = Vec::with_capacity(pods.len());
        let mut end = None::<Instant>;
        for r in results {
            let (op, t) = r?;
            end = Some(end.map_or(t, |e| e.max(t)));
            ops.push(op);
        }
        let wall = match (start.get(), end) {
            (Some(s), Some(e)) => e.duration_since(*s),
            _ => Duration::ZERO,
        };
        Ok((ops, wall))
    }

    /// Distinct addresses, and nothing left after the DELs.
    fn gates(&self, adds: &[Op], data: &Path, node: &NetNs) -> anyhow::Result<()> {
        if !self.check {
            return Ok(());
        }
        let ips: HashSet<Ipv6Addr> = adds.iter().filter_map(|o| o.ip).collect();
        if ips.len() != adds.len() {
            bail!(
                "duplicate addresses: {} distinct of {}",
                ips.len(),
                adds.len()
            );
        }
        let leaked: Vec<String> = std::fs::read_dir(data.join(NETWORK))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.parse::<Ipv6Addr>().is_ok())
                    .collect()
            })
            .unwrap_or_default();
        if !leaked.is_empty() {
            bail!("leaked reservations after DEL: {leaked:?}");
        }
        let links = node.ip(&["-o", "link", "show"])?;
        let left: Vec<&str> = links
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n))
            .filter(|n| *n != "lo" && *n != BRIDGE)
            .collect();
        if !left.is_empty() {
            bail!("leftover links after DEL: {left:?}");
        }
        Ok(())
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The `q` quantile of the ops' latencies (nearest rank), in ms.
fn pct(ops: &[Op], q: f64) -> f64 {
    let v: Vec<f64> = ops.iter().map(|o| ms(o.took)).collect();
    quantile(&v, q).unwrap_or(0.0)
}
