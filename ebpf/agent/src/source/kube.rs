//! The Kubernetes source: kube-rs watchers on Services, EndpointSlices and Nodes, and on
//! ServiceCIDRs when BGP announces the cluster's ClusterIP ranges.
//!
//! kube-runtime's watcher lists, then watches from the list's resourceVersion; when the watch
//! ends it re-watches from the last version seen, and on `410 Gone` (version too old) it lists
//! again. Errors are retried with exponential backoff (0.8 s doubling to 30 s, with jitter; reset
//! after 2 min of health). A listing arrives as `Init`, `InitApply`…, `InitDone`; it is buffered
//! and handed on as one [`Change::Replace`], so a relist never shows a half-listed kind.

use std::{fmt::Debug, sync::Arc};

use futures::{StreamExt as _, pin_mut};
use k8s_openapi::{
    api::{
        core::v1::Node, core::v1::Service, discovery::v1::EndpointSlice,
        networking::v1::ServiceCIDR,
    },
    serde::de::DeserializeOwned,
};
use kube::{
    Api, Client, Resource,
    runtime::{WatchStreamExt as _, watcher},
};
use sixlane_attach::chain;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::{
    ops::{
        metrics::{KindLabel, Metrics, WatchEventLabels},
        status::unix_now,
    },
    source::store::{Change, Kind, Object},
};

/// Watches the core kinds, and ServiceCIDRs if `service_cidrs`, until `tx` closes.
pub async fn watch_all(
    client: Client,
    tx: mpsc::Sender<Vec<Change>>,
    metrics: Arc<Metrics>,
    service_cidrs: bool,
) {
    let svc = watch_kind(
        Api::<Service>::all(client.clone()),
        Kind::Service,
        |o| Object::Service(Box::new(o)),
        tx.clone(),
        metrics.clone(),
    );
    let eps = watch_kind(
        Api::<EndpointSlice>::all(client.clone()),
        Kind::EndpointSlice,
        |o| Object::EndpointSlice(Box::new(o)),
        tx.clone(),
        metrics.clone(),
    );
    let nodes = watch_kind(
        Api::<Node>::all(client.clone()),
        Kind::Node,
        |o| Object::Node(Box::new(o)),
        tx.clone(),
        metrics.clone(),
    );
    let cidrs = async move {
        if service_cidrs {
            watch_kind(
                Api::<ServiceCIDR>::all(client),
                Kind::ServiceCidr,
                |o| Object::ServiceCidr(Box::new(o)),
                tx,
                metrics,
            )
            .await;
        }
    };
    futures::join!(svc, eps, nodes, cidrs);
}

