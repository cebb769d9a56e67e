//! `cargo xtask demo`: sixlane's main job on one Linux machine.
//!
//! Builds everything, then a two-node IPv6-only "cluster" in network namespaces: each node runs
//! the real `sixlane-agent` (static-manifest mode, with the BIRD it supervises) and a private
//! containerd whose pods the real `sixlane` CNI plugin attaches; a fabric whose upstream router
//! runs FRR joins the nodes, an outside client and an IPv4-only "internet" with a web server,
//! its DNS, and a DNS64 resolver. Nobody writes a route for a pod or a Service: the router
//! learns the pod CIDRs, the ClusterIP range and the LoadBalancer address over BGP, and the
//! nodes learn each other's pods from it. It then shows the BGP sessions, pod addresses, a
//! ClusterIP request to a backend on the other node, a NodePort from outside, a LoadBalancer
//! Service getting its address from a pool, the router's table, the outside client reaching a
//! pod on each node, the LoadBalancer address and a ClusterIP through the router, a pod fetching from the
//! IPv4-only server by name through DNS64 + NAT64, the agent's CLI tables and a metrics
//! excerpt, and tears everything down (also on Ctrl-C). `--keep` leaves it running.
//!
//! Modules: `net` (namespaces and links), `router` (FRR and BGP convergence), `cluster` (nodes,
//! pods, manifests), `bird` (stopping each node's BIRD), `outside` (the BGP, LoadBalancer and
//! outside-client steps), `console` (steps and output), `teardown` (removing it all).

mod bird;
mod cluster;
mod console;
mod net;
mod outside;
mod router;
pub mod teardown;

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use console::{Steps, retry, show};
use sixlane_testkit::{NetNs, containerd};

use crate::{setup, sh};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Leave the cluster running for exploration; `cargo xtask demo --down` removes it.
    #[arg(long)]
    pub keep: bool,
    /// Remove a cluster left by `--keep` (or by a run that crashed) and exit.
    #[arg(long)]
    pub down: bool,
    /// Skip `setup`.
    #[arg(long)]
    pub no_setup: bool,
    /// Use the debug binaries (what `cargo xtask test` builds anyway) instead of release ones.
    #[arg(long)]
    pub debug: bool,
}

fn demo_dir() -> PathBuf {
    crate::workspace_root().join("target/demo")
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let dir = demo_dir();
    if args.down {
        let found = teardown::all(&dir);
        if found.is_empty() {
            println!("no demo cluster to remove");
        } else {
            println!("removed: {}", found.join(", "));
        }
        return Ok(());
    }
    if !args.no_setup {
        setup::run(&setup::Args {
            bench: false,
            check: false,
        })?;
    }
    let profile = if args.debug { "debug" } else { "release" };
    let mut build = sh::cargo();
    build.args([
        "build",
        "--package",
        "sixlane-agent",
        "--package",
        "sixlane-cni",
    ]);
    if !args.debug {
        build.arg("--release");
    }
    sh::run(&mut build)?;
    let root = crate::workspace_root();
    let bins = cluster::Bins {
        agent: root.join("target").join(profile).join("sixlane-agent"),
        cni: root.join("target").join(profile).join("sixlane"),
    };

    let stale = teardown::all(&dir);
    if !stale.is_empty() {
        eprintln!(
            "demo: removed a previous demo's leftovers: {}",
            stale.join(", ")
        );
    }
    std::fs::create_dir_all(&dir)?;

    // Ctrl-C or SIGTERM: tear down whatever exists, then leave.
    {
        let dir = dir.clone();
        let mut signals = signal_hook::iterator::Signals::new([
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGTERM,
        ])
        .context("installing the Ctrl-C handler")?;
        std::thread::spawn(move || {
            if let Some(sig) = signals.forever().next() {
                eprintln!("\ndemo: signal {sig}: tearing down");
                teardown::all(&dir);
                std::process::exit(130);
            }
        });
    }

    let mut world = World::default();
    let res = play(&mut world, &dir, &bins, args.keep);
    if args.keep {
        // Everything stays (also after a failure, for inspection): forget the guards instead
        // of running their teardown.
        std::mem::forget(world);
    } else {
        drop(world);
    }
    match res {
        Ok(()) if args.keep => {
            print_explore(&bins, &dir);
            Ok(())
        }
        Ok(()) => {
            teardown::all(&dir);
            println!("\nDone: the cluster, its pins and its files are removed.");
            Ok(())
        }
        Err(e) if args.keep => {
            eprintln!("\ndemo: {e:#}");
            eprintln!(
                "demo: the cluster is left as it was for inspection (--keep); logs are in {}; \
                 remove it with: cargo xtask demo --down",
                dir.display()
            );
            Err(e)
        }
        Err(e) => {
            eprintln!("\ndemo: {e:#}");
            eprintln!(
                "demo: logs were in {} (removed now; rerun with --keep to inspect a failure)",
                dir.display()
            );
            teardown::all(&dir);
            Err(e)
        }
    }
}

