//! A Kubernetes API server stand-in for an agent running in a pod: HTTPS with a CA of its own
//! (the pod's `ca.crt`), bearer-token authentication (the pod's service account token), and
//! the list + watch calls kube-rs's watcher makes, over a fixed set of objects. Watches stay
//! open without events until the server is dropped.
//!
//! TLS is terminated by `socat` with a certificate `openssl` makes for the server's address;
//! behind it a plain HTTP/1.1 server on the node's loopback answers.

use std::{
    collections::BTreeMap,
    fs,
    io::{BufRead as _, BufReader, Write as _},
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
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    _tls: ChildGuard,
}

impl ApiServer {
    /// Serves `objects` on `addr` (HTTPS, in `ns`) to clients presenting `token`.
    pub fn start(ns: &NetNs, addr: SocketAddr, tls: &Tls, token: &str, objects: Objects) -> Self {
        let listener = ns
            .enter(|| TcpListener::bind((Ipv6Addr::LOCALHOST, 0)))
            .expect("binding the API server's HTTP side");
        listener.set_nonblocking(true).unwrap();
        let backend = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new((objects, format!("Bearer {token}")));
        {
            let (requests, stop) = (requests.clone(), stop.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((s, _)) => {
                            let (requests, stop, shared) =
                                (requests.clone(), stop.clone(), shared.clone());
                            thread::spawn(move || serve(s, &shared.0, &shared.1, &requests, &stop));
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
            requests,
            stop,
            _tls: tls_proc,
        }
    }

    /// Every request answered so far.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Answers one connection's requests: a list, a watch (held open, no events), or 401/404.
fn serve(
    s: TcpStream,
    objects: &Objects,
    bearer: &str,
    requests: &Mutex<Vec<Request>>,
    stop: &AtomicBool,
) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let mut r = BufReader::new(s);
    let mut line = String::new();
    if r.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let target = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let mut authorized = false;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("authorization")
        {
            authorized = v.trim() == bearer;
        }
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let watch = query
        .split('&')
        .any(|q| q == "watch=true" || q == "watch=1");
    requests.lock().unwrap().push(Request {
        path: path.to_owned(),
        watch,
        authorized,
    });
    let mut s = r.into_inner();
    let (status, body) = match (authorized, objects.get(path)) {
        (false, _) => (401, status_json(401, "Unauthorized")),
        (true, None) => (404, status_json(404, "NotFound")),
        (true, Some(_)) if watch => {
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
            );
            let _ = s.flush();
            while !stop.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(100));
            }
            return;
        }
        (true, Some((api_version, kind, items))) => (
            200,
            json!({
                "kind": kind,
                "apiVersion": api_version,
                "metadata": {"resourceVersion": "1"},
                "items": items,
            }),
        ),
    };
    let body = body.to_string();
    let _ = write!(
        s,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
}

fn status_json(code: u16, reason: &str) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code,
    })
}
