//! The Lease protocol's decisions, then two agents' load-balancing subsystems against one
//! in-process API server (kube-rs clients on `tower-test` mocks answered from one shared
//! state): one holds the Lease and writes, the other never does until the holder is gone.

use http::{Method, Request, Response};
use k8s_openapi::api::core::v1::Service as K8sService;
use kube::client::Body;
use serde_json::{Value, json};

use super::*;
use crate::{
    config::Config,
    lb::{
        LoadBalancing,
        input::REQUEST_ANNOTATION as REQUEST,
        patch::{ASSIGNED, CONDITION},
        report,
    },
    model::DesiredState,
    source::store::{Change, Kind, Object, Store},
};

fn held_by(holder: Option<&str>, renew_secs: i64, rv: &str) -> Lease {
    serde_json::from_value(json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": LEASE_NAME, "namespace": LEASE_NAMESPACE, "resourceVersion": rv},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "leaseTransitions": 3,
                 "acquireTime": "2025-01-01T00:00:00.000000Z",
                 "renewTime": Timestamp::from_second(1_735_689_600 + renew_secs).unwrap().to_string()}
    }))
    .unwrap()
}

fn spec(step: &Step) -> &LeaseSpec {
    match step {
        Step::Create(l) | Step::Update(l) => l.spec.as_ref().unwrap(),
        Step::Wait { .. } => panic!("{step:?}"),
    }
}

#[test]
fn the_lease_protocol() {
    let t0 = Instant::now();
    let wall = Timestamp::from_second(1_800_000_000).unwrap();
    let s = |n: u64| t0 + Duration::from_secs(n);

    // No Lease: create it, held by us.
    let mut e = Elector::new("node-a");
    let step = e.step(None, t0, wall);
    assert!(matches!(step, Step::Create(_)));
    let created = spec(&step);
    assert_eq!(created.holder_identity.as_deref(), Some("node-a"));
    assert_eq!(created.lease_duration_seconds, Some(15));
    assert_eq!(created.lease_transitions, Some(0));
    assert!(!e.is_leader(t0), "not before the write succeeded");

    // Held by another that keeps renewing: wait, however long.
    let mut e = Elector::new("node-a");
    for i in 0..20 {
        let step = e.step(
            Some(&held_by(Some("node-b"), i * 5, "1")),
            s(i as u64 * 5),
            wall,
        );
        assert_eq!(
            step,
            Step::Wait {
                holder: "node-b".into()
            }
        );
    }
    // Held by another that stopped renewing: wait until it has not changed for 15 s by our
    // own clock, then take it over with the version read.
    let mut e = Elector::new("node-a");
    let stale = held_by(Some("node-b"), 0, "9");
    assert!(matches!(
        e.step(Some(&stale), s(100), wall),
        Step::Wait { .. }
    ));
    assert!(matches!(
        e.step(Some(&stale), s(114), wall),
        Step::Wait { .. }
    ));
    let step = e.step(Some(&stale), s(115), wall);
    let Step::Update(l) = &step else {
        panic!("{step:?}")
    };
    assert_eq!(l.metadata.resource_version.as_deref(), Some("9"));
    let taken = spec(&step);
    assert_eq!(taken.holder_identity.as_deref(), Some("node-a"));
    assert_eq!(taken.lease_transitions, Some(4));
    assert_eq!(taken.acquire_time, Some(MicroTime(wall)));
    e.succeeded(l, s(115));
    assert!(e.is_leader(s(115)));

    // Held by us: renew, keeping when it was acquired.
    let ours = held_by(Some("node-a"), 0, "10");
    let step = e.step(Some(&ours), s(120), wall);
    let renewed = spec(&step);
    assert_eq!(renewed.renew_time, Some(MicroTime(wall)));
    assert_eq!(
        renewed.acquire_time,
        ours.spec.as_ref().unwrap().acquire_time
    );
    assert_eq!(renewed.lease_transitions, Some(3));
    // Renewals failing: writing stops at the deadline, before anyone can take over.
    assert!(e.is_leader(s(124)));
    assert!(!e.is_leader(s(125)));

    // Released (empty holder): taken at once.
    let mut e = Elector::new("node-a");
    let step = e.step(Some(&held_by(None, 0, "11")), s(0), wall);
    assert_eq!(spec(&step).holder_identity.as_deref(), Some("node-a"));

    // Release: only what we hold.
    let mut e = Elector::new("node-a");
    assert_eq!(e.release(&ours, s(0), wall), None, "not leader");
    e.succeeded(&ours, s(0));
    assert_eq!(
        e.release(&held_by(Some("node-b"), 0, "1"), s(1), wall),
        None
    );
    e.succeeded(&ours, s(0));
    let released = e.release(&ours, s(1), wall).unwrap();
    assert_eq!(released.spec.as_ref().unwrap().holder_identity, None);
    assert!(!e.is_leader(s(1)));
}