/// What to try on a cluster left running.
fn print_explore(bins: &cluster::Bins, dir: &Path) {
    println!(
        "\nThe cluster keeps running (--keep). Explore it, for example:\n\
         \x20 nsenter --net=/run/netns/sld-node1 {agent} --pin-root /sys/fs/bpf/sld-node1 services\n\
         \x20 nsenter --net=/run/netns/sld-node1 {agent} bgp --state-dir {dir}/node1/state\n\
         \x20 vtysh --vty_socket {router} -c 'show bgp ipv6 unicast'   # the fabric's router\n\
         \x20 nsenter --net=/run/netns/sld-outside curl -g 'http://[fd00:100::11]:{port}/'\n\
         \x20 nsenter --net=/run/netns/sld-outside curl -g 'http://[fd00:200::1]/'   # web-lb, through the router\n\
         \x20 less {dir}/node1/agent.log {dir}/node1/bird/bird.log\n\
         Remove it with: cargo xtask demo --down",
        agent = bins.agent.display(),
        router = router::dir(dir).display(),
        port = cluster::NODE_PORT,
        dir = dir.display(),
    );
}

/// What the demo created and keeps alive; dropping it stops processes and removes namespaces
/// (`--keep` forgets it instead).
#[derive(Default)]
struct World {
    // Drop order: pods, then nodes (containerd, agents, BIRD), the router, the network.
    pods: Vec<cluster::Pod>,
    nodes: Vec<cluster::Node>,
    router: Option<router::Router>,
    network: Option<net::Network>,
}

/// The demo's steps in order; what they create goes into `world`.
fn play(world: &mut World, dir: &Path, bins: &cluster::Bins, keep: bool) -> anyhow::Result<()> {
    let mut steps = Steps::new(if keep { 14 } else { 15 });
    let manifests = dir.join("manifests");
    std::fs::create_dir_all(&manifests)?;
    build(world, &mut steps, dir, &manifests, bins)?;
    services(world, &mut steps, &manifests, bins)?;
    let (nodes, network) = (&world.nodes, world.network.as_ref().expect("built"));
    steps.run(
        "NAT64 + DNS64: the IPv6-only pod fetches from the IPv4-only server by name",
        || nat64(&world.pods[1]),
    )?;
    steps.run(
        "the agent's view (node1): sixlane-agent status, services, conntrack, nat64, ipam",
        || agent_view(&nodes[0], &network.nodes[0], bins),
    )?;
    steps.run("metrics excerpt (node1, Prometheus text format)", || {
        metrics(&network.nodes[0])
    })?;
    if keep {
        // Everything stays (the caller forgets the guards).
        return Ok(());
    }
    steps.run(
        "pods stop: containerd runs CNI DEL, reservations and veths go away",
        || stop_pods(&world.nodes, &mut world.pods, network, bins),
    )
}

