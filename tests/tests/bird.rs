//! The routing subsystem against real BIRD 2 daemons: a node's BIRD, run and configured by
//! `sixlane_agent::routing` (control socket client, `bird -p` check, supervisor), peers over a
//! veth pair with a router's BIRD in another network namespace, plus a peer that nothing
//! listens for. Checked through the control socket from both sides: sessions and why one is
//! down, prefixes exported and received, a `configure` that adds a route without resetting
//! the session, a configuration BIRD refuses, `kill -9` (restarted with recovery and counted),
//! and an agent restart that adopts the running BIRD (same pid, no second process).
//!
//! The configurations are written here by hand: the agent's rendering has its own golden tests.

use std::{
    fs,
    net::Ipv6Addr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use ipnet::Ipv6Net;
use nix::{sys::signal::Signal, unistd::Pid};
use sixlane_agent::routing::{
    Desired, Routing, Settings,
    bird::{
        Paths,
        control::{Control, Routes},
    },
    status::{Announced, BgpStatus, DownReason, PeerRef},
};
use sixlane_testkit::{ChildGuard, NetNs, TempDir, Veth};

const BIRD: &str = "/usr/sbin/bird";
const NODE: &str = "fd00:bb::1";
const ROUTER: &str = "fd00:bb::2";
const POD_CIDR: &str = "fd00:10:244:1::/64";
const SERVICE_RANGE: &str = "fd00:10:96::/108";
const ROUTER_PREFIX: &str = "fd00:10:244:2::/64";
/// Also sent by the router, outside what the node imports.
const REFUSED_PREFIX: &str = "fd00:99::/64";
/// On the link, and nobody has it.
const ABSENT: &str = "fd00:bb::99";

fn net(s: &str) -> Ipv6Net {
    s.parse().unwrap()
}

/// The node's configuration: `routes` announced to the router, the pod CIDRs imported;
/// `peer_down` aims at a port nothing listens on, `peer_absent` at an address nobody has.
fn node_conf(routes: &[&str]) -> String {
    let routes: String = routes
        .iter()
        .map(|r| format!("  route {r} blackhole;\n"))
        .collect();
    format!(
        r#"log stderr all;
router id 10.0.0.1;
timeformat protocol iso long;
protocol device sixlane_device {{}}
protocol static sixlane_announce {{
  ipv6;
{routes}}}
protocol bgp peer_tor1 {{
  local {NODE} as 64512;
  neighbor {ROUTER} as 65001;
  connect delay time 1;
  graceful restart on;
  ipv6 {{
    import keep filtered on;
    import where net ~ [ fd00:10:244::/48+ ];
    export where proto = "sixlane_announce";
  }};
}}
protocol bgp peer_down {{
  local {NODE} as 64512;
  neighbor {ROUTER} port 1791 as 65001;
  connect delay time 1;
  ipv6 {{ import none; export none; }};
}}
protocol bgp peer_absent {{
  local {NODE} as 64512;
  neighbor {ABSENT} as 65001;
  ipv6 {{ import none; export none; }};
}}
"#
    )
}

fn router_conf() -> String {
    format!(
        r#"log stderr all;
router id 10.0.0.2;
timeformat protocol iso long;
protocol device sixlane_device {{}}
protocol static own {{
  ipv6;
  route {ROUTER_PREFIX} blackhole;
  route {REFUSED_PREFIX} blackhole;
}}
protocol bgp node {{
  local {ROUTER} as 65001;
  neighbor {NODE} as 64512;
  connect delay time 1;
  graceful restart on;
  ipv6 {{ import all; export where proto = "own"; }};
}}
"#
    )
}

fn peers() -> Vec<PeerRef> {
    vec![
        PeerRef {
            name: "tor1".into(),
            protocol: "peer_tor1".into(),
            address: ROUTER.parse().unwrap(),
            asn: 65001,
        },
        PeerRef {
            name: "down".into(),
            protocol: "peer_down".into(),
            address: ROUTER.parse().unwrap(),
            asn: 65001,
        },
        PeerRef {
            name: "absent".into(),
            protocol: "peer_absent".into(),
            address: ABSENT.parse().unwrap(),
            asn: 65001,
        },
    ]
}

fn desired(routes: &[&str]) -> Desired {
    Desired {
        config: node_conf(routes),
        peers: peers(),
        announced: routes
            .iter()
            .map(|r| Announced {
                prefix: net(r),
                kind: "podCIDR".into(),
            })
            .collect(),
    }
}

/// Polls `f` on the routing's status until it holds, for up to 30 s.
async fn wait_status(what: &str, r: &Routing, log: &Path, f: impl Fn(&BgpStatus) -> bool) {
    let start = Instant::now();
    loop {
        let s = r.status();
        if f(&s) {
            return;
        }
        if start.elapsed() > Duration::from_secs(30) {
            panic!(
                "timed out waiting for {what}; status: {s:#?}\nBIRD's log:\n{}",
                fs::read_to_string(log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls `f` until it returns `Some`, for up to 30 s.
async fn wait_some<T, F: Future<Output = Option<T>>>(what: &str, mut f: impl FnMut() -> F) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn peer<'a>(s: &'a BgpStatus, name: &str) -> &'a sixlane_agent::routing::status::PeerStatus {
    s.peers.iter().find(|p| p.name == name).unwrap()
}

/// The pids of BIRD processes in `ns`.
fn birds(ns: &NetNs) -> Vec<i32> {
    ns.pids()
        .into_iter()
        .filter(|p| fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "bird"))
        .collect()
}

struct Lab {
    node: NetNs,
    _router: NetNs,
    _link: Veth,
    _router_bird: ChildGuard,
    router_ctl: Control,
    dir: TempDir,
}

fn lab() -> Lab {
    assert!(
        Path::new(BIRD).exists(),
        "{BIRD} is missing: install bird2 (cargo xtask setup does)"
    );
    let node = NetNs::new().unwrap();
    let router = NetNs::new().unwrap();
    let link = Veth::new_down(Some(&node), Some(&router)).unwrap();
    for (end, ns, ip) in [(&link.a, &node, NODE), (&link.b, &router, ROUTER)] {
        ns.sysctl("net.ipv6.conf.all.accept_dad", "0").unwrap();
        end.ip(&["addr", "add", &format!("{ip}/64"), "dev", "{}", "nodad"])
            .unwrap();
        end.ip(&["link", "set", "{}", "up"]).unwrap();
    }
    let dir = TempDir::new('d').unwrap();
    let rdir = dir.path().join("router");
    fs::create_dir_all(&rdir).unwrap();
    let rp = Paths::new(&rdir);
    fs::write(&rp.config, router_conf()).unwrap();
    let mut cmd = router.command(BIRD);
    cmd.arg("-f")
        .arg("-c")
        .arg(&rp.config)
        .arg("-s")
        .arg(&rp.socket)
        .arg("-P")
        .arg(&rp.pid_file)
        .stdout(fs::File::create(&rp.log).unwrap())
        .stderr(fs::File::create(rp.dir.join("stderr")).unwrap());
    let router_bird = ChildGuard::spawn(&mut cmd).unwrap();
    Lab {
        node,
        _router: router,
        _link: link,
        _router_bird: router_bird,
        router_ctl: Control::new(&rp.socket),
        dir,
    }
}

#[test]
fn bird_is_configured_supervised_and_adopted() {
    sixlane_testkit::require_root();
    let lab = lab();
    let node_dir: PathBuf = lab.dir.path().join("node");
    let node_log = Paths::new(&node_dir).log;
    let settings = Settings {
        dir: node_dir.clone(),
        binary: BIRD.into(),
        supervise: true,
    };
    // The routing subsystem runs in the node's namespace, as the agent does: BIRD inherits it.
    lab.node.enter(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let routing = Routing::start(settings.clone(), Box::new(|_| {}));
            routing.apply(desired(&[POD_CIDR]));
            let s = established(&routing, &node_log).await;
            assert!(!peer(&s, "down").up);
            let config = fs::read_to_string(node_dir.join("bird.conf")).unwrap();
            assert_eq!(config, node_conf(&[POD_CIDR]));
            let mode = fs::metadata(node_dir.join("bird.conf")).unwrap();
            assert_eq!(
                std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
                0o600,
                "the configuration may hold passwords"
            );

            // What each side sees.
            let ctl = Control::new(node_dir.join("bird.ctl"));
            assert_eq!(
                ctl.routes(&Routes::ExportedTo("peer_tor1".into()))
                    .await
                    .unwrap(),
                [net(POD_CIDR)]
            );
            assert_eq!(peer(&s, "tor1").received, [net(ROUTER_PREFIX)]);
            assert_eq!(peer(&s, "tor1").exported, 1);
            // What the import filter refused is kept, counted and listed.
            assert_eq!(peer(&s, "tor1").filtered, 1);
            assert_eq!(
                ctl.routes(&Routes::FilteredFrom("peer_tor1".into()))
                    .await
                    .unwrap(),
                [net(REFUSED_PREFIX)]
            );
            // BIRD reports no error for a neighbor that never answers: the wait says it.
            wait_status("no answer from the absent peer", &routing, &node_log, |s| {
                peer(s, "absent").down_reason == Some(DownReason::NoAnswer)
            })
            .await;
            router_has(&lab.router_ctl, &[POD_CIDR]).await;
            let since = peer(&s, "tor1")
                .since_unix
                .expect("timeformat protocol iso long");

            reconfigure_in_place(&routing, &lab.router_ctl, &node_log, since).await;
            refused_configuration(&routing, &node_dir).await;
            let pid = killed_bird_restarts(&routing, &lab.node, &node_log).await;

            // An agent restart: the subsystem goes, BIRD stays; the next one adopts it.
            drop(routing);
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert_eq!(birds(&lab.node), [pid as i32], "BIRD outlives the agent");
            let routing = Routing::start(settings.clone(), Box::new(|_| {}));
            routing.apply(desired(&[POD_CIDR, SERVICE_RANGE]));
            let s = established(&routing, &node_log).await;
            let p = s.bird.process.clone().unwrap();
            assert!(p.adopted, "{p:?}");
            assert_eq!(p.pid, Some(pid));
            assert_eq!(p.restarts, 0);
            assert_eq!(birds(&lab.node), [pid as i32], "no second BIRD");
            router_has(&lab.router_ctl, &[POD_CIDR, SERVICE_RANGE]).await;

            // The adopted BIRD dies: started again (not our child any more in a real restart;
            // here the dead process is our zombie until reaped, which must not look alive).
            nix::sys::signal::kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
            wait_status("the adopted BIRD restarted", &routing, &node_log, |s| {
                s.bird.process.as_ref().is_some_and(|p| {
                    p.restarts == 1 && p.running && !p.adopted && p.pid != Some(pid)
                }) && s.bird.answering
            })
            .await;
            established(&routing, &node_log).await;
        });
    });
}

