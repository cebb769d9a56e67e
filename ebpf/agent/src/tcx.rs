//! TCX attachment through pinned links.
//!
//! A TCX link lives as long as a file descriptor or a bpffs pin refers to it. sixlane pins every
//! link at `links/<program>@<ifname>` so that attachments made by short-lived processes (the CNI
//! plugin) persist, and so that a new agent can swap the program behind a link atomically
//! (`bpf_link_update`) instead of detaching and re-attaching.

use std::{
    ffi::CString,
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    os::unix::ffi::OsStrExt as _,
    path::Path,
};

use aya::programs::{
    LinkOrder, SchedClassifier, TcAttachType,
    links::{FdLink, PinnedLink},
    tc::{SchedClassifierLink, TcAttachOptions},
};
use tracing::debug;

use crate::{Error, PinLayout, Result, loader::remove_pin};

/// What [`attach`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attached {
    /// A new link was created and pinned.
    Created,
    /// A link for this interface and program existed; its program was swapped atomically.
    Replaced,
}

/// What [`replace_program`] did with one pinned link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replace {
    Replaced,
    AlreadyCurrent,
    /// The link's interface is gone.
    Defunct,
}

/// Outcome of re-pointing everything attached after a load: the pinned TCX links (uplink, and
/// pods attached in TCX mode) and sixlane's tc filters in the caller's network namespace (pods
/// attached in tc mode).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct UpgradeReport {
    /// Pinned links switched to this load's program.
    pub replaced: usize,
    pub current: usize,
    /// Link pins of deleted interfaces, unpinned.
    pub removed: usize,
    pub unknown: usize,
    /// tc filters (see [`crate::tc`]).
    pub filters: crate::tc::FilterReport,
}

/// A pinned link as the kernel sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkState {
    pub prog_id: u32,
    /// 0 when the interface is gone.
    pub ifindex: u32,
    pub hook: Option<TcAttachType>,
}

/// The state of the link pinned for `prog_name` on `iface`, if there is a pin.
pub fn link_state(layout: &PinLayout, iface: &str, prog_name: &str) -> Result<Option<LinkState>> {
    let path = layout.link(iface, prog_name);
    if !path.exists() {
        return Ok(None);
    }
    let info = sys::link_info_at(&path).map_err(|e| Error::io("reading link", &path, e))?;
    let hook = match info.attach_type {
        sys::BPF_TCX_INGRESS => Some(TcAttachType::Ingress),
        sys::BPF_TCX_EGRESS => Some(TcAttachType::Egress),
        _ => None,
    };
    Ok(Some(LinkState {
        prog_id: info.prog_id,
        ifindex: info.ifindex,
        hook,
    }))
}

/// Attaches `prog` (named `prog_name` in the object) to `iface` at `hook` via a pinned TCX link.
/// Idempotent: if a live link for the same interface and program is pinned, its program is
/// replaced atomically; a stale pin (interface deleted, or a new interface with the same name)
/// is dropped and a fresh link created.
pub fn attach(
    prog: &mut SchedClassifier,
    prog_name: &str,
    iface: &str,
    hook: TcAttachType,
    layout: &PinLayout,
) -> Result<Attached> {
    let ifindex = ifindex(iface)?;
    let path = layout.link(iface, prog_name);
    if path.exists() {
        let info = sys::link_info_at(&path).map_err(|e| Error::io("reading link", &path, e))?;
        if info.ifindex == ifindex && info.attach_type == tcx_attach_type(hook) {
            update_link(prog, &path)?;
            debug!(iface, prog_name, "replaced program behind pinned link");
            return Ok(Attached::Replaced);
        }
        debug!(
            iface,
            prog_name,
            old_ifindex = info.ifindex,
            "dropping stale link pin"
        );
        remove_pin(&path)?;
    }
    let id = prog
        .attach_with_options(iface, hook, TcAttachOptions::TcxOrder(LinkOrder::default()))
        .map_err(|source| Error::Program {
            name: prog_name.to_owned(),
            source,
        })?;
    let link = prog.take_link(id).map_err(|source| Error::Program {
        name: prog_name.to_owned(),
        source,
    })?;
    let fd_link: FdLink = link.try_into().map_err(|source| Error::Link {
        path: path.clone(),
        source,
    })?;
    fd_link.pin(&path).map_err(|source| Error::Pin {
        path: path.clone(),
        source,
    })?;
    debug!(iface, prog_name, "attached");
    Ok(Attached::Created)
}

