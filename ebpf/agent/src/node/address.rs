//! Choosing the node's IPv6 address: the one other nodes route this node's pod CIDR to and
//! NodePorts answer on.
//!
//! Rules, first match wins (each choice carries the reason, shown in logs and `status`):
//! 1. `node.address` from the config, which must be configured here and usable;
//! 2. the first IPv6 `InternalIP` kubelet reports that is configured here and usable;
//! 3. the address chosen by the previous run, if still usable (stable across restarts);
//! 4. the best remaining candidate: on the uplink, permanent (static or DHCPv6) before SLAAC,
//!    not EUI-64 (it changes with the NIC), global before ULA, then the lowest address.
//!
//! Never usable: link-local, loopback, multicast, IPv4-mapped (kubernetes#130409), temporary
//! privacy addresses (they rotate; talos#9725), deprecated, tentative or DAD-failed ones.

use std::net::Ipv6Addr;

use serde::{Deserialize, Serialize};

use super::candidate::{LocalAddr, Rejected, is_eui64, is_ula};
use crate::{Error, Result};

/// The chosen address and the reasoning.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Choice {
    pub addr: Ipv6Addr,
    pub interface: String,
    pub reason: String,
    pub rejected: Vec<Rejected>,
}

/// What besides the local addresses decides.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    pub configured: Option<Ipv6Addr>,
    /// IPv6 `InternalIP`s from our Node's status, in kubelet's order.
    pub reported: Vec<Ipv6Addr>,
    pub previous: Option<Ipv6Addr>,
    pub uplink: Option<String>,
}

fn describe(l: &LocalAddr) -> String {
    format!(
        "{} {} address on {}",
        if l.permanent {
            "permanent (static/DHCPv6)"
        } else if is_eui64(l.addr) {
            "SLAAC EUI-64"
        } else {
            "SLAAC"
        },
        if is_ula(l.addr) { "ULA" } else { "global" },
        l.interface
    )
}