/// Waits for the session with the router, and for the unreachable peer's reason.
async fn established(routing: &Routing, log: &Path) -> BgpStatus {
    wait_status("peer tor1 established", routing, log, |s| {
        s.bird.answering
            && s.config.configured_at.is_some()
            && peer(s, "tor1").up
            && !peer(s, "tor1").received.is_empty()
            && peer(s, "down").down_reason == Some(DownReason::Refused)
    })
    .await;
    let s = routing.status();
    let tor1 = peer(&s, "tor1");
    assert_eq!(tor1.state, "Established");
    assert_eq!(tor1.address, Some(ROUTER.parse::<Ipv6Addr>().unwrap()));
    let down = peer(&s, "down");
    assert!(
        down.last_error
            .as_deref()
            .is_some_and(|e| e.contains("Connection refused")),
        "{down:?}"
    );
    assert!(
        matches!(down.state.as_str(), "Active" | "Connect"),
        "{down:?}"
    );
    assert!(
        s.bird
            .version
            .as_deref()
            .is_some_and(|v| v.starts_with('2'))
    );
    s
}

/// Waits until the router's BIRD has exactly `prefixes` from the node.
async fn router_has(router: &Control, prefixes: &[&str]) {
    let mut want: Vec<Ipv6Net> = prefixes.iter().map(|p| net(p)).collect();
    want.sort();
    wait_some("the router's routes from the node", || {
        let want = want.clone();
        async move {
            let got = router.routes(&Routes::From("node".into())).await.ok()?;
            (got == want).then_some(())
        }
    })
    .await;
}