/// Attaches the program pinned at `progs/<prog_name>` (by a running agent) to `iface`. This is
/// what the CNI plugin calls for a new pod; it fails with [`Error::NotPinned`] when the agent has
/// not loaded the datapath.
pub fn attach_pinned(
    layout: &PinLayout,
    prog_name: &str,
    iface: &str,
    hook: TcAttachType,
) -> Result<Attached> {
    let mut prog = pinned_classifier(layout, prog_name)?;
    attach(&mut prog, prog_name, iface, hook, layout)
}

/// The classifier pinned at `progs/<prog_name>`; [`Error::NotPinned`] when the datapath is not
/// loaded.
pub(crate) fn pinned_classifier(layout: &PinLayout, prog_name: &str) -> Result<SchedClassifier> {
    let path = layout.prog(prog_name);
    if !path.exists() {
        return Err(Error::NotPinned {
            name: prog_name.to_owned(),
            path,
        });
    }
    SchedClassifier::from_pin(&path).map_err(|source| Error::Program {
        name: prog_name.to_owned(),
        source,
    })
}

/// Detaches the pinned link of `prog_name` on `iface` and removes its pin. The detach is
/// synchronous (`BPF_LINK_DETACH`): merely dropping the last reference defers the release to a
/// kernel work queue, so traffic could still hit the program after we return. Returns whether a
/// pin existed.
pub fn detach(layout: &PinLayout, iface: &str, prog_name: &str) -> Result<bool> {
    let path = layout.link(iface, prog_name);
    if !path.exists() {
        return Ok(false);
    }
    match sys::link_detach_at(&path) {
        Ok(()) => {}
        // The interface is already gone: nothing to detach from.
        Err(e) if e.raw_os_error() == Some(libc::ENOLINK) => {}
        Err(e) => return Err(Error::io("detaching link", &path, e)),
    }
    remove_pin(&path)?;
    Ok(true)
}

/// Swaps the program behind the link pinned at `path` for `prog`, unless it already runs it.
pub fn replace_program(prog: &mut SchedClassifier, path: &Path) -> Result<Replace> {
    let info = sys::link_info_at(path).map_err(|e| Error::io("reading link", path, e))?;
    if info.ifindex == 0 {
        return Ok(Replace::Defunct);
    }
    let current = prog
        .info()
        .map_err(|source| Error::Program {
            name: path.display().to_string(),
            source,
        })?
        .id();
    if info.prog_id == current {
        return Ok(Replace::AlreadyCurrent);
    }
    update_link(prog, path)?;
    Ok(Replace::Replaced)
}

/// `bpf_link_update` on the pinned link. The pin keeps the link; the fd aya holds afterwards is
/// only closed when `prog` drops.
fn update_link(prog: &mut SchedClassifier, path: &Path) -> Result<()> {
    let pinned = PinnedLink::from_pin(path).map_err(|source| Error::Link {
        path: path.to_owned(),
        source,
    })?;
    let link =
        SchedClassifierLink::try_from(FdLink::from(pinned)).map_err(|source| Error::Link {
            path: path.to_owned(),
            source,
        })?;
    prog.attach_to_link(link).map_err(|source| Error::Program {
        name: path.display().to_string(),
        source,
    })?;
    Ok(())
}

fn ifindex(iface: &str) -> Result<u32> {
    let c = CString::new(iface).map_err(|_| Error::NoSuchInterface(iface.to_owned()))?;
    // SAFETY: `c` is a valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(Error::NoSuchInterface(iface.to_owned()));
    }
    Ok(idx)
}

const fn tcx_attach_type(hook: TcAttachType) -> u32 {
    match hook {
        TcAttachType::Ingress => sys::BPF_TCX_INGRESS,
        TcAttachType::Egress => sys::BPF_TCX_EGRESS,
        TcAttachType::Custom(_) => u32::MAX,
    }
}

/// Raw `bpf(2)` calls aya does not expose: the TCX part of `bpf_link_info` (interface and hook of
/// a pinned link), needed to tell a live link from one whose interface was deleted or renamed;
/// and the maps of a program known only by id (which datapath a tc filter belongs to).
pub(crate) mod sys {
    use aya_obj::generated::bpf_prog_info;

    use super::*;

    const BPF_OBJ_GET: libc::c_long = 7;
    const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
    const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
    const BPF_LINK_DETACH: libc::c_long = 34;
    pub const BPF_TCX_INGRESS: u32 = 46;
    pub const BPF_TCX_EGRESS: u32 = 47;

