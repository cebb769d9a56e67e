//! A Kubernetes API server stand-in for an agent running in a pod: HTTPS with a CA of its own
//! (the pod's `ca.crt`), bearer-token authentication (the pod's service account token), and
//! the list + watch calls kube-rs's watcher makes, over a fixed set of objects. Watches stay
//! open without events until the server is dropped. Writes are recorded ([`ApiServer::writes`]):
//! a POST creates an object (409 if it exists) that GET then returns, a PUT replaces it if its
//! `resourceVersion` is the one stored (else 409), a PATCH is answered with the patch — enough
//! for a Lease and the status writes of LoadBalancer IP assignment.
//!
//! TLS is terminated by `socat` with a certificate `openssl` makes for the server's address;
//! behind it a plain HTTP/1.1 server on the node's loopback answers.

use std::{
    collections::BTreeMap,
    fs,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{Ipv6Addr, SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use sixlane_testkit::{ChildGuard, NetNs};

/// A request the server answered: method, path (without query), whether it was a watch, and
/// whether its bearer token was the one expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub path: String,
    pub watch: bool,
    pub authorized: bool,
}

/// A write the server accepted from an authorized client (anything but GET).
#[derive(Clone, Debug, PartialEq)]
pub struct Write {
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: String,
    pub body: Value,
}

/// A CA and a server certificate for `ip` (PEM files in `dir`).
pub struct Tls {
    pub ca_crt: PathBuf,
    /// The server's certificate and key, one PEM file (what socat's `cert=` reads).
    pub server_pem: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("running openssl (cargo xtask setup installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Tls {
    /// An EC P-256 CA, and a server certificate signed by it with `ip` as its only name.
    pub fn new(dir: &Path, ip: Ipv6Addr) -> Self {
        fs::create_dir_all(dir).unwrap();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=sixlane-test-ca"];
        ca.extend(ec);
        ca.extend(["-keyout", "ca.key", "-out", "ca.crt"]);
        openssl(dir, &ca);
        let mut csr = vec!["req", "-subj", "/CN=kube-apiserver"];
        csr.extend(ec);
        csr.extend(["-keyout", "server.key", "-out", "server.csr"]);
        openssl(dir, &csr);
        // An end-entity certificate as webpki (kube-rs's rustls) wants it.
        fs::write(
            dir.join("server.ext"),
            format!(
                "subjectAltName=IP:{ip}\nbasicConstraints=critical,CA:FALSE\n\
                 keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
            ),
        )
        .unwrap();
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "server.ext",
                "-out",
                "server.crt",
            ],
        );
        let pem = [
            fs::read_to_string(dir.join("server.crt")).unwrap(),
            fs::read_to_string(dir.join("server.key")).unwrap(),
        ]
        .concat();
        fs::write(dir.join("server.pem"), pem).unwrap();
        Self {
            ca_crt: dir.join("ca.crt"),
            server_pem: dir.join("server.pem"),
        }
    }
}

/// A kubeconfig at `path` for the server at `addr` (its CA from `tls`), authenticating with
/// `token`.
pub fn kubeconfig(path: &Path, addr: SocketAddr, tls: &Tls, token: &str) {
    fs::write(
        path,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: t\n\
             clusters: [{{name: t, cluster: {{server: \"https://{addr}\", certificate-authority: {}}}}}]\n\
             users: [{{name: t, user: {{token: {token}}}}}]\n\
             contexts: [{{name: t, context: {{cluster: t, user: t}}}}]\n",
            tls.ca_crt.display()
        ),
    )
    .unwrap();
}

/// The objects served, by collection path (`/api/v1/nodes`): each a list's `apiVersion`,
/// `kind` and items.
pub type Objects = BTreeMap<&'static str, (&'static str, &'static str, Vec<Value>)>;

/// The three collections the agent watches, with `nodes`, `services` and `slices`.
pub fn objects(nodes: Vec<Value>, services: Vec<Value>, slices: Vec<Value>) -> Objects {
    BTreeMap::from([
        ("/api/v1/nodes", ("v1", "NodeList", nodes)),
        ("/api/v1/services", ("v1", "ServiceList", services)),
        (
            "/apis/discovery.k8s.io/v1/endpointslices",
            ("discovery.k8s.io/v1", "EndpointSliceList", slices),
        ),
    ])
}

/// The server. Dropping it closes the listener, ends open watches and stops socat.
pub struct ApiServer {
    pub addr: SocketAddr,
    state: Arc<State>,
    _tls: ChildGuard,
}

/// What the connections share.
struct State {
    objects: Objects,
    bearer: String,
    requests: Mutex<Vec<Request>>,
    writes: Mutex<Vec<Write>>,
    /// Objects created by POST, by path, and the last `resourceVersion` given.
    created: Mutex<(BTreeMap<String, Value>, u64)>,
    stop: AtomicBool,
}

impl ApiServer {
    /// Serves `objects` on `addr` (HTTPS, in `ns`) to clients presenting `token`.
    pub fn start(ns: &NetNs, addr: SocketAddr, tls: &Tls, token: &str, objects: Objects) -> Self {
        let listener = ns
            .enter(|| TcpListener::bind((Ipv6Addr::LOCALHOST, 0)))
            .expect("binding the API server's HTTP side");
        listener.set_nonblocking(true).unwrap();
        let backend = listener.local_addr().unwrap();
        let state = Arc::new(State {
            objects,
            bearer: format!("Bearer {token}"),
            requests: Mutex::default(),
            writes: Mutex::default(),
            created: Mutex::default(),
            stop: AtomicBool::new(false),
        });
        {
            let state = state.clone();
            thread::spawn(move || {
                while !state.stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((s, _)) => {
                            let state = state.clone();
                            thread::spawn(move || serve(s, &state));
                        }
                        Err(_) => thread::sleep(Duration::from_millis(5)),
                    }
                }
            });
        }
        let listen = format!(
            "OPENSSL-LISTEN:{},bind=[{}],pf=ip6,reuseaddr,fork,cert={},verify=0",
            addr.port(),
            addr.ip(),
            tls.server_pem.display()
        );
        // Its log, not the test's output: probing the port below makes it complain.
        let log = tls.server_pem.with_file_name("socat.log");
        let tls_proc = ns
            .spawn(
                "socat",
                &[
                    "-lf",
                    &log.to_string_lossy(),
                    &listen,
                    &format!("TCP6:{backend}"),
                ],
            )
            .expect("starting socat");
        let start = Instant::now();
        while ns
            .enter(|| TcpStream::connect_timeout(&addr, Duration::from_millis(200)))
            .is_err()
        {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "socat on {addr} never listened"
            );
            thread::sleep(Duration::from_millis(50));
        }
        Self {
            addr,
            state,
            _tls: tls_proc,
        }
    }

    /// Every request answered so far.
    pub fn requests(&self) -> Vec<Request> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Every write accepted so far, in order.
    pub fn writes(&self) -> Vec<Write> {
        self.state.writes.lock().unwrap().clone()
    }

    /// The object a POST created at `path` (`<collection>/<name>`), as last written.
    pub fn created(&self, path: &str) -> Option<Value> {
        self.state.created.lock().unwrap().0.get(path).cloned()
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Relaxed);
    }
}

