//! The demo's steps about reaching the cluster from outside: BGP between the nodes and the
//! fabric's router converging, a LoadBalancer Service getting its address, the router's table,
//! and the outside client's requests through the router.

use std::{net::Ipv6Addr, path::Path};

use anyhow::{Context as _, bail};

use super::{
    cluster::{self, Bins, Node, Pod},
    console::{retry, show},
    net::{self, NODES},
    router::{self, Router, Want},
};

/// Requests to each Service address from outside, each a new connection.
const REQUESTS: usize = 8;

/// The routes every node announces from the start: its pod CIDR, and the ClusterIP range.
fn base_routes() -> anyhow::Result<Vec<Want>> {
    let mut want = Vec::new();
    for n in &NODES {
        want.push(Want::new(n.pod_cidr, &[n])?);
    }
    want.push(Want::new(cluster::SERVICE_RANGE, &[&NODES[0], &NODES[1]])?);
    Ok(want)
}

/// Waits until the router learned each node's pod CIDR and the ClusterIP range (ECMP) and the
/// nodes learned each other's pods; shows node1's BGP view.
pub fn converge(
    router: &mut Router,
    network: &net::Network,
    nodes: &[Node],
    bins: &Bins,
) -> anyhow::Result<()> {
    router.wait_routes(&network.fabric, &base_routes()?)?;
    router::wait_nodes_learn(&network.nodes)?;
    println!(
        "  the router routes each pod CIDR to its node and {} to both (ECMP); each node routes the other's pods",
        cluster::SERVICE_RANGE
    );
    let (n1, ns1) = (&nodes[0], &network.nodes[0]);
    let state = n1.state_dir();
    let args = ["bgp", "--state-dir", &state.to_string_lossy()];
    let out = crate::sh::output(&mut n1.agent_cmd(ns1, &bins.agent, &args))?;
    show(
        "sixlane-agent bgp   # node1: its BIRD's session with the router",
        &out,
    );
    show(
        "ip -n sld-node1 -6 route show proto bird   # node2's pods, learned over BGP",
        &ns1.ip(&["-6", "route", "show", "proto", "bird"])?,
    );
    Ok(())
}

/// The address the agent of every node gave Service `name` (they compute it alike).
fn assigned(nodes: &[Node], network: &net::Network, bins: &Bins, name: &str) -> Option<Ipv6Addr> {
    let service = format!("default/{name}");
    let mut got = nodes.iter().zip(&network.nodes).map(|(n, ns)| {
        let state = n.state_dir();
        let r = n
            .agent_json(
                ns,
                &bins.agent,
                &["lb", "--state-dir", &state.to_string_lossy()],
            )
            .ok()?;
        let a = r["assigned"]
            .as_array()?
            .iter()
            .find(|s| s["service"] == service)?;
        a["address"].as_str()?.parse::<Ipv6Addr>().ok()
    });
    let first = got.next()??;
    got.all(|a| a == Some(first)).then_some(first)
}

/// Service `web-lb` appears; both agents give it the pool's first address and announce it;
/// returns the address.
pub fn load_balancer(
    manifests: &Path,
    web: &Pod,
    nodes: &[Node],
    network: &net::Network,
    bins: &Bins,
) -> anyhow::Result<Ipv6Addr> {
    cluster::write_manifest(
        &manifests.join("web-lb.yaml"),
        &cluster::web_lb_manifest(&[(web.addr, web.node)]),
    )?;
    let lb = retry("both agents to assign web-lb an address", 30, || {
        assigned(nodes, network, bins, "web-lb").context("not yet")
    })?;
    let (n1, ns1) = (&nodes[0], &network.nodes[0]);
    let state = n1.state_dir();
    let args = ["lb", "--state-dir", &state.to_string_lossy()];
    let out = crate::sh::output(&mut n1.agent_cmd(ns1, &bins.agent, &args))?;
    show("sixlane-agent lb   # node1 (node2 computes the same)", &out);
    Ok(lb)
}

