//! TCP echo traffic for the tests that must show connections survive something (an upgrade, a
//! restart, an endpoint change): an echo server in a namespace, a checked round trip, and a
//! background pinger that fails loudly if any round trip fails.

use std::{
    io::{ErrorKind, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::Duration,
};

use sixlane_testkit::NetNs;

/// An echo server bound in `ns`; every connection echoes until the peer closes or the server is
/// dropped (drop stops and joins it).
pub struct EchoServer {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl EchoServer {
    pub fn start(ns: &NetNs, addr: SocketAddr) -> Self {
        let l = ns
            .enter(|| TcpListener::bind(addr))
            .unwrap_or_else(|e| panic!("echo server on {addr}: {e}"));
        l.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut conns = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match l.accept() {
                        Ok((s, _)) => {
                            let stop = stop.clone();
                            conns.push(thread::spawn(move || echo(s, &stop)));
                        }
                        Err(_) => thread::sleep(Duration::from_millis(5)),
                    }
                }
                for c in conns {
                    let _ = c.join();
                }
            })
        };
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn echo(mut s: TcpStream, stop: &AtomicBool) {
    s.set_nonblocking(false).unwrap();
    // A timeout so a stopped server does not wait for an idle peer forever.
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
}

/// Connects from `ns` (5 s timeouts for connect and reads).
pub fn connect(ns: &NetNs, to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = ns.enter(|| TcpStream::connect_timeout(&to, Duration::from_secs(5)))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    Ok(s)
}

/// Sends `msg` and reads the same bytes back.
pub fn round_trip(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<()> {
    s.write_all(msg)?;
    let mut got = vec![0u8; msg.len()];
    s.read_exact(&mut got)?;
    if got != msg {
        return Err(std::io::Error::other(format!(
            "echo returned {got:?} for {msg:?}"
        )));
    }
    Ok(())
}

/// [`round_trip`] that panics on failure.
pub fn exchange(s: &mut TcpStream, msg: &[u8]) {
    round_trip(s, msg).unwrap_or_else(|e| panic!("round trip of {msg:?}: {e}"));
}

/// Round trips on `s` every 2 ms in the background until [`Pinger::finish`].
pub struct Pinger {
    running: Arc<AtomicBool>,
    trips: Arc<AtomicU64>,
    thread: thread::JoinHandle<std::io::Result<()>>,
}

impl Pinger {
    pub fn start(mut s: TcpStream) -> Self {
        let running = Arc::new(AtomicBool::new(true));
        let trips = Arc::new(AtomicU64::new(0));
        let thread = {
            let (running, trips) = (running.clone(), trips.clone());
            thread::spawn(move || {
                while running.load(Ordering::Relaxed) {
                    round_trip(&mut s, b"ping")?;
                    trips.fetch_add(1, Ordering::Relaxed);
                    thread::sleep(Duration::from_millis(2));
                }
                Ok(())
            })
        };
        Self {
            running,
            trips,
            thread,
        }
    }

    /// Stops; panics if any round trip failed. Returns how many completed.
    pub fn finish(self) -> u64 {
        self.running.store(false, Ordering::Relaxed);
        match self.thread.join() {
            Ok(Ok(())) => self.trips.load(Ordering::Relaxed),
            Ok(Err(e)) => panic!(
                "a round trip failed after {} good ones: {e}",
                self.trips.load(Ordering::Relaxed)
            ),
            Err(_) => panic!("the pinger panicked"),
        }
    }
}