/// Answers one connection's request: a list, a watch (held open, no events), a write, or
/// 401/404.
fn serve(s: TcpStream, state: &State) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let mut r = BufReader::new(s);
    let mut line = String::new();
    if r.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut words = line.split_whitespace();
    let method = words.next().unwrap_or("GET").to_owned();
    let target = words.next().unwrap_or("/").to_owned();
    let mut authorized = false;
    let (mut length, mut content_type) = (0, String::new());
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            let v = v.trim();
            if k.eq_ignore_ascii_case("authorization") {
                authorized = v == state.bearer;
            } else if k.eq_ignore_ascii_case("content-length") {
                length = v.parse().unwrap_or(0);
            } else if k.eq_ignore_ascii_case("content-type") {
                content_type = v.to_owned();
            }
        }
    }
    let mut body = vec![0; length];
    if r.read_exact(&mut body).is_err() {
        return;
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let watch = query
        .split('&')
        .any(|q| q == "watch=true" || q == "watch=1");
    state.requests.lock().unwrap().push(Request {
        path: path.to_owned(),
        watch,
        authorized,
    });
    let mut s = r.into_inner();
    let (status, body) = if !authorized {
        (401, status_json(401, "Unauthorized"))
    } else if method != "GET" {
        let write = Write {
            method,
            path: path.to_owned(),
            query: query.to_owned(),
            content_type,
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        };
        let answer = state.write(&write);
        state.writes.lock().unwrap().push(write);
        answer
    } else if let Some(o) = state.created.lock().unwrap().0.get(path) {
        (200, o.clone())
    } else {
        match state.objects.get(path) {
            None => (404, status_json(404, "NotFound")),
            Some(_) if watch => {
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
                );
                let _ = s.flush();
                while !state.stop.load(Ordering::Relaxed) {
                    thread::sleep(Duration::from_millis(100));
                }
                return;
            }
            Some((api_version, kind, items)) => (
                200,
                json!({
                    "kind": kind,
                    "apiVersion": api_version,
                    "metadata": {"resourceVersion": "1"},
                    "items": items,
                }),
            ),
        }
    };
    let body = body.to_string();
    let _ = write!(
        s,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
}

impl State {
    /// A write's answer: POST creates, PUT replaces (optimistic concurrency on
    /// `resourceVersion`), PATCH echoes the patch.
    fn write(&self, w: &Write) -> (u16, Value) {
        let mut created = self.created.lock().unwrap();
        let (objects, version) = &mut *created;
        let mut body = w.body.clone();
        let key = match w.method.as_str() {
            "POST" => {
                let name = body["metadata"]["name"].as_str().map_or_else(
                    || {
                        format!(
                            "{}{}",
                            body["metadata"]["generateName"].as_str().unwrap_or(""),
                            *version + 1
                        )
                    },
                    str::to_owned,
                );
                let key = format!("{}/{name}", w.path);
                if objects.contains_key(&key) {
                    return (409, status_json(409, "AlreadyExists"));
                }
                body["metadata"]["name"] = json!(name);
                Some(key)
            }
            "PUT" => match objects.get(&w.path) {
                None => return (404, status_json(404, "NotFound")),
                Some(o)
                    if o["metadata"]["resourceVersion"] != body["metadata"]["resourceVersion"] =>
                {
                    return (409, status_json(409, "Conflict"));
                }
                Some(_) => Some(w.path.clone()),
            },
            "PATCH" => None,
            _ => return (405, status_json(405, "MethodNotAllowed")),
        };
        *version += 1;
        body["metadata"]["resourceVersion"] = json!(version.to_string());
        match key {
            Some(k) => {
                let code = if w.method == "POST" { 201 } else { 200 };
                objects.insert(k, body.clone());
                (code, body)
            }
            None => (200, body),
        }
    }
}

fn status_json(code: u16, reason: &str) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code,
    })
}