/// Waits for the LoadBalancer address's /128 from both nodes, then shows the router's BGP
/// table and kernel FIB, and checks that FIB has no route anyone wrote by hand.
pub fn router_table(
    router: &mut Router,
    network: &net::Network,
    lb: Ipv6Addr,
) -> anyhow::Result<()> {
    let lb128 = format!("{lb}/128");
    router.wait_routes(
        &network.fabric,
        &[Want::new(&lb128, &[&NODES[0], &NODES[1]])?],
    )?;
    show(
        "vtysh -c 'show bgp ipv6 unicast'   # on the router (sld-fabric); *= marks ECMP paths",
        &router.vtysh("show bgp ipv6 unicast")?,
    );
    router::check_no_static_routes(&network.fabric)?;
    show(
        "ip -n sld-fabric -6 route   # its FIB: connected networks and routes from BGP, nothing else",
        &network.fabric.ip(&["-6", "route"])?,
    );
    Ok(())
}

/// HTTP from the outside client, once: the routes are in place, so the first try must work.
fn get(network: &net::Network, url: &str, want: &str) -> anyhow::Result<String> {
    let body = cluster::http_get(&network.outside, url)?;
    if !body.contains(want) {
        bail!("unexpected response from {url}: {body}");
    }
    Ok(body)
}

/// The outside client reaches a pod on each node by its address, the LoadBalancer address and
/// a ClusterIP (its range is announced), all through the router.
pub fn from_outside(
    network: &net::Network,
    nodes: &[Node],
    bins: &Bins,
    pods: &[Pod],
    lb: Ipv6Addr,
) -> anyhow::Result<()> {
    println!(
        "  from sld-outside ({}): its only route is the default one, to the router",
        net::OUTSIDE
    );
    for p in pods {
        let url = format!("http://[{}]:8080/", p.addr);
        show(&format!("curl {url}"), &get(network, &url, p.node)?);
    }
    let cluster_ip: Ipv6Addr = cluster::CLUSTER_IP.parse()?;
    for addr in [lb, cluster_ip] {
        spread(network, nodes, bins, addr)?;
    }
    Ok(())
}

/// Requests to a Service address from outside. New connections, new flow labels: the router's
/// ECMP spreads them over both nodes, and each node serves the address (the node without the
/// backend forwards with source NAT, so the answer comes back through it).
fn spread(
    network: &net::Network,
    nodes: &[Node],
    bins: &Bins,
    addr: Ipv6Addr,
) -> anyhow::Result<()> {
    let url = format!("http://[{addr}]/");
    let mut body = String::new();
    for _ in 0..REQUESTS {
        body = get(network, &url, "pod web")?;
    }
    show(
        &format!("for i in $(seq {REQUESTS}); do curl {url}; done   # all answered; the last:"),
        &body,
    );
    let spread = taken(nodes, network, bins, addr)?;
    println!("  the router's ECMP spread them: {spread} (each node's conntrack)");
    Ok(())
}

/// How many of the outside client's connections to `addr` each node's datapath took.
fn taken(
    nodes: &[Node],
    network: &net::Network,
    bins: &Bins,
    addr: Ipv6Addr,
) -> anyhow::Result<String> {
    let frontend = format!("[{addr}]:80");
    let client = format!("[{}]:", net::OUTSIDE);
    let mut counts = Vec::new();
    for (n, ns) in nodes.iter().zip(&network.nodes) {
        let flows = n.agent_json(ns, &bins.agent, &["conntrack"])?;
        let taken = flows.as_array().map_or(0, |all| {
            all.iter()
                .filter(|f| f["direction"] == "forward" && f["frontend"] == frontend.as_str())
                .filter(|f| f["src"].as_str().is_some_and(|s| s.starts_with(&client)))
                .count()
        });
        counts.push(format!("{} {taken}", n.spec.name));
    }
    Ok(counts.join(", "))
}