/// A new route goes out through `configure` without resetting the session.
async fn reconfigure_in_place(routing: &Routing, router: &Control, log: &Path, since: u64) {
    routing.apply(desired(&[POD_CIDR, SERVICE_RANGE]));
    router_has(router, &[POD_CIDR, SERVICE_RANGE]).await;
    wait_status("the new announcement", routing, log, |s| {
        peer(s, "tor1").exported == 2 && s.announced.len() == 2
    })
    .await;
    let s = routing.status();
    assert_eq!(
        peer(&s, "tor1").since_unix,
        Some(since),
        "the session was not reset"
    );
    assert_eq!(s.config.error, None);
}

/// A configuration `bird -p` refuses is not put in place; BIRD keeps the previous one.
async fn refused_configuration(routing: &Routing, dir: &Path) {
    let before = fs::read_to_string(dir.join("bird.conf")).unwrap();
    let mut bad = desired(&[POD_CIDR, SERVICE_RANGE]);
    bad.config
        .push_str("protocol bgp broken { neighbor as; }\n");
    routing.apply(bad);
    wait_some("the refusal", || async {
        routing
            .status()
            .config
            .error
            .filter(|e| e.contains("-p rejected"))
    })
    .await;
    assert_eq!(fs::read_to_string(dir.join("bird.conf")).unwrap(), before);
    assert!(routing.status().peers.iter().any(|p| p.up));
    // The good configuration again (the next tests start from it).
    routing.apply(desired(&[POD_CIDR, SERVICE_RANGE]));
    wait_some("the error cleared", || async {
        routing.status().config.error.is_none().then_some(())
    })
    .await;
}

