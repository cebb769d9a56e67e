//! kubelet's HTTP probes, run by the test: a GET from the node's network namespace (the pod
//! shares it: hostNetwork) to the probe's host, port and path. 2xx and 3xx are success.

use std::{
    io::{Read as _, Write as _},
    net::{IpAddr, SocketAddr, TcpStream},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;
use sixlane_testkit::NetNs;

/// An `httpGet` probe of a container.
#[derive(Clone, Debug)]
pub struct HttpProbe {
    pub addr: SocketAddr,
    pub path: String,
    pub period: Duration,
    /// Consecutive failures kubelet tolerates (its default: 3).
    pub failure_threshold: u32,
}

/// What one probe got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Answer {
    pub fn success(&self) -> bool {
        (200..400).contains(&self.status)
    }
}

impl HttpProbe {
    /// The container's probe `kind` (`readinessProbe`, `livenessProbe`). Panics if it has none
    /// or it is not an `httpGet` with a numeric port and a host.
    pub fn of(container: &Value, kind: &str) -> Self {
        let p = &container[kind];
        let get = &p["httpGet"];
        let host: IpAddr = get["host"]
            .as_str()
            .and_then(|h| h.parse().ok())
            .unwrap_or_else(|| panic!("{kind}: httpGet.host is not an address: {p}"));
        let port = get["port"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or_else(|| panic!("{kind}: httpGet.port is not a number: {p}"));
        Self {
            addr: SocketAddr::new(host, port),
            path: get["path"].as_str().unwrap_or("/").to_owned(),
            // kubelet's defaults: every 10 s, 3 failures.
            period: Duration::from_secs(p["periodSeconds"].as_u64().unwrap_or(10)),
            failure_threshold: p["failureThreshold"].as_u64().unwrap_or(3) as u32,
        }
    }

    /// One probe (kubelet's default timeout: 1 s).
    pub fn once(&self, ns: &NetNs) -> std::io::Result<Answer> {
        let timeout = Duration::from_secs(1);
        ns.enter(|| {
            let mut s = TcpStream::connect_timeout(&self.addr, timeout)?;
            s.set_read_timeout(Some(timeout))?;
            write!(
                s,
                "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: kube-probe/test\r\n\
                 Connection: close\r\n\r\n",
                self.path, self.addr
            )?;
            let mut text = String::new();
            s.read_to_string(&mut text)?;
            let status = text
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            let body = text
                .split_once("\r\n\r\n")
                .map_or("", |(_, b)| b)
                .to_owned();
            Ok(Answer { status, body })
        })
    }

    /// Probes every period until one succeeds or `within` has passed; returns the successful
    /// answer, or the last one (or the error) when it never succeeded.
    pub fn until_success(&self, ns: &NetNs, within: Duration) -> Result<Answer, String> {
        let start = Instant::now();
        loop {
            let got = self.once(ns);
            match &got {
                Ok(a) if a.success() => return Ok(a.clone()),
                _ if start.elapsed() >= within => {
                    return Err(match got {
                        Ok(a) => format!("HTTP {}: {}", a.status, a.body),
                        Err(e) => e.to_string(),
                    });
                }
                _ => thread::sleep(self.period),
            }
        }
    }
}