/// One API server's state: the Lease and every write.
#[derive(Debug, Default)]
struct Server {
    lease: Option<Value>,
    version: u64,
    /// (agent, path and query, content type, body)
    status_writes: Vec<(String, String, String, Value)>,
    events: Vec<(String, Value)>,
    /// (agent, holder written)
    lease_writes: Vec<(String, Option<String>)>,
}

fn status(code: u16, reason: &str) -> (u16, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason}),
    )
}

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases";

impl Server {
    fn handle(
        &mut self,
        who: &str,
        method: &Method,
        uri: &str,
        ctype: &str,
        body: &[u8],
    ) -> (u16, Value) {
        let path = uri.split('?').next().unwrap();
        let lease_path = format!("{LEASES}/{LEASE_NAME}");
        let mut body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        match (method.as_str(), path) {
            ("GET", p) if p == lease_path => match &self.lease {
                Some(l) => (200, l.clone()),
                None => status(404, "NotFound"),
            },
            ("POST", LEASES) | ("PUT", _) if path.starts_with(LEASES) => {
                let conflict = match (method.as_str(), &self.lease) {
                    ("POST", Some(_)) => true,
                    ("PUT", Some(l)) => {
                        body["metadata"]["resourceVersion"] != l["metadata"]["resourceVersion"]
                    }
                    ("PUT", None) => true,
                    _ => false,
                };
                if conflict {
                    return status(409, "Conflict");
                }
                self.version += 1;
                body["metadata"]["resourceVersion"] = json!(self.version.to_string());
                let holder = body["spec"]["holderIdentity"].as_str().map(str::to_owned);
                self.lease_writes.push((who.into(), holder));
                self.lease = Some(body.clone());
                (200, body)
            }
            ("PATCH", p) if p.starts_with("/api/v1/namespaces/") && p.ends_with("/status") => {
                self.status_writes
                    .push((who.into(), uri.into(), ctype.into(), body.clone()));
                body["metadata"]["resourceVersion"] = json!("100");
                (200, body)
            }
            ("POST", p) if p.starts_with("/apis/events.k8s.io/v1/namespaces/") => {
                self.events.push((who.into(), body.clone()));
                (201, body)
            }
            _ => status(404, "NotFound"),
        }
    }
}

/// A kube client whose requests `api` answers as agent `who`.
fn client(api: Arc<Mutex<Server>>, who: &'static str) -> Client {
    let (mock, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let (parts, body) = req.into_parts();
            let bytes = body.collect_bytes().await.unwrap();
            let ctype = parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            let (code, v) = api.lock().unwrap().handle(
                who,
                &parts.method,
                &parts.uri.to_string(),
                &ctype,
                &bytes,
            );
            send.send_response(
                Response::builder()
                    .status(code)
                    .body(Body::from(serde_json::to_vec(&v).unwrap()))
                    .unwrap(),
            );
        }
    });
    Client::new(mock, "default")
}

/// A LoadBalancer Service `name` in namespace `x`, created at `created` seconds, version `rv`.
fn service(name: &str, created: i64, rv: &str) -> K8sService {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "x", "uid": format!("uid-{name}"), "resourceVersion": rv,
            "generation": 1, "creationTimestamp": Timestamp::from_second(1_700_000_000 + created).unwrap().to_string()},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
    }))
    .unwrap()
}

fn store(services: Vec<K8sService>) -> Store {
    let mut s = Store::default();
    let objs = services
        .into_iter()
        .map(|k| Object::Service(Box::new(k)))
        .collect();
    s.apply(Change::Replace(Kind::Service, objs));
    s
}

