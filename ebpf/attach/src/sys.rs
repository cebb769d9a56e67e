//! Raw `bpf(2)` calls aya does not expose: the TCX part of `bpf_link_info` (interface and hook of
//! a pinned link), needed to tell a live link from one whose interface was deleted or renamed;
//! and the maps of a program known only by id (which datapath a tc filter belongs to).

use std::{
    ffi::CString,
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    os::unix::ffi::OsStrExt as _,
    path::Path,
};

use aya_obj::generated::bpf_prog_info;

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
