//! Unsolicited IPv4 SYNs end to end (RFC 6146 §3.5.2.2), with the real `sixlane-agent`: an IPv4
//! host connecting to the pool address on a port of the dynamic range is refused (ICMP Port
//! Unreachable from the agent) after about 6 s under `nat64.unsolicitedTcp: hold`, and times
//! out under `drop`; under `hold`, a pod connecting to that host from the bound port while the
//! host's SYN is held opens the connection from both sides (simultaneous open). Never the node's
//! stack answering: no RST for a NAT64 port.
//!
//! ```text
//!  pod (fd00:10::a) ─veth─ node ─up─ rtr ─wan─ inet (198.18.1.10: the IPv4 host)
//!                     pool 198.18.0.1, prefix fd00:6464::/96, agent in static mode
//! ```

use std::{
    fs,
    io::{self, Read as _, Write as _},
    mem::size_of,
    net::{Ipv6Addr, SocketAddr, TcpStream},
    os::fd::FromRawFd as _,
    time::{Duration, Instant},
};

use nix::sys::signal::Signal;
use sixlane_agent::{PinLayout, metrics, nat64::state};
use sixlane_common::{
    layout::UPLINK_PROGRAMS,
    metrics::{Direction, Reason},
    nat64::maps::DIR_OUT,
};
use sixlane_testkit::{ChildGuard, NetNs};
use sixlane_tests::{
    agentproc::{AgentRun, http_get, wait_until},
    bins,
    nat64::{self as n, NODE4, SERVER4, agent::AgentNode},
    sim::SimPod,
};

const POD_A: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, 0xa);
const NODE6: &str = "fd00:99::1";
/// The pod's fixed source port, bound to a pool port by its first connection.
const POD_PORT: u16 = 40000;
/// The IPv4 host's source port for the simultaneous open.
const HOST_PORT: u16 = 45000;

fn agent_yaml(uplink: &str, policy: &str) -> String {
    format!(
        "node:\n  uplink: {uplink}\n  address: \"{NODE6}\"\n\
         cni:\n  checkBinaries: false\n  mtu: 1500\nhealthz:\n  kubeProxyListen: null\n\
         nat64:\n  mode: translate\n  prefix: fd00:6464::/96\n  pool: [\"{NODE4}\"]\n\
         \x20 podCIDRs: [fd00:10::/64]\n  ports: 61001-65535\n  unsolicitedTcp: {policy}\n"
    )
}

fn count(layout: &PinLayout, r: Reason) -> u64 {
    metrics::get(&metrics::read(layout).unwrap(), Direction::Ingress, r).packets
}

/// Starts the agent for the `nth` time and waits until it has programmed NAT64 and attached its
/// uplink programs.
fn start(run: &AgentRun, node: &NetNs, nth: usize) -> ChildGuard {
    let proc = run.spawn(node);
    let log = run.log();
    wait_until("the agent to program NAT64", &log, || {
        fs::read_to_string(&log).is_ok_and(|l| {
            l.matches("NAT64 configured").count() == nth
                && l.matches("uplink program attached").count() == nth * UPLINK_PROGRAMS.len()
        })
    });
    proc
}

fn stop(mut proc: ChildGuard) {
    proc.signal(Signal::SIGTERM).unwrap();
    proc.wait_timeout(Duration::from_secs(10)).unwrap();
}

/// A blocking TCP connect from `local` to `to` (both of one family) with SO_REUSEADDR, given up
/// after `timeout`.
fn connect_from(local: SocketAddr, to: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    fn sockaddr(a: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
        // SAFETY: an all-zero sockaddr_storage is valid.
        let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let len = match a {
            SocketAddr::V4(v) => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: v.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(v.ip().octets()),
                    },
                    sin_zero: [0; 8],
                };
                // SAFETY: sockaddr_storage is large enough and suitably aligned.
                unsafe { std::ptr::write((&raw mut ss).cast(), sin) };
                size_of::<libc::sockaddr_in>()
            }
            SocketAddr::V6(v) => {
                let sin6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: v.port().to_be(),
                    sin6_flowinfo: 0,
                    sin6_addr: libc::in6_addr {
                        s6_addr: v.ip().octets(),
                    },
                    sin6_scope_id: 0,
                };
                // SAFETY: as above.
                unsafe { std::ptr::write((&raw mut ss).cast(), sin6) };
                size_of::<libc::sockaddr_in6>()
            }
        };
        (ss, len as libc::socklen_t)
    }
    let family = if local.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    let check = |rc: libc::c_int| {
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(rc)
        }
    };
    // SAFETY: plain socket(2); the descriptor is owned by the stream right away.
    let fd = check(unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `fd` is ours.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: libc::suseconds_t::from(timeout.subsec_micros()),
    };
    // SAFETY: valid descriptor, option values and lengths.
    unsafe {
        check(libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&raw const one).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        ))?;
        // Bounds a blocking connect (Linux: SO_SNDTIMEO).
        check(libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            (&raw const tv).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        ))?;
    }
    let (l, llen) = sockaddr(local);
    // SAFETY: valid descriptor and address.
    check(unsafe { libc::bind(fd, (&raw const l).cast(), llen) })?;
    let (r, rlen) = sockaddr(to);
    // SAFETY: valid descriptor and address.
    match check(unsafe { libc::connect(fd, (&raw const r).cast(), rlen) }) {
        Ok(_) => Ok(stream),
        // The timeout ran out (Linux reports it as EINPROGRESS).
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {
            Err(io::Error::from(io::ErrorKind::TimedOut))
        }
        Err(e) => Err(e),
    }
}