/// The network, the router, the nodes (with BGP converged) and the pods.
fn build(
    world: &mut World,
    steps: &mut Steps,
    dir: &Path,
    manifests: &Path,
    bins: &cluster::Bins,
) -> anyhow::Result<()> {
    let network = steps.run(
        "network: fabric, two IPv6-only nodes, an outside client, an IPv4-only internet with DNS and DNS64",
        || build_network(dir),
    )?;
    let network = world.network.insert(network);
    let router = steps.run(
        "router: FRR on the fabric (AS 65000), a BGP neighbor of each node; it has no route to any pod or Service",
        || start_router(network, dir),
    )?;
    let router = world.router.insert(router);
    let image = steps.run(
        "pod image: busybox, built locally as an OCI tarball",
        || pod_image(dir),
    )?;
    cluster::write_manifest(&manifests.join("nodes.yaml"), &cluster::nodes_manifest())?;
    world.nodes = steps.run(
        "nodes: containerd and sixlane-agent (static manifests) on each; agents load and pin the datapath, write the CNI config, start BIRD",
        || start_nodes(network, dir, bins, manifests, &image),
    )?;
    let nodes = &world.nodes;
    steps.run(
        "BGP: the router learns each node's pod CIDR and the ClusterIP range, the nodes learn each other's pods",
        || outside::converge(router, network, nodes, bins),
    )?;
    let (web, client) = steps.run(
        "pods: web on node2, client on node1 (both serve HTTP with busybox httpd), attached by the sixlane CNI plugin",
        || start_pods(nodes),
    )?;
    world.pods = vec![web, client];
    Ok(())
}

/// The Services, inside the cluster and from outside through the router.
fn services(
    world: &mut World,
    steps: &mut Steps,
    manifests: &Path,
    bins: &cluster::Bins,
) -> anyhow::Result<()> {
    let (web, client) = (&world.pods[0], &world.pods[1]);
    let network = world.network.as_ref().expect("built");
    let router = world.router.as_mut().expect("started");
    let nodes = &world.nodes;
    steps.run(
        "service web: ClusterIP fd00:96::80 and NodePort 30080, backend on node2",
        || cluster_ip(manifests, web, client),
    )?;
    steps.run(
        "NodePort from outside the cluster, to node1 (the backend is on node2)",
        || node_port(network),
    )?;
    let lb = steps.run(
        "service web-lb: type LoadBalancer, its address from the agents' pool (fd00:200::/120)",
        || outside::load_balancer(manifests, web, nodes, network, bins),
    )?;
    steps.run(
        "the router's table: everything it knows of the cluster, learned over BGP",
        || outside::router_table(router, network, lb),
    )?;
    steps.run(
        "from outside, through the router: a pod on each node by its address, the LoadBalancer IP and a ClusterIP",
        || outside::from_outside(network, nodes, bins, &world.pods, lb),
    )
}

/// FRR on the fabric, peering with both nodes.
fn start_router(network: &net::Network, dir: &Path) -> anyhow::Result<router::Router> {
    let r = router::Router::start(&network.fabric, dir)?;
    for n in &net::NODES {
        println!(
            "  neighbor {} ({}) AS {}: waits for the node's BIRD",
            n.v6,
            n.name,
            router::NODE_ASN
        );
    }
    show(
        "ip -n sld-fabric -6 route   # connected networks only",
        &network.fabric.ip(&["-6", "route"])?,
    );
    Ok(r)
}

/// The namespaces: fabric, nodes, outside client, IPv4-only internet, DNS and DNS64.
fn build_network(dir: &Path) -> anyhow::Result<net::Network> {
    let n = net::build(dir)?;
    println!(
        "  nodes fd00:100::11 (node1) and fd00:100::12 (node2); outside client {} behind the fabric; \
         internet 198.19.0.0/24 (IPv4 only)",
        net::OUTSIDE
    );
    println!(
        "  DNS64 resolver {} synthesizes AAAA in {} for A-only names",
        net::DNS64,
        net::NAT64_PREFIX
    );
    println!(
        "  routes: nodes and the outside client have a default route to the fabric, nothing else; \
         each node's NAT64 pool is its own IPv4 address, on-link on the fabric"
    );
    Ok(n)
}

