//! The agent's HTTP endpoints (hyper, HTTP/1.1):
//! - metrics server (`metrics.listen`): `/metrics`, `/healthz`, `/readyz`, `/status`;
//! - kube-proxy-compatible healthz (`healthz.kubeProxyListen`, `[::]:10256`): `/healthz` and
//!   `/livez` with kube-proxy's JSON body (`lastUpdated`, `currentTime`, `nodeEligible`), 503 when
//!   an update has waited longer than `healthz.staleAfterMs` or the node is leaving;
//! - one `healthCheckNodePort` server per `externalTrafficPolicy: Local` LoadBalancer Service,
//!   answering like kube-proxy: 200 with the local endpoint count when there is one, else 503.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    net::{SocketAddr, SocketAddrV6},
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::{body::Bytes, service::service_fn};
use hyper_util::rt::TokioIo;
use sixlane_attach::chain;
use tokio::{net::TcpListener, task::JoinHandle};
use tracing::{debug, info, warn};

use crate::{
    model::{DesiredState, TrafficPolicy},
    ops::{
        metrics::{CodeLabel, Metrics},
        status::{Shared, rfc3339},
    },
};

type Resp = Response<Full<Bytes>>;

fn resp(code: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Resp {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, content_type)
        .header("X-Content-Type-Options", "nosniff")
        .body(Full::new(body.into()))
        .expect("static response parts")
}

/// Serves `handler` on `listener` until the task is aborted.
pub fn serve<F>(listener: TcpListener, handler: F) -> JoinHandle<()>
where
    F: Fn(Request<hyper::body::Incoming>) -> Resp + Send + Sync + 'static,
{
    let handler = Arc::new(handler);
    tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    warn!(error = %chain(&e), "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let r = handler(req);
                    async move { Ok::<_, Infallible>(r) }
                });
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await
                {
                    debug!(%peer, error = %chain(&e), "http connection");
                }
            });
        }
    })
}

/// Everything the handlers read.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub shared: Arc<Shared>,
    pub metrics: Arc<Metrics>,
    pub started: Instant,
    pub stale_after: Duration,
}

impl Ctx {
    fn healthy(&self) -> bool {
        self.shared
            .healthy(Instant::now(), self.stale_after, self.started)
    }
}