    #[derive(Debug)]
    pub struct LinkInfo {
        pub prog_id: u32,
        pub ifindex: u32,
        pub attach_type: u32,
    }

    #[repr(C)]
    #[derive(Default)]
    struct ObjGetAttr {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
        path_fd: i32,
        _pad: u32,
    }

    #[repr(C)]
    #[derive(Default)]
    struct InfoAttr {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }

    /// `struct bpf_link_info`: type, id, prog_id, then an 8-byte aligned union whose TCX member is
    /// `{ ifindex, attach_type }`. Sized generously; the kernel fills what it knows.
    #[repr(C, align(8))]
    struct RawLinkInfo {
        type_: u32,
        id: u32,
        prog_id: u32,
        _pad: u32,
        union: [u32; 60],
    }

    fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
        // SAFETY: `attr` is a valid, initialized bpf_attr prefix of the right size for `cmd`.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                cmd,
                attr as *mut T,
                std::mem::size_of::<T>() as libc::c_uint,
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(rc)
        }
    }

    fn obj_get(path: &Path) -> io::Result<OwnedFd> {
        let c = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
        let mut attr = ObjGetAttr {
            pathname: c.as_ptr() as u64,
            ..Default::default()
        };
        let fd = bpf(BPF_OBJ_GET, &mut attr)?;
        // SAFETY: BPF_OBJ_GET returned a new fd that we own.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
    }

    pub fn link_detach_at(path: &Path) -> io::Result<()> {
        let fd = obj_get(path)?;
        #[repr(C)]
        struct DetachAttr {
            link_fd: u32,
        }
        let mut attr = DetachAttr {
            link_fd: fd.as_raw_fd() as u32,
        };
        bpf(BPF_LINK_DETACH, &mut attr).map(drop)
    }

    /// The kernel's name (at most 15 bytes) of the program with id `prog_id`, and the ids of the
    /// maps it uses.
    pub fn prog_name_and_maps(prog_id: u32) -> io::Result<(String, Vec<u32>)> {
        #[repr(C)]
        #[derive(Default)]
        struct GetByIdAttr {
            id: u32,
            next_id: u32,
            open_flags: u32,
        }
        let mut attr = GetByIdAttr {
            id: prog_id,
            ..Default::default()
        };
        let fd = bpf(BPF_PROG_GET_FD_BY_ID, &mut attr)?;
        // SAFETY: BPF_PROG_GET_FD_BY_ID returned a new fd that we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let info_of = |info: &mut bpf_prog_info| {
            let mut attr = InfoAttr {
                bpf_fd: fd.as_raw_fd() as u32,
                info_len: std::mem::size_of::<bpf_prog_info>() as u32,
                info: std::ptr::from_mut(info) as u64,
            };
            bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr).map(drop)
        };
        // First the count, then the ids (the kernel fills at most nr_map_ids of them).
        // SAFETY: bpf_prog_info is plain old data; all zeroes is its "ask for nothing" value.
        let mut info: bpf_prog_info = unsafe { std::mem::zeroed() };
        info_of(&mut info)?;
        let mut ids = vec![0u32; info.nr_map_ids as usize];
        // SAFETY: as above.
        let mut info: bpf_prog_info = unsafe { std::mem::zeroed() };
        info.nr_map_ids = ids.len() as u32;
        info.map_ids = ids.as_mut_ptr() as u64;
        info_of(&mut info)?;
        ids.truncate(info.nr_map_ids as usize);
        let name: Vec<u8> = info
            .name
            .iter()
            .take_while(|c| **c != 0)
            .map(|c| *c as u8)
            .collect();
        Ok((String::from_utf8_lossy(&name).into_owned(), ids))
    }

    pub fn link_info_at(path: &Path) -> io::Result<LinkInfo> {
        let fd = obj_get(path)?;
        let mut info = RawLinkInfo {
            type_: 0,
            id: 0,
            prog_id: 0,
            _pad: 0,
            union: [0; 60],
        };
        let mut attr = InfoAttr {
            bpf_fd: fd.as_raw_fd() as u32,
            info_len: std::mem::size_of::<RawLinkInfo>() as u32,
            info: std::ptr::addr_of_mut!(info) as u64,
        };
        bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
        Ok(LinkInfo {
            prog_id: info.prog_id,
            ifindex: info.union[0],
            attach_type: info.union[1],
        })
    }
}