/// A busybox image with the applets the pods run, resolving through the DNS64 server.
fn pod_image(dir: &Path) -> anyhow::Result<PathBuf> {
    let resolv = format!("nameserver {}\noptions timeout:2 attempts:2\n", net::DNS64);
    containerd::busybox_image(
        &dir.join("image"),
        &[
            "sh", "sleep", "httpd", "wget", "nslookup", "ip", "cat", "hostname", "echo", "mkdir",
            "ping6", "timeout",
        ],
        &[
            ("/etc/resolv.conf", resolv.as_str()),
            ("/etc/hosts", "127.0.0.1 localhost\n::1 localhost\n"),
        ],
    )
    .map_err(Into::into)
}

/// containerd and the agent on every node, then the routes the agent installed.
fn start_nodes(
    network: &net::Network,
    dir: &Path,
    bins: &cluster::Bins,
    manifests: &Path,
    image: &Path,
) -> anyhow::Result<Vec<cluster::Node>> {
    let mut v = Vec::new();
    for (spec, ns) in net::NODES.iter().zip(&network.nodes) {
        let node = cluster::start_node(ns, spec, dir, bins, manifests, image);
        // A node that failed to start has already been torn down by its guards.
        let node = node?;
        println!(
            "  {}: agent ready, pins under {}",
            spec.name,
            node.pins.display()
        );
        v.push(node);
    }
    Ok(v)
}

/// A pod's shell command: a page saying who it is, served on port 8080 by busybox httpd in
/// the background, and a sleep as the container's main process.
fn serve(pod: &str, node: &str) -> String {
    format!(
        "mkdir -p /www && echo \"Hello from pod {pod} on {node}\" > /www/index.html && \
         httpd -p [::]:8080 -h /www && exec sleep 3600"
    )
}

/// The web pod on node2 and the client on node1; their addresses and the client's routes.
fn start_pods(nodes: &[cluster::Node]) -> anyhow::Result<(cluster::Pod, cluster::Pod)> {
    let web = cluster::run_pod(&nodes[1], "web", &["sh", "-c", &serve("web", "node2")])?;
    // The client serves too, so the outside client has a pod to reach on each node.
    let client = cluster::run_pod(
        &nodes[0],
        "client",
        &["sh", "-c", &serve("client", "node1")],
    )?;
    println!("  POD      NODE   IPV6 ADDRESS");
    for p in [&web, &client] {
        println!("  {:<8} {:<6} {}", p.name, p.node, p.addr);
    }
    show(
        "kubectl exec client -- ip -6 route   # default via the host side, NAT64 prefix with mtu/advmss",
        &cluster::pod_ip(&client, &["-6", "route"])?,
    );
    Ok((web, client))
}

/// The web Service appears; the client reaches the backend on the other node by ClusterIP.
fn cluster_ip(manifests: &Path, web: &cluster::Pod, client: &cluster::Pod) -> anyhow::Result<()> {
    cluster::write_manifest(
        &manifests.join("web.yaml"),
        &cluster::web_manifest(&[(web.addr, "node2")]),
    )?;
    let url = format!("http://[{}]/", cluster::CLUSTER_IP);
    let body = retry("a response through the ClusterIP", 30, || {
        cluster::pod_exec(client, &["timeout", "5", "wget", "-qO-", &url])
    })?;
    show(&format!("kubectl exec client -- wget -qO- {url}"), &body);
    if !body.contains("node2") {
        bail!("unexpected response through the ClusterIP: {body}");
    }
    Ok(())
}