async fn watch_kind<K>(
    api: Api<K>,
    kind: Kind,
    wrap: fn(K) -> Object,
    tx: mpsc::Sender<Vec<Change>>,
    metrics: Arc<Metrics>,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let label = KindLabel {
        kind: kind.name().into(),
    };
    let count = |event: &str| {
        metrics
            .watch_events
            .get_or_create(&WatchEventLabels {
                kind: kind.name().into(),
                event: event.into(),
            })
            .inc();
        metrics
            .watch_last_event
            .get_or_create(&label)
            .set(unix_now() as i64);
    };
    let stream = watcher(api, watcher::Config::default()).default_backoff();
    pin_mut!(stream);
    let mut listing: Option<Vec<Object>> = None;
    while let Some(ev) = stream.next().await {
        let change = match ev {
            Ok(watcher::Event::Init) => {
                debug!(kind = kind.name(), "listing");
                listing = Some(Vec::new());
                continue;
            }
            Ok(watcher::Event::InitApply(o)) => {
                listing.get_or_insert_with(Vec::new).push(wrap(o));
                continue;
            }
            Ok(watcher::Event::InitDone) => {
                let objs = listing.take().unwrap_or_default();
                info!(kind = kind.name(), objects = objs.len(), "listed");
                count("relist");
                metrics.watch_synced.get_or_create(&label).set(1);
                Change::Replace(kind, objs)
            }
            Ok(watcher::Event::Apply(o)) => {
                count("apply");
                Change::Apply(wrap(o))
            }
            Ok(watcher::Event::Delete(o)) => {
                count("delete");
                Change::Delete(wrap(o))
            }
            Err(e) => {
                metrics.watch_errors.get_or_create(&label).inc();
                warn!(kind = kind.name(), error = %chain(&e), "watch error; retrying with backoff");
                continue;
            }
        };
        if tx.send(vec![change]).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::{Request, Response};
    use kube::client::Body;
    use serde_json::json;

    use super::*;

    fn svc(name: &str, rv: &str) -> serde_json::Value {
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default", "resourceVersion": rv},
            "spec": {"clusterIPs": ["fd00:96::1"], "ports": [{"port": 80}]}
        })
    }

    fn body(v: &serde_json::Value) -> Response<Body> {
        Response::builder()
            .body(Body::from(serde_json::to_vec(v).unwrap()))
            .unwrap()
    }

    fn events(lines: &[serde_json::Value]) -> Response<Body> {
        let mut b = Vec::new();
        for l in lines {
            b.extend(serde_json::to_vec(l).unwrap());
            b.push(b'\n');
        }
        Response::builder().body(Body::from(b)).unwrap()
    }

    fn names(c: &Change) -> (String, Vec<String>) {
        let name = |o: &Object| o.key().to_string();
        match c {
            Change::Apply(o) => ("apply".into(), vec![name(o)]),
            Change::Delete(o) => ("delete".into(), vec![name(o)]),
            Change::Replace(k, objs) => (
                format!("replace {}", k.name()),
                objs.iter().map(name).collect(),
            ),
        }
    }

    /// The watcher against a mock API server: list, watch, reconnect from the last version when
    /// the watch ends, relist on 410 Gone, back off on errors.
    #[tokio::test]
    async fn list_watch_reconnect_and_410_gone_relist() {
        let (mock, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(mock, "default");
        let metrics = Arc::new(Metrics::new("n", None));
        let (tx, mut rx) = mpsc::channel(16);
        let m = metrics.clone();
        let task = tokio::spawn(async move {
            watch_kind(
                Api::<Service>::all(client),
                Kind::Service,
                |o| Object::Service(Box::new(o)),
                tx,
                m,
            )
            .await;
        });

        let mut next = async || {
            let (req, send) = tokio::time::timeout(Duration::from_secs(10), handle.next_request())
                .await
                .expect("watcher made a request")
                .expect("mock open");
            (req.uri().to_string(), send)
        };

        // 1. Initial list.
        let (uri, send) = next().await;
        assert!(
            uri.starts_with("/api/v1/services?") && !uri.contains("watch=true"),
            "{uri}"
        );
        send.send_response(body(&json!({
            "apiVersion": "v1", "kind": "ServiceList",
            "metadata": {"resourceVersion": "10"},
            "items": [svc("a", "9")]
        })));
        // 2. Watch from the list's version: one addition, then the server closes the stream.
        let (uri, send) = next().await;
        assert!(
            uri.contains("watch=true") && uri.contains("resourceVersion=10"),
            "{uri}"
        );
        send.send_response(events(&[
            json!({"type": "ADDED", "object": svc("b", "11")}),
        ]));
        // 3. Reconnect from the last version seen, no relist. This time: 410 Gone.
        let (uri, send) = next().await;
        assert!(
            uri.contains("watch=true") && uri.contains("resourceVersion=11"),
            "{uri}"
        );
        send.send_response(events(&[json!({"type": "ERROR", "object": {
            "apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
            "message": "too old resource version: 11 (20)", "reason": "Expired", "code": 410
        }})]));
        // 4. After the backoff: a fresh list, in which "a" is gone.
        let (uri, send) = next().await;
        assert!(!uri.contains("watch=true"), "relist expected: {uri}");
        send.send_response(body(&json!({
            "apiVersion": "v1", "kind": "ServiceList",
            "metadata": {"resourceVersion": "20"},
            "items": [svc("b", "11")]
        })));
        // 5. Watch again; a deletion.
        let (uri, send) = next().await;
        assert!(uri.contains("resourceVersion=20"), "{uri}");
        send.send_response(events(&[
            json!({"type": "DELETED", "object": svc("b", "21")}),
        ]));

        let mut got = Vec::new();
        while got.len() < 4 {
            let batch = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .expect("changes")
                .expect("open");
            got.extend(batch.iter().map(names));
        }
        let want: Vec<(String, Vec<String>)> = vec![
            ("replace Service".into(), vec!["default/a".into()]),
            ("apply".into(), vec!["default/b".into()]),
            ("replace Service".into(), vec!["default/b".into()]),
            ("delete".into(), vec!["default/b".into()]),
        ];
        assert_eq!(got, want);
        let text = metrics.encode();
        assert!(
            text.contains("sixlane_k8s_watch_errors_total{kind=\"Service\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("sixlane_k8s_watch_events_total{kind=\"Service\",event=\"relist\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("sixlane_k8s_watch_synced{kind=\"Service\"} 1"),
            "{text}"
        );
        task.abort();
    }

    /// A failing API server (500 on list) is retried with backoff, and recovers.
    #[tokio::test]
    async fn list_errors_are_retried() {
        let (mock, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(mock, "default");
        let metrics = Arc::new(Metrics::new("n", None));
        let (tx, mut rx) = mpsc::channel(16);
        let m = metrics.clone();
        let task = tokio::spawn(async move {
            watch_kind(
                Api::<Node>::all(client),
                Kind::Node,
                |o| Object::Node(Box::new(o)),
                tx,
                m,
            )
            .await;
        });
        let (req, send) = handle.next_request().await.unwrap();
        assert!(req.uri().path().ends_with("/nodes"));
        send.send_response(
            Response::builder()
                .status(500)
                .body(Body::from(
                    serde_json::to_vec(&json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                        "status": "Failure", "message": "etcd down", "reason": "InternalError", "code": 500}))
                    .unwrap(),
                ))
                .unwrap(),
        );
        let (req, send) = tokio::time::timeout(Duration::from_secs(10), handle.next_request())
            .await
            .unwrap()
            .unwrap();
        assert!(!req.uri().to_string().contains("watch=true"));
        send.send_response(body(&json!({
            "apiVersion": "v1", "kind": "NodeList", "metadata": {"resourceVersion": "5"},
            "items": [{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "resourceVersion": "4"}}]
        })));
        let batch = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(names(&batch[0]), ("replace Node".into(), vec!["n1".into()]));
        assert!(
            metrics
                .encode()
                .contains("sixlane_k8s_watch_errors_total{kind=\"Node\"} 1")
        );
        task.abort();
    }
}