/// `kill -9` BIRD: the supervisor starts it again (with recovery), counts it and says how the
/// old one ended; the session comes back. Returns the new pid.
async fn killed_bird_restarts(routing: &Routing, ns: &NetNs, log: &Path) -> u32 {
    let p = routing.status().bird.process.unwrap();
    let old = p.pid.expect("pid");
    assert!(p.running && !p.adopted && p.restarts == 0, "{p:?}");
    assert_eq!(
        nix::unistd::getsid(Some(Pid::from_raw(old as i32))).unwrap(),
        Pid::from_raw(old as i32),
        "BIRD leads its own session"
    );
    nix::sys::signal::kill(Pid::from_raw(old as i32), Signal::SIGKILL).unwrap();
    wait_status("BIRD restarted", routing, log, |s| {
        s.bird
            .process
            .as_ref()
            .is_some_and(|p| p.restarts == 1 && p.running && p.pid != Some(old))
            && s.bird.answering
    })
    .await;
    let s = established(routing, log).await;
    let p = s.bird.process.unwrap();
    assert!(
        p.last_exit
            .as_deref()
            .is_some_and(|e| e.contains("SIGKILL")),
        "{p:?}"
    );
    let new = p.pid.unwrap();
    let cmdline = fs::read_to_string(format!("/proc/{new}/cmdline")).unwrap();
    assert!(
        cmdline.split('\0').any(|a| a == "-R"),
        "restarted with graceful restart recovery: {cmdline:?}"
    );
    assert_eq!(birds(ns), [new as i32]);
    new
}