/// The outside client reaches the Service through node1's NodePort.
fn node_port(network: &net::Network) -> anyhow::Result<()> {
    let url = format!("http://[{}]:{}/", net::NODES[0].v6, cluster::NODE_PORT);
    let body = retry("a response through the NodePort", 20, || {
        cluster::http_get(&network.outside, &url)
    })?;
    show(&format!("curl {url}   # from sld-outside"), &body);
    Ok(())
}

/// The client resolves the IPv4-only name through DNS64 and fetches from it through NAT64.
fn nat64(client: &cluster::Pod) -> anyhow::Result<()> {
    let lookup = cluster::pod_exec(client, &["nslookup", net::IPV4_ONLY_NAME])?;
    show(
        &format!("kubectl exec client -- nslookup {}", net::IPV4_ONLY_NAME),
        &lookup,
    );
    let url = format!("http://{}/", net::IPV4_ONLY_NAME);
    let body = retry("a response through NAT64", 20, || {
        cluster::pod_exec(client, &["timeout", "5", "wget", "-qO-", &url])
    })?;
    show(&format!("kubectl exec client -- wget -qO- {url}"), &body);
    if !body.contains("IPv4-only internet") {
        bail!("unexpected response through NAT64: {body}");
    }
    Ok(())
}

/// The operator CLI's tables on one node.
fn agent_view(n1: &cluster::Node, ns: &NetNs, bins: &cluster::Bins) -> anyhow::Result<()> {
    let ipam = n1.ipam_dir();
    let ipam = ipam.to_string_lossy();
    let state = n1.dir.join("state");
    let state = state.to_string_lossy();
    for args in [
        vec!["status", "--state-dir", &state],
        vec!["services"],
        vec!["conntrack"],
        vec!["nat64", "sessions"],
        vec!["ipam", "--data-dir", &ipam],
    ] {
        let out = sh::output(&mut n1.agent_cmd(ns, &bins.agent, &args))?;
        show(&format!("sixlane-agent {}", args.join(" ")), &out);
    }
    Ok(())
}

/// The non-zero datapath counters, table fill levels and service counts of one node's
/// metrics endpoint.
fn metrics(ns: &NetNs) -> anyhow::Result<()> {
    let text = cluster::http_get(ns, &format!("http://{}/metrics", cluster::METRICS))?;
    // Datapath counters by reason, table fill levels, what was reconciled.
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| {
            (l.starts_with("sixlane_datapath_packets_total")
                || l.starts_with("sixlane_map_entries")
                || l.starts_with("sixlane_services")
                || l.starts_with("sixlane_backends"))
                && !l.ends_with(" 0")
        })
        .collect();
    if !lines
        .iter()
        .any(|l| l.starts_with("sixlane_datapath_packets_total"))
    {
        bail!("no datapath counters in the metrics:\n{text}");
    }
    show(
        "curl http://[::1]:9660/metrics | grep -E 'datapath_packets|map_entries|services|backends'  # non-zero",
        &lines.join("\n"),
    );
    Ok(())
}

/// Stops the pods (containerd runs CNI DEL) and shows the emptied IPAM stores.
fn stop_pods(
    nodes: &[cluster::Node],
    pods: &mut [cluster::Pod],
    network: &net::Network,
    bins: &cluster::Bins,
) -> anyhow::Result<()> {
    let (web, client) = pods.split_at_mut(1);
    cluster::stop_pod(&nodes[0], &mut client[0])?;
    cluster::stop_pod(&nodes[1], &mut web[0])?;
    for (n, ns) in nodes.iter().zip(&network.nodes) {
        let ipam = n.ipam_dir();
        let ipam = ipam.to_string_lossy();
        let out = sh::output(&mut n.agent_cmd(ns, &bins.agent, &["ipam", "--data-dir", &ipam]))?;
        show(&format!("sixlane-agent ipam   # {}", n.spec.name), &out);
    }
    Ok(())
}
