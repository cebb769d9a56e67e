//! The `bpf(2)` map commands the service programmer needs and aya does not expose: batched
//! update, delete and lookup (one syscall for thousands of elements, which is what makes
//! programming 10,000 services take milliseconds), plus a single-element lookup on raw bytes.

use std::{
    io,
    os::fd::{AsRawFd as _, BorrowedFd},
};

const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;

/// The element part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// The `batch` part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<()> {
    // SAFETY: `attr` is a valid, initialized bpf_attr prefix of the right size for `cmd`; the
    // pointers inside it refer to buffers the caller keeps alive for the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_mut(attr),
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn fd_u32(fd: BorrowedFd<'_>) -> u32 {
    fd.as_raw_fd() as u32
}

/// Looks `key` up into `value`; `Ok(false)` if absent.
pub fn lookup(fd: BorrowedFd<'_>, key: &[u8], value: &mut [u8]) -> io::Result<bool> {
    let mut a = ElemAttr {
        map_fd: fd_u32(fd),
        key: key.as_ptr() as u64,
        value: value.as_mut_ptr() as u64,
        ..Default::default()
    };
    match bpf(BPF_MAP_LOOKUP_ELEM, &mut a) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Updates `keys.len() / key_size` elements in one call per at most `CHUNK` elements. The
/// kernel applies them in order.
pub fn update_batch(
    fd: BorrowedFd<'_>,
    keys: &[u8],
    key_size: usize,
    values: &[u8],
    value_size: usize,
) -> io::Result<()> {
    let n = keys.len() / key_size;
    debug_assert_eq!(values.len() / value_size, n);
    let mut done = 0;
    while done < n {
        let mut a = BatchAttr {
            keys: keys[done * key_size..].as_ptr() as u64,
            values: values[done * value_size..].as_ptr() as u64,
            count: (n - done) as u32,
            map_fd: fd_u32(fd),
            ..Default::default()
        };
        bpf(BPF_MAP_UPDATE_BATCH, &mut a)?;
        if a.count == 0 {
            return Err(io::Error::other("BPF_MAP_UPDATE_BATCH made no progress"));
        }
        done += a.count as usize;
    }
    Ok(())
}

/// Deletes the given keys; keys that are not there are skipped (the kernel stops a batch at
/// the first missing key, so the batch resumes after it). Returns how many were deleted.
pub fn delete_batch(fd: BorrowedFd<'_>, keys: &[u8], key_size: usize) -> io::Result<usize> {
    let n = keys.len() / key_size;
    let mut done = 0;
    let mut deleted = 0;
    while done < n {
        let mut a = BatchAttr {
            keys: keys[done * key_size..].as_ptr() as u64,
            count: (n - done) as u32,
            map_fd: fd_u32(fd),
            ..Default::default()
        };
        match bpf(BPF_MAP_DELETE_BATCH, &mut a) {
            Ok(()) => {
                deleted += a.count as usize;
                done += a.count as usize;
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                // `count` elements went before the missing one.
                deleted += a.count as usize;
                done += a.count as usize + 1;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(deleted)
}

/// Every element of a hash or array map, as raw key and value bytes, in batches.
pub fn dump(
    fd: BorrowedFd<'_>,
    key_size: usize,
    value_size: usize,
) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    const BATCH: usize = 4096;
    let mut out = Vec::new();
    // The resume token: a bucket index for hash maps, an index for arrays.
    let token_size = key_size.max(8);
    let mut in_token = vec![0u8; token_size];
    let mut out_token = vec![0u8; token_size];
    let mut keys = vec![0u8; BATCH * key_size];
    let mut values = vec![0u8; BATCH * value_size];
    let mut first = true;
    loop {
        let mut a = BatchAttr {
            in_batch: if first { 0 } else { in_token.as_ptr() as u64 },
            out_batch: out_token.as_mut_ptr() as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: BATCH as u32,
            map_fd: fd_u32(fd),
            ..Default::default()
        };
        let res = bpf(BPF_MAP_LOOKUP_BATCH, &mut a);
        let got = a.count as usize;
        for i in 0..got {
            out.push((
                keys[i * key_size..(i + 1) * key_size].to_vec(),
                values[i * value_size..(i + 1) * value_size].to_vec(),
            ));
        }
        match res {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(out),
            Err(e) => return Err(e),
        }
        std::mem::swap(&mut in_token, &mut out_token);
        first = false;
    }
}