/// What the watch would show after the API server applied the status writes: each Service's
/// status as last written, at the version the server gave it.
fn watched(mut st: Store, api: &Server) -> Store {
    for (_, uri, _, body) in &api.status_writes {
        let name = uri
            .split("/services/")
            .nth(1)
            .unwrap()
            .split('/')
            .next()
            .unwrap();
        let key = st.services.keys().find(|k| k.name == name).cloned();
        if let Some(key) = key {
            let svc = st.services.get_mut(&key).unwrap();
            svc.status = Some(serde_json::from_value(body["status"].clone()).unwrap());
            svc.metadata.resource_version = Some("100".into());
        }
    }
    st
}

/// An agent's load-balancing subsystem with its writer on `api`.
fn agent(api: &Arc<Mutex<Server>>, node: &'static str) -> LoadBalancing {
    let cfg = Config::parse(
        "loadBalancer:\n  enabled: true\n  pools:\n  - {name: one, ranges: ['2001:db8::1-2001:db8::1']}\n",
    )
    .unwrap();
    LoadBalancing::new(
        &cfg.load_balancer,
        Some(Handle::spawn(client(api.clone(), node), node)),
    )
}

fn lease(lb: &LoadBalancing) -> report::LeaseView {
    match lb.report().unwrap().writer {
        report::Writer::Lease(v) => v,
        report::Writer::Static => panic!("static"),
    }
}

fn writers_of(api: &Server) -> std::collections::BTreeSet<String> {
    api.status_writes.iter().map(|w| w.0.clone()).collect()
}

#[tokio::test(start_paused = true)]
async fn one_lease_holder_writes_the_status_the_other_never_does() {
    let api = Arc::new(Mutex::new(Server::default()));
    let mut a = agent(&api, "node-a");
    let mut b = agent(&api, "node-b");
    // One address: the older Service gets it, the newer waits.
    let st = store(vec![service("web", 0, "7"), service("late", 10, "8")]);
    let mut desired = DesiredState::default();
    a.reconcile(&st, &mut desired);
    b.reconcile(&st, &mut desired);
    assert_eq!(
        desired,
        DesiredState::default(),
        "Kubernetes mode serves the status"
    );

    tokio::time::sleep(Duration::from_secs(2)).await;
    let (mut leader, mut follower) = {
        let st = api.lock().unwrap();
        let holder = st.lease.as_ref().unwrap()["spec"]["holderIdentity"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            writers_of(&st),
            [holder.clone()].into(),
            "{:?}",
            st.status_writes
        );
        assert_eq!(st.status_writes.len(), 2, "one write per Service");
        if holder == "node-a" { (a, b) } else { (b, a) }
    };
    assert!(lease(&leader).leader && !lease(&follower).leader);
    assert_eq!(lease(&follower).holder, Some(lease(&leader).identity));

    {
        let st = api.lock().unwrap();
        // The assigned Service: server-side apply of the status subresource.
        let (_, uri, ctype, body) = st
            .status_writes
            .iter()
            .find(|w| w.1.contains("/services/web/"))
            .unwrap();
        assert!(
            uri.starts_with("/api/v1/namespaces/x/services/web/status?"),
            "{uri}"
        );
        assert!(
            uri.contains("fieldManager=sixlane-lb-ipam") && uri.contains("force=true"),
            "{uri}"
        );
        assert_eq!(ctype, "application/apply-patch+yaml");
        assert_eq!(body["metadata"]["resourceVersion"], "7");
        assert_eq!(
            body["status"]["loadBalancer"]["ingress"],
            json!([{"ip": "2001:db8::1"}])
        );
        let c = &body["status"]["conditions"][0];
        assert_eq!(
            (&c["type"], &c["status"], &c["reason"], &c["message"]),
            (
                &json!(CONDITION),
                &json!("True"),
                &json!(ASSIGNED),
                &json!("2001:db8::1 from pool one")
            )
        );
        // The pending one: no address, a False condition, and one Warning Event.
        let (_, _, _, body) = st
            .status_writes
            .iter()
            .find(|w| w.1.contains("/services/late/"))
            .unwrap();
        assert_eq!(body["status"]["loadBalancer"]["ingress"], json!([]));
        let c = &body["status"]["conditions"][0];
        assert_eq!(
            (&c["status"], &c["reason"]),
            (&json!("False"), &json!("PoolExhausted"))
        );
        assert_eq!(st.events.len(), 1);
        let ev = &st.events[0].1;
        assert_eq!(ev["reason"], "PoolExhausted");
        assert_eq!(ev["type"], "Warning");
        assert_eq!(ev["note"], "no free address left in pool one");
        assert_eq!(ev["regarding"]["name"], "late");
    }

    // The watch shows the writes; both agents reconcile again: nothing left to write. A minute
    // on: renewals only, nothing written twice, the follower never writes.
    let st = watched(st, &api.lock().unwrap());
    leader.reconcile(&st, &mut desired);
    follower.reconcile(&st, &mut desired);
    tokio::time::sleep(Duration::from_secs(60)).await;
    let leader_name = lease(&leader).identity;
    {
        let api = api.lock().unwrap();
        assert_eq!(api.status_writes.len(), 2);
        assert_eq!(api.events.len(), 1);
        let renewals = api
            .lease_writes
            .iter()
            .filter(|w| w.0 == leader_name)
            .count();
        assert!(renewals >= 12, "{:?}", api.lease_writes);
        assert!(
            api.lease_writes
                .iter()
                .all(|w| w.1.as_deref() == Some(leader_name.as_str()))
        );
    }

    // The holder dies without releasing. The older Service is deleted: its address goes to the
    // newer one, which the follower writes once it has waited out the Lease.
    leader.writer.take().unwrap().task.abort();
    let late = st
        .services
        .values()
        .find(|s| s.metadata.name.as_deref() == Some("late"));
    let st = store(vec![late.unwrap().clone()]);
    follower.reconcile(&st, &mut desired);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        writers_of(&api.lock().unwrap()),
        [leader_name.clone()].into()
    );
    tokio::time::sleep(Duration::from_secs(15)).await;
    {
        let api = api.lock().unwrap();
        let by_follower: Vec<&(String, String, String, Value)> = api
            .status_writes
            .iter()
            .filter(|w| w.0 == lease(&follower).identity)
            .collect();
        assert_eq!(by_follower.len(), 1, "{by_follower:?}");
        let body = &by_follower[0].3;
        assert_eq!(body["metadata"]["name"], "late");
        assert_eq!(
            body["status"]["loadBalancer"]["ingress"],
            json!([{"ip": "2001:db8::1"}])
        );
        assert_eq!(body["status"]["conditions"][0]["status"], "True");
        assert!(lease(&follower).leader);
    }

    // A clean stop releases the Lease for the next agent.
    follower.stop().await;
    let api = api.lock().unwrap();
    assert_eq!(
        api.lease.as_ref().unwrap()["spec"]["holderIdentity"],
        Value::Null
    );
}

