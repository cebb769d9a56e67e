//! Kernel-timestamped frames on the router's interface: one AF_PACKET socket sees both the
//! solicitation going out (stamped as the kernel hands it to the interface) and the
//! advertisement coming in (stamped as the interface hands it to the kernel), so their
//! difference is the answer's time on the node, not this process's scheduling. The solicitation
//! is sent on another socket (a packet socket does not see its own frames).

use std::{
    io,
    os::fd::{AsRawFd as _, OwnedFd},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use nix::libc;
use sixlane_testkit::{
    ndp::{Advertisement, Solicitation, packet_socket},
    packet::send_raw,
};

/// One frame seen on the interface.
struct Frame {
    /// The kernel's timestamp (CLOCK_REALTIME).
    at: Duration,
    /// Sent by this host (`PACKET_OUTGOING`), not received.
    outgoing: bool,
    bytes: Vec<u8>,
}

/// Every frame on one interface with its kernel timestamp (`SO_TIMESTAMPNS`), from the moment it
/// is opened; open it in the interface's namespace.
pub struct Stamped {
    fd: OwnedFd,
    ifname: String,
}

impl Stamped {
    pub fn open(ifname: &str) -> anyhow::Result<Self> {
        let fd = packet_socket(ifname).with_context(|| format!("a packet socket on {ifname}"))?;
        let on: libc::c_int = 1;
        // SAFETY: `on` is a valid c_int for the length passed.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                std::ptr::addr_of!(on).cast(),
                std::mem::size_of::<libc::c_int>() as u32,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error()).context("SO_TIMESTAMPNS");
        }
        Ok(Self {
            fd,
            ifname: ifname.to_owned(),
        })
    }

    /// Sends `ns` and returns how long after it (kernel time) the first advertisement `want`
    /// accepts arrived, with that advertisement; `None` if none did within `window`.
    pub fn answer(
        &self,
        ns: &Solicitation,
        window: Duration,
        want: impl Fn(&Advertisement) -> bool,
    ) -> anyhow::Result<Option<(Duration, Advertisement)>> {
        // Whatever came before (a late answer to an earlier solicitation) is not this one's.
        while self.recv(0)?.is_some() {}
        let frame = ns.frame();
        send_raw(&self.ifname, &frame, 1).context("sending the solicitation")?;
        let end = Instant::now() + window;
        let mut sent = None;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            let ms = left.as_millis().max(1) as i32;
            let Some(f) = self.recv(ms)? else { continue };
            if f.outgoing && f.bytes == frame {
                sent = Some(f.at);
            } else if let (Some(t0), false) = (sent, f.outgoing)
                && let Some(a) = Advertisement::parse(&f.bytes)
                && want(&a)
            {
                return Ok(Some((f.at.saturating_sub(t0), a)));
            }
        }
        if sent.is_none() {
            bail!("the solicitation never showed on {}'s capture", self.ifname);
        }
        Ok(None)
    }

    /// The next frame, waiting up to `ms` milliseconds for one (0: only one already queued).
    fn recv(&self, ms: i32) -> anyhow::Result<Option<Frame>> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, ms) } <= 0 {
            return Ok(None);
        }
        let mut buf = vec![0u8; 2048];
        // u64s: the control buffer must be aligned for cmsghdr.
        let mut control = [0u64; 16];
        // SAFETY: plain data; all-zero is a valid starting value.
        let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: plain data; every pointer is set below.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = std::ptr::addr_of_mut!(from).cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as u32;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control);
        // SAFETY: every buffer `msg` points to lives until the call returns.
        let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock {
                return Ok(None);
            }
            return Err(e).context("reading the capture");
        }
        buf.truncate(n as usize);
        let at = timestamp(&msg).context("a captured frame without a kernel timestamp")?;
        Ok(Some(Frame {
            at,
            outgoing: from.sll_pkttype == libc::PACKET_OUTGOING,
            bytes: buf,
        }))
    }
}

/// The `SCM_TIMESTAMPNS` control message of a received `msg`.
fn timestamp(msg: &libc::msghdr) -> Option<Duration> {
    // SAFETY: `msg` was filled by recvmsg; the CMSG macros stay within its control buffer.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                return Some(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32));
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    None
}
