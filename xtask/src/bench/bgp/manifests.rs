//! What the `sixlane` mode hands the agent: its configuration, and the manifests of its static
//! source (the node, the Services and their EndpointSlices), written atomically.

use std::{fmt::Write as _, fs, net::Ipv6Addr, path::Path};

use anyhow::Context as _;
use ipnet::Ipv6Net;

use super::{NODE_ASN, ROUTER_ASN, ROUTES};

/// The node's name, in the manifests and on the agent's command line.
pub const NODE_NAME: &str = "node1";
const POD_CIDR: &str = "fd00:10:1::/64";
/// The pod on the node every endpoint is.
const POD: &str = "fd00:10:1::5";

/// The agent's configuration: BGP with the router through the BIRD it runs, the routes' range
/// as a LoadBalancer pool and allow-list. The static source looks at its directory every 10 ms
/// (its smallest setting): a Kubernetes watch delivers a change as it happens, and the figure
/// is the agent's work, not a poll period. Everything else is the default (pacing included).
pub fn agent_yaml(router: Ipv6Addr, bird_dir: &Path) -> String {
    format!(
        r#"source:
  pollIntervalMs: 10
bgp:
  enabled: true
  localASN: {NODE_ASN}
  peers:
  - {{name: router, address: "{router}", asn: {ROUTER_ASN}}}
  announce:
    loadBalancerIPs: ["{ROUTES}"]
  bird: {{dir: "{}", supervise: true}}
loadBalancer:
  enabled: true
  pools:
  - {{name: bench, cidrs: ["{ROUTES}"]}}
cni:
  checkBinaries: false
  mtu: 1500
metrics:
  listen: null
healthz:
  kubeProxyListen: null
"#,
        bird_dir.display()
    )
}

/// The node: its pod CIDR (announced too) and its address on the LAN.
pub fn node_yaml(addr: Ipv6Addr) -> String {
    format!(
        "apiVersion: v1\nkind: Node\nmetadata: {{name: {NODE_NAME}}}\nspec: {{podCIDRs: [\"{POD_CIDR}\"]}}\n\
         status:\n  addresses: [{{type: InternalIP, address: \"{addr}\"}}]\n"
    )
}

/// The Service whose address is `route` (requested from the pool), its name and ClusterIP
/// derived from it.
fn service(out: &mut String, route: Ipv6Net, local: bool) -> String {
    let seg = route.addr().segments();
    let name = format!("s-{:x}-{:x}", seg[3], seg[7]);
    let cluster_ip = Ipv6Addr::new(0xfd00, 0x96, 0, 0, 0, 0, seg[3], seg[7]);
    let policy = if local { "Local" } else { "Cluster" };
    let _ = write!(
        out,
        "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: default\n  \
         annotations: {{sixlane.io/load-balancer-ips: \"{}\"}}\n\
         spec:\n  type: LoadBalancer\n  externalTrafficPolicy: {policy}\n  clusterIPs: [\"{cluster_ip}\"]\n  \
         ports: [{{name: http, port: 80, targetPort: 8080}}]\n",
        route.addr()
    );
    name
}

/// The EndpointSlice of Service `name`: the pod on the node, ready (`ready`), or no endpoint.
fn slice(out: &mut String, name: &str, ready: bool) {
    let endpoints = if ready {
        format!("[{{addresses: [\"{POD}\"], conditions: {{ready: true}}, nodeName: {NODE_NAME}}}]")
    } else {
        "[]".to_owned()
    };
    let _ = write!(
        out,
        "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-1\n  \
         namespace: default\n  labels: {{kubernetes.io/service-name: {name}}}\naddressType: IPv6\n\
         ports: [{{name: http, port: 8080, protocol: TCP}}]\nendpoints: {endpoints}\n"
    );
}

/// An `externalTrafficPolicy: Local` LoadBalancer Service at `route` with the node's pod as
/// its endpoint (`ready`), or with no endpoint: its /128 is announced only in the first case.
/// The file's name and its text.
pub fn local_service(route: Ipv6Net, ready: bool) -> (String, String) {
    let mut text = String::new();
    let name = service(&mut text, route, true);
    slice(&mut text, &name, ready);
    (format!("{name}.yaml"), text)
}

/// A LoadBalancer Service (`externalTrafficPolicy: Cluster`) at each of `routes`, each with
/// a ready endpoint, in one text.
pub fn services(routes: &[Ipv6Net]) -> String {
    let mut text = String::with_capacity(routes.len() * 700);
    for r in routes {
        let name = service(&mut text, *r, false);
        slice(&mut text, &name, true);
    }
    text
}

/// Writes manifest `name` in `dir` atomically (a hidden temporary file renamed into place), so
/// the agent never reads half a file.
pub fn put(dir: &Path, name: &str, text: &str) -> anyhow::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, dir.join(name)).with_context(|| format!("renaming {}", tmp.display()))
}