#[tokio::test(start_paused = true)]
async fn an_address_just_written_is_not_given_again_before_the_watch_shows_it() {
    let api = Arc::new(Mutex::new(Server::default()));
    let mut a = agent(&api, "node-a");
    let mut desired = DesiredState::default();
    a.reconcile(&store(vec![service("web", 0, "7")]), &mut desired);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(api.lock().unwrap().status_writes.len(), 1);

    // A newer Service requests that address while the store still shows web without status.
    let mut req = service("req", 10, "9");
    req.metadata.annotations = Some([(REQUEST.into(), "2001:db8::1".into())].into());
    a.reconcile(&store(vec![service("web", 0, "7"), req]), &mut desired);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let api = api.lock().unwrap();
    let writes: Vec<&Value> = api
        .status_writes
        .iter()
        .map(|w| &w.3)
        .filter(|b| b["metadata"]["name"] == "req")
        .collect();
    assert_eq!(writes.len(), 1, "{:?}", api.status_writes);
    assert_eq!(writes[0]["status"]["loadBalancer"]["ingress"], json!([]));
    let c = &writes[0]["status"]["conditions"][0];
    assert_eq!(
        (&c["status"], &c["reason"]),
        (&json!("False"), &json!("AddressInUse"))
    );
    assert_eq!(
        c["message"],
        "requested 2001:db8::1 is assigned to x/web (no common sharing key)"
    );
    let web = api
        .status_writes
        .iter()
        .filter(|w| w.3["metadata"]["name"] == "web")
        .count();
    assert_eq!(web, 1, "web is not written again");
}