/// The IPv4 host connects to the pool address on `port` (in the dynamic range, no session):
/// the error and how long it took.
fn connect_unsolicited(inet: &NetNs, port: u16, timeout: Duration) -> (io::Error, Duration) {
    let t0 = Instant::now();
    let to = SocketAddr::from((NODE4, port));
    let r = inet.enter(|| TcpStream::connect_timeout(&to, timeout));
    let e = r.expect_err("a connection to a NAT64 port without a session");
    (e, t0.elapsed())
}

/// The pool port of the pod's binding for POD_A:`x` (TCP).
fn pool_port(layout: &PinLayout, x: u16) -> u16 {
    state::bindings(layout)
        .unwrap()
        .into_iter()
        .find(|(k, _)| k.dir == DIR_OUT && k.proto == n::TCP && k.port == x)
        .map(|(_, v)| v.port)
        .expect("the pod's binding")
}

#[test]
fn unsolicited_syns_are_refused_after_six_seconds_or_dropped_and_open_simultaneously() {
    let n = AgentNode::new('h', NODE6, "fd00:10::/64");
    let (layout, node, net, run) = (&n.layout, &n.node, &n.net, &n.run);
    fs::write(run.config(), agent_yaml(net.uplink(), "drop")).unwrap();
    let agent = start(run, node, 1);

    // drop: the SYNs vanish; the host's connect times out (no RST from the node either).
    let before = count(layout, Reason::Nat64Unsolicited);
    let (e, _) = connect_unsolicited(&net.inet, 62000, Duration::from_secs(3));
    assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
    assert!(count(layout, Reason::Nat64Unsolicited) > before);
    stop(agent);

    // hold: refused by the agent's Port Unreachable after the 6 s hold.
    fs::write(run.config(), agent_yaml(net.uplink(), "hold")).unwrap();
    let _agent = start(run, node, 2);
    let before = count(layout, Reason::Nat64SynHeld);
    let (e, took) = connect_unsolicited(&net.inet, 62001, Duration::from_secs(20));
    assert_eq!(
        e.kind(),
        io::ErrorKind::ConnectionRefused,
        "{e} after {took:?}"
    );
    assert!(
        took >= Duration::from_secs(5) && took <= Duration::from_secs(10),
        "refused after {took:?}"
    );
    assert!(count(layout, Reason::Nat64SynHeld) > before);
    // One Port Unreachable per held tuple, however often the host retransmitted its SYN.
    let (code, m) = http_get(node, "http://[::1]:9660/metrics");
    assert_eq!(code, 200);
    for want in [
        "sixlane_nat64_port_unreachable_sent_total 1\n",
        "sixlane_nat64_port_unreachable_failed_total 0\n",
    ] {
        assert!(m.contains(want), "{want} in\n{m}");
    }

    // Simultaneous open: the pod's first connection (refused by the host: nothing listens)
    // binds POD_PORT to a pool port t; the host's SYN from HOST_PORT to t is held; the pod's
    // SYN from POD_PORT to HOST_PORT crosses it and both connects succeed.
    let pod = SimPod::attach(node, POD_A, Some(layout)).unwrap();
    let srv6 = n::embed96("fd00:6464::".parse().unwrap(), SERVER4);
    let local = SocketAddr::from((POD_A, POD_PORT));
    let first = pod
        .ns
        .enter(|| connect_from(local, SocketAddr::from((srv6, 9)), Duration::from_secs(3)));
    assert!(first.is_err(), "nothing listens on the host's port 9");
    let t = pool_port(layout, POD_PORT);
    let opened = count(layout, Reason::Nat64SimultaneousOpen);
    let inet = net.inet.path();
    let host = std::thread::spawn(move || {
        sixlane_testkit::netns::enter_path(&inet, || {
            connect_from(
                SocketAddr::from((SERVER4, HOST_PORT)),
                SocketAddr::from((NODE4, t)),
                Duration::from_secs(5),
            )
        })
    });
    let held = |l: &PinLayout| sixlane_agent::nat64::held::read(l).unwrap().len();
    wait_until("the host's SYN to be held", &run.log(), || {
        held(layout) == 1
    });
    let mut p = pod
        .ns
        .enter(|| {
            connect_from(
                local,
                SocketAddr::from((srv6, HOST_PORT)),
                Duration::from_secs(5),
            )
        })
        .expect("the pod's side of the simultaneous open");
    let mut h = host
        .join()
        .unwrap()
        .expect("the host's side of the simultaneous open");
    assert_eq!(count(layout, Reason::Nat64SimultaneousOpen) - opened, 1);
    assert_eq!(held(layout), 0, "the held SYN was forgotten");
    h.write_all(b"hello pod").unwrap();
    let mut b = [0u8; 9];
    p.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    p.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"hello pod");

    // The CLI shows the held SYNs (none left now).
    let out = bins::agent_json(layout.root(), &["nat64", "held"]);
    assert_eq!(out.as_array().map(Vec::len), Some(0), "{out}");
}