pub fn choose(locals: &[LocalAddr], inputs: &Inputs) -> Result<Choice> {
    let mut rejected = Vec::new();
    let mut usable = Vec::new();
    for l in locals {
        match l.unusable() {
            Some(why) => rejected.push(Rejected {
                addr: l.addr,
                interface: Some(l.interface.clone()),
                why: why.to_string(),
            }),
            None => usable.push(l),
        }
    }
    let find = |a: Ipv6Addr| usable.iter().copied().find(|l| l.addr == a);
    let done = |l: &LocalAddr, reason: String, rejected: Vec<Rejected>| Choice {
        addr: l.addr,
        interface: l.interface.clone(),
        reason,
        rejected,
    };

    if let Some(want) = inputs.configured {
        return match find(want) {
            Some(l) => Ok(done(
                l,
                format!("configured (node.address), {}", describe(l)),
                rejected,
            )),
            None => match locals
                .iter()
                .find(|l| l.addr == want)
                .and_then(|l| Some((l, l.unusable()?)))
            {
                Some((l, why)) => Err(Error::NodeAddressUnusable {
                    addr: want,
                    interface: l.interface.clone(),
                    why,
                }),
                None => Err(Error::NodeAddressNotLocal { addr: want }),
            },
        };
    }

    for r in &inputs.reported {
        if let Some(l) = find(*r) {
            return Ok(done(
                l,
                format!(
                    "kubelet reports it as the Node's InternalIP; {}",
                    describe(l)
                ),
                rejected,
            ));
        }
        let why = match locals
            .iter()
            .find(|l| l.addr == *r)
            .and_then(LocalAddr::unusable)
        {
            Some(why) => format!("reported by kubelet as InternalIP but {why}"),
            None => "reported by kubelet as InternalIP but not configured on this host".into(),
        };
        if !rejected.iter().any(|x| x.addr == *r) {
            rejected.push(Rejected {
                addr: *r,
                interface: None,
                why,
            });
        } else if let Some(x) = rejected.iter_mut().find(|x| x.addr == *r) {
            x.why = why;
        }
    }

    if let Some(prev) = inputs.previous
        && let Some(l) = find(prev)
    {
        return Ok(done(
            l,
            format!(
                "kept from the previous run (stable across restarts); {}",
                describe(l)
            ),
            rejected,
        ));
    }

    let rank = |l: &LocalAddr| {
        (
            inputs.uplink.as_deref() == Some(l.interface.as_str()),
            l.permanent,
            !is_eui64(l.addr),
            !is_ula(l.addr),
            std::cmp::Reverse(l.addr),
        )
    };
    match usable.iter().copied().max_by_key(|l| rank(l)) {
        Some(l) => Ok(done(
            l,
            format!("best candidate: {}", describe(l)),
            rejected,
        )),
        None => Err(Error::NoNodeAddress(rejected)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn la(addr: &str, ifname: &str, flags: &str) -> LocalAddr {
        LocalAddr {
            addr: addr.parse().unwrap(),
            interface: ifname.into(),
            prefix_len: 64,
            permanent: flags.contains('P'),
            temporary: flags.contains('T'),
            deprecated: flags.contains('D'),
            tentative: flags.contains('t'),
            dad_failed: flags.contains('F'),
        }
    }

    fn ip(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    /// A typical host: link-local, a SLAAC EUI-64 global, a temporary one, a static ULA.
    fn host() -> Vec<LocalAddr> {
        vec![
            la("::1", "lo", "P"),
            la("fe80::5054:ff:fe12:3456", "eth0", "P"),
            la("2001:db8:1:0:5054:ff:fe12:3456", "eth0", ""),
            la("2001:db8:1:0:9c1a:2b3c:4d5e:6f70", "eth0", "T"),
            la("fd00:1::10", "eth0", "P"),
            la("fd00:2::10", "eth1", "P"),
        ]
    }

    #[test]
    fn selection_table() {
        struct Case {
            name: &'static str,
            locals: Vec<LocalAddr>,
            inputs: Inputs,
            want: Result<(&'static str, &'static str), &'static str>,
        }
        let cases = vec![
            Case {
                name: "no hints: permanent beats SLAAC EUI-64 on the same link",
                locals: host(),
                inputs: Inputs::default(),
                want: Ok((
                    "fd00:1::10",
                    "best candidate: permanent (static/DHCPv6) ULA address on eth0",
                )),
            },
            Case {
                name: "uplink preference",
                locals: host(),
                inputs: Inputs {
                    uplink: Some("eth1".into()),
                    ..Default::default()
                },
                want: Ok(("fd00:2::10", "best candidate")),
            },
            Case {
                name: "kubelet's InternalIP wins over the ranking",
                locals: host(),
                inputs: Inputs {
                    reported: vec![ip("2001:db8:1:0:5054:ff:fe12:3456")],
                    ..Default::default()
                },
                want: Ok(("2001:db8:1:0:5054:ff:fe12:3456", "kubelet reports it")),
            },
            Case {
                name: "a link-local InternalIP is refused (kubernetes#130409)",
                locals: host(),
                inputs: Inputs {
                    reported: vec![ip("fe80::5054:ff:fe12:3456"), ip("fd00:2::10")],
                    ..Default::default()
                },
                want: Ok(("fd00:2::10", "kubelet reports it")),
            },
            Case {
                name: "a temporary InternalIP is refused (talos#9725)",
                locals: host(),
                inputs: Inputs {
                    reported: vec![ip("2001:db8:1:0:9c1a:2b3c:4d5e:6f70")],
                    ..Default::default()
                },
                want: Ok(("fd00:1::10", "best candidate")),
            },
            Case {
                name: "previous choice is kept over a better-ranked one",
                locals: host(),
                inputs: Inputs {
                    previous: Some(ip("fd00:2::10")),
                    ..Default::default()
                },
                want: Ok(("fd00:2::10", "kept from the previous run")),
            },
            Case {
                name: "previous choice gone: ranking",
                locals: host(),
                inputs: Inputs {
                    previous: Some(ip("fd00:9::1")),
                    ..Default::default()
                },
                want: Ok(("fd00:1::10", "best candidate")),
            },
            Case {
                name: "configured wins over everything",
                locals: host(),
                inputs: Inputs {
                    configured: Some(ip("2001:db8:1:0:5054:ff:fe12:3456")),
                    reported: vec![ip("fd00:2::10")],
                    previous: Some(ip("fd00:2::10")),
                    uplink: None,
                },
                want: Ok((
                    "2001:db8:1:0:5054:ff:fe12:3456",
                    "configured (node.address), SLAAC EUI-64 global",
                )),
            },
            Case {
                name: "configured but absent",
                locals: host(),
                inputs: Inputs {
                    configured: Some(ip("fd00:9::1")),
                    ..Default::default()
                },
                want: Err("node.address fd00:9::1 is not configured on any interface"),
            },
            Case {
                name: "configured but deprecated",
                locals: vec![la("fd00:1::10", "eth0", "PD")],
                inputs: Inputs {
                    configured: Some(ip("fd00:1::10")),
                    ..Default::default()
                },
                want: Err("cannot be used: is deprecated"),
            },
            Case {
                name: "SLAAC stable-privacy beats EUI-64, global beats ULA among equals",
                locals: vec![
                    la("2001:db8::5054:ff:fe12:3456", "eth0", ""),
                    la("2001:db8::1234:5678:9abc:def0", "eth0", ""),
                    la("fd00::1234:5678:9abc:def0", "eth0", ""),
                ],
                inputs: Inputs::default(),
                want: Ok((
                    "2001:db8::1234:5678:9abc:def0",
                    "best candidate: SLAAC global",
                )),
            },
            Case {
                name: "ties go to the lowest address (deterministic)",
                locals: vec![la("fd00::20", "eth0", "P"), la("fd00::10", "eth0", "P")],
                inputs: Inputs::default(),
                want: Ok(("fd00::10", "best candidate")),
            },
            Case {
                name: "nothing usable",
                locals: vec![
                    la("fe80::1", "eth0", "P"),
                    la("fd00::1", "eth0", "Pt"),
                    la("fd00::2", "eth0", "PF"),
                    la("2001:db8::9", "eth0", "T"),
                ],
                inputs: Inputs::default(),
                want: Err("no usable IPv6 address on this node"),
            },
        ];
        for c in cases {
            let got = choose(&c.locals, &c.inputs);
            match (&got, c.want) {
                (Ok(ch), Ok((addr, reason))) => {
                    assert_eq!(ch.addr, ip(addr), "{}", c.name);
                    assert!(
                        ch.reason.contains(reason),
                        "{}: reason {:?}",
                        c.name,
                        ch.reason
                    );
                }
                (Err(e), Err(msg)) => {
                    assert!(e.to_string().contains(msg), "{}: {e}", c.name);
                }
                _ => panic!("{}: got {got:?}", c.name),
            }
        }
    }

    #[test]
    fn rejections_explain_themselves() {
        let ch = choose(
            &host(),
            &Inputs {
                reported: vec![ip("fd00:7::7")],
                ..Default::default()
            },
        )
        .unwrap();
        let why = |a: &str| {
            ch.rejected
                .iter()
                .find(|r| r.addr == ip(a))
                .map(|r| r.why.clone())
                .unwrap_or_default()
        };
        assert!(why("fe80::5054:ff:fe12:3456").contains("link-local"));
        assert!(why("::1").contains("loopback"));
        assert!(why("2001:db8:1:0:9c1a:2b3c:4d5e:6f70").contains("temporary"));
        assert!(why("fd00:7::7").contains("not configured on this host"));
        let e = choose(&[la("fe80::1", "eth0", "P")], &Inputs::default()).unwrap_err();
        assert!(e.to_string().contains("; fe80::1 link-local"), "{e}");
    }
}