/// `/metrics`, `/healthz`, `/readyz`, `/status`.
pub fn metrics_handler(ctx: Ctx) -> impl Fn(Request<hyper::body::Incoming>) -> Resp {
    move |req| match req.uri().path() {
        "/metrics" => resp(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            ctx.metrics.encode(),
        ),
        "/healthz" | "/livez" => {
            if ctx.healthy() {
                resp(StatusCode::OK, "text/plain", "ok\n")
            } else {
                resp(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    format!(
                        "a change has waited longer than {:?} to be applied\n",
                        ctx.stale_after
                    ),
                )
            }
        }
        "/readyz" => {
            let s = ctx.shared.status();
            if s.ready {
                resp(StatusCode::OK, "text/plain", "ready\n")
            } else {
                resp(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    format!("not ready: {}\n", s.not_ready.join("; ")),
                )
            }
        }
        "/status" => resp(
            StatusCode::OK,
            "application/json",
            serde_json::to_vec_pretty(&ctx.shared.status()).unwrap_or_default(),
        ),
        _ => resp(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    }
}

/// kube-proxy's `/healthz` (and `/livez`).
pub fn kube_proxy_handler(ctx: Ctx) -> impl Fn(Request<hyper::body::Incoming>) -> Resp {
    move |req| {
        if !matches!(req.uri().path(), "/healthz" | "/livez") {
            return resp(StatusCode::NOT_FOUND, "text/plain", "not found\n");
        }
        let healthy = ctx.healthy();
        let eligible = ctx.shared.status().node_eligible;
        // /livez ignores eligibility (kube-proxy: a leaving node is still alive).
        let ok = healthy && (eligible || req.uri().path() == "/livez");
        let body = serde_json::json!({
            "lastUpdated": ctx.shared.last_updated().map(rfc3339).unwrap_or_default(),
            "currentTime": rfc3339(SystemTime::now()),
            "nodeEligible": eligible,
        });
        let code = if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        ctx.metrics
            .health_checks
            .get_or_create(&CodeLabel {
                code: code.as_u16().to_string(),
            })
            .inc();
        resp(code, "application/json", body.to_string())
    }
}

/// The healthCheckNodePort answer for `port`.
pub fn node_port_answer(shared: &Shared, port: u16) -> Resp {
    let Some((namespace, name, n)) = shared.local_endpoints(port) else {
        return resp(StatusCode::NOT_FOUND, "text/plain", "no such service\n");
    };
    let body = serde_json::json!({
        "service": {"namespace": namespace, "name": name},
        "localEndpoints": n,
        "serviceProxyHealthy": true,
    });
    let mut r = resp(
        if n > 0 {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        "application/json",
        body.to_string(),
    );
    r.headers_mut().insert(
        "X-Load-Balancing-Endpoint-Weight",
        header::HeaderValue::from(n),
    );
    r
}

/// healthCheckNodePort -> (namespace, name, local ready endpoints) for `desired`.
pub fn health_check_ports(desired: &DesiredState) -> BTreeMap<u16, (String, String, usize)> {
    let mut out = BTreeMap::new();
    for s in desired.services.values() {
        let Some(port) = s.health_check_node_port else {
            continue;
        };
        if s.external_traffic_policy != TrafficPolicy::Local {
            continue;
        }
        let mut local: Vec<_> = s
            .ports
            .iter()
            .flat_map(|p| &p.backends)
            .filter(|b| b.local && b.ready)
            .map(|b| b.addr)
            .collect();
        local.sort();
        local.dedup();
        out.insert(
            port,
            (s.id.namespace.clone(), s.id.name.clone(), local.len()),
        );
    }
    out
}

/// The set of running healthCheckNodePort servers, kept in line with the desired state.
#[derive(Debug, Default)]
pub struct NodePortServers {
    running: BTreeMap<u16, JoinHandle<()>>,
}

impl NodePortServers {
    pub async fn sync(&mut self, shared: &Arc<Shared>, bind: std::net::Ipv6Addr, ports: Vec<u16>) {
        self.running.retain(|port, task| {
            let keep = ports.contains(port);
            if !keep {
                info!(port, "stopping healthCheckNodePort server");
                task.abort();
            }
            keep
        });
        for port in ports {
            if self.running.contains_key(&port) {
                continue;
            }
            let addr = SocketAddr::V6(SocketAddrV6::new(bind, port, 0, 0));
            match TcpListener::bind(addr).await {
                Ok(l) => {
                    info!(%addr, "serving healthCheckNodePort");
                    let shared = shared.clone();
                    self.running
                        .insert(port, serve(l, move |_| node_port_answer(&shared, port)));
                }
                // Another process on the port: retried at the next sync.
                Err(e) => warn!(%addr, error = %chain(&e), "cannot serve healthCheckNodePort"),
            }
        }
    }

    pub fn ports(&self) -> Vec<u16> {
        self.running.keys().copied().collect()
    }
}

impl Drop for NodePortServers {
    fn drop(&mut self) {
        for t in self.running.values() {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Backend, Protocol, Service, ServiceId, ServicePort};

    fn svc(port: Option<u16>, etp: TrafficPolicy, backends: Vec<Backend>) -> Service {
        Service {
            id: ServiceId {
                namespace: "ns".into(),
                name: "lb".into(),
            },
            cluster_ips: vec!["fd00::1".parse().unwrap()],
            external_ips: vec![],
            load_balancer_ips: vec![],
            ports: vec![
                ServicePort {
                    name: "a".into(),
                    protocol: Protocol::Tcp,
                    port: 80,
                    node_port: Some(30080),
                    backends: backends.clone(),
                },
                ServicePort {
                    name: "b".into(),
                    protocol: Protocol::Tcp,
                    port: 81,
                    node_port: Some(30081),
                    backends,
                },
            ],
            external_traffic_policy: etp,
            internal_traffic_policy: TrafficPolicy::Cluster,
            session_affinity: None,
            health_check_node_port: port,
        }
    }

    fn b(addr: &str, ready: bool, local: bool) -> Backend {
        Backend {
            addr: addr.parse().unwrap(),
            port: 8080,
            ready,
            serving: ready,
            terminating: !ready,
            local,
        }
    }

    #[test]
    fn local_endpoint_counts_like_kube_proxy() {
        let mut d = DesiredState::default();
        let s = svc(
            Some(32000),
            TrafficPolicy::Local,
            vec![
                b("fd00::a", true, true),
                b("fd00::b", false, true),
                b("fd00::c", true, false),
            ],
        );
        d.services.insert(s.id.clone(), s);
        // One local ready pod, counted once although it backs two ports.
        assert_eq!(
            health_check_ports(&d),
            BTreeMap::from([(32000, ("ns".to_string(), "lb".to_string(), 1))])
        );
        let shared = Shared::new(Default::default());
        shared.set_local_endpoints(health_check_ports(&d));
        let r = node_port_answer(&shared, 32000);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["X-Load-Balancing-Endpoint-Weight"], "1");
        assert_eq!(node_port_answer(&shared, 1).status(), StatusCode::NOT_FOUND);

        let s = svc(
            Some(32000),
            TrafficPolicy::Local,
            vec![b("fd00::c", true, false)],
        );
        d.services.insert(s.id.clone(), s);
        shared.set_local_endpoints(health_check_ports(&d));
        assert_eq!(
            node_port_answer(&shared, 32000).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );

        let s = svc(Some(32000), TrafficPolicy::Cluster, vec![]);
        d.services.insert(s.id.clone(), s);
        assert!(health_check_ports(&d).is_empty());
    }
}
