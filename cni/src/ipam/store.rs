//! The on-disk reservation store, byte-compatible with host-local (`backend/disk`):
//!
//! ```text
//! <dataDir>/<network>/
//!   <ip>                    one file per reserved address, mode 0600: "<containerID>\r\n<ifname>"
//!                           (legacy files hold only "<containerID>"; both are matched)
//!   last_reserved_ip.<i>    the last address handed out from range set i (round robin)
//!   lock                    flock(2)ed around every read-modify-write, as go-filemutex does
//! ```
//!
//! sixlane adds reboot awareness without touching that directory (host-local walks it and would
//! read anything we put there): a side directory `<dataDir>/.sixlane/<network>/` holds, per address
//! we reserved, a stamp `<ip>` = "boot <boot_id>\n<reservation content>", and `boot` = the boot id
//! of the last sweep. The first locked operation after a reboot releases every reservation whose
//! stamp names an older boot (and whose content still matches the stamp, so an address that
//! host-local re-reserved since is left alone). `.sixlane` can never be a network name (names
//! start with an alphanumeric character).

use std::{
    collections::HashSet,
    ffi::CString,
    fs::{self, File, OpenOptions},
    io::{self, Write as _},
    net::{IpAddr, Ipv6Addr},
    os::{
        fd::AsRawFd as _,
        unix::{ffi::OsStrExt as _, fs::OpenOptionsExt as _},
    },
    path::{Path, PathBuf},
};

use crate::error::{Error, Result};

pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";
const LAST_IP_PREFIX: &str = "last_reserved_ip.";
const LINE_BREAK: &str = "\r\n";
const SIDE_DIR: &str = ".sixlane";
const BOOT_MARKER: &str = "boot";
/// Temporary files are `.<name>.tmp<pid>`; a killed writer's leftovers are removed by DEL and GC.
const TMP_MARK: &str = ".tmp";

/// The current boot's id (`/proc/sys/kernel/random/boot_id`).
pub fn current_boot_id() -> Result<String> {
    let p = "/proc/sys/kernel/random/boot_id";
    fs::read_to_string(p)
        .map(|s| s.trim().to_owned())
        .map_err(|e| Error::io("reading", p, e))
}

/// The content host-local writes for an attachment.
pub fn owner_key(id: &str, ifname: &str) -> String {
    format!("{}{LINE_BREAK}{ifname}", id.trim())
}

/// A network's reservation directory, opened (and created, 0755) with its lock file.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    side: PathBuf,
    lock: File,
    boot_id: String,
}

/// Held while the store is locked.
#[derive(Debug)]
pub struct Locked<'a> {
    store: &'a Store,
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        // SAFETY: flock on a valid fd owned by the store.
        unsafe { libc::flock(self.store.lock.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// One reservation file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub ip: IpAddr,
    /// Trimmed file content: `id\r\nifname` or a legacy bare `id`.
    pub owner: String,
}

impl Entry {
    /// Whether this reservation belongs to `(id, ifname)` (or a legacy file of `id`).
    pub fn owned_by(&self, id: &str, ifname: &str) -> bool {
        self.owner == owner_key(id, ifname) || self.owner == id.trim()
    }

    /// `(containerID, ifname)` of the owner; `ifname` is `None` for legacy files.
    pub fn attachment(&self) -> (&str, Option<&str>) {
        match self.owner.split_once(LINE_BREAK) {
            Some((id, ifname)) => (id, Some(ifname)),
            None => (self.owner.as_str(), None),
        }
    }
}

impl Store {
    /// Opens `<data_dir>/<network>`. `network` must already be validated (no `/`, no leading dot).
    pub fn open(data_dir: &Path, network: &str, boot_id: String) -> Result<Self> {
        let dir = data_dir.join(network);
        create_dir_0755(&dir)?;
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .read(true)
            .create(true)
            .append(true)
            .mode(0o750)
            .open(&lock_path)
            .or_else(|_| File::open(&lock_path))
            .map_err(|e| Error::io("opening lock", &lock_path, e))?;
        Ok(Self {
            side: data_dir.join(SIDE_DIR).join(network),
            dir,
            lock,
            boot_id,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Takes the exclusive flock (blocking), as host-local does around every operation.
    pub fn lock(&self) -> Result<Locked<'_>> {
        loop {
            // SAFETY: flock on a valid fd we own.
            let rc = unsafe { libc::flock(self.lock.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                return Ok(Locked { store: self });
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(Error::io("locking", self.dir.join("lock"), e));
            }
        }
    }
}

impl Locked<'_> {
    fn path(&self, ip: IpAddr) -> PathBuf {
        self.store.dir.join(ip.to_string())
    }

    /// Reserves `ip` for `(id, ifname)`. `Ok(false)` when it is taken. The file appears with its
    /// content in one step (O_TMPFILE + linkat), so a crash never leaves an empty reservation;
    /// filesystems without O_TMPFILE fall back to host-local's O_EXCL create.
    pub fn reserve(&self, id: &str, ifname: &str, ip: Ipv6Addr, range_set: usize) -> Result<bool> {
        let path = self.path(IpAddr::V6(ip));
        let content = owner_key(id, ifname);
        if !create_with_content(&self.store.dir, &path, content.as_bytes())? {
            return Ok(false);
        }
        let last = self.store.dir.join(format!("{LAST_IP_PREFIX}{range_set}"));
        let booked =
            write_replace(&last, ip.to_string().as_bytes()).and_then(|()| self.stamp(ip, &content));
        if let Err(e) = booked {
            // A failed ADD releases exactly what it reserved, this address included.
            let _ = fs::remove_file(&path);
            let _ = fs::remove_file(self.store.side.join(ip.to_string()));
            return Err(e);
        }
        Ok(true)
    }

    fn stamp(&self, ip: Ipv6Addr, content: &str) -> Result<()> {
        let path = self.store.side.join(ip.to_string());
        let body = format!("boot {}\n{content}", self.store.boot_id);
        match write_replace(&path, body.as_bytes()) {
            Err(e) if e.is_not_found() => {
                fs::create_dir_all(&self.store.side)
                    .map_err(|e| Error::io("creating", &self.store.side, e))?;
                write_replace(&path, body.as_bytes())
            }
            r => r,
        }
    }

    /// `last_reserved_ip.<i>`, if present and an IPv6 address.
    pub fn last_reserved(&self, range_set: usize) -> Option<Ipv6Addr> {
        let p = self.store.dir.join(format!("{LAST_IP_PREFIX}{range_set}"));
        fs::read_to_string(p).ok()?.trim().parse().ok()
    }

    /// Every reservation file (names that parse as an address; content trimmed as Go does).
    pub fn entries(&self) -> Result<Vec<Entry>> {
        let rd =
            fs::read_dir(&self.store.dir).map_err(|e| Error::io("listing", &self.store.dir, e))?;
        let mut out = Vec::new();
        for e in rd {
            let e = e.map_err(|e| Error::io("listing", &self.store.dir, e))?;
            let Some(ip) = e
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<IpAddr>().ok())
            else {
                continue;
            };
            match fs::read(e.path()) {
                Ok(bytes) => out.push(Entry {
                    ip,
                    owner: String::from_utf8_lossy(&bytes).trim().to_owned(),
                }),
                // Released concurrently by a process that does not lock (nothing does, but be
                // tolerant like host-local).
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(Error::io("reading", e.path(), err)),
            }
        }
        Ok(out)
    }

    /// Addresses held by `(id, ifname)`.
    pub fn get_by_id(&self, id: &str, ifname: &str) -> Result<Vec<IpAddr>> {
        Ok(self
            .entries()?
            .into_iter()
            .filter(|e| e.owned_by(id, ifname))
            .map(|e| e.ip)
            .collect())
    }

    /// Removes one reservation (and its stamp). Missing is fine.
    pub fn remove(&self, ip: IpAddr) -> Result<()> {
        remove_if_exists(&self.path(ip))?;
        remove_if_exists(&self.store.side.join(ip.to_string()))
    }

    /// Removes temporary files of writers that died (kill -9 between write and rename).
    pub fn remove_stale_temp_files(&self) -> Result<()> {
        for dir in [&self.store.dir, &self.store.side] {
            let Ok(rd) = fs::read_dir(dir) else { continue };
            for e in rd.flatten() {
                let name = e.file_name();
                let Some(name) = name.to_str() else { continue };
                let Some(pid) = name
                    .strip_prefix('.')
                    .and_then(|n| n.rsplit_once(TMP_MARK))
                    .and_then(|(_, pid)| pid.parse::<u32>().ok())
                else {
                    continue;
                };
                if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                    remove_if_exists(&e.path())?;
                }
            }
        }
        Ok(())
    }

    /// host-local's ReleaseByID: every file of `id\r\nifname`, or legacy `id` files when there was
    /// none. Returns what was released.
    pub fn release_by_id(&self, id: &str, ifname: &str) -> Result<Vec<IpAddr>> {
        let entries = self.entries()?;
        let key = owner_key(id, ifname);
        let mut hits: Vec<IpAddr> = entries
            .iter()
            .filter(|e| e.owner == key)
            .map(|e| e.ip)
            .collect();
        if hits.is_empty() {
            hits = entries
                .iter()
                .filter(|e| e.owner == id.trim())
                .map(|e| e.ip)
                .collect();
        }
        for ip in &hits {
            self.remove(*ip)?;
        }
        Ok(hits)
    }

    /// GC: releases every reservation whose attachment is not in `valid` (legacy id-only files
    /// survive when any valid attachment has that container ID). Returns what was released.
    pub fn retain_valid(&self, valid: &[(String, String)]) -> Result<Vec<IpAddr>> {
        let keep: HashSet<String> = valid.iter().map(|(id, ifn)| owner_key(id, ifn)).collect();
        let ids: HashSet<&str> = valid.iter().map(|(id, _)| id.trim()).collect();
        let mut released = Vec::new();
        let mut errors = Vec::new();
        for e in self.entries()? {
            let ok = match e.attachment() {
                (_, Some(_)) => keep.contains(&e.owner),
                (id, None) => !id.is_empty() && ids.contains(id),
            };
            if !ok {
                match self.remove(e.ip) {
                    Ok(()) => released.push(e.ip),
                    Err(err) => errors.push(err),
                }
            }
        }
        self.prune_stamps()?;
        if errors.is_empty() {
            Ok(released)
        } else {
            Err(Error::Many(errors))
        }
    }

    /// Drops stamps whose reservation is gone or now belongs to someone else.
    fn prune_stamps(&self) -> Result<()> {
        for (ip, _, owner) in self.stamps()? {
            let current = fs::read(self.path(ip)).ok();
            let matches = current
                .as_deref()
                .is_some_and(|c| String::from_utf8_lossy(c).trim() == owner);
            if !matches {
                remove_if_exists(&self.store.side.join(ip.to_string()))?;
            }
        }
        Ok(())
    }

    /// Stamps as (ip, boot id, owner).
    fn stamps(&self) -> Result<Vec<(IpAddr, String, String)>> {
        let rd = match fs::read_dir(&self.store.side) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("listing", &self.store.side, e)),
        };
        let mut out = Vec::new();
        for e in rd.flatten() {
            let Some(ip) = e
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<IpAddr>().ok())
            else {
                continue;
            };
            let Ok(body) = fs::read_to_string(e.path()) else {
                continue;
            };
            let (first, owner) = body.split_once('\n').unwrap_or((body.as_str(), ""));
            let boot = first.strip_prefix("boot ").unwrap_or("").to_owned();
            out.push((ip, boot, owner.trim().to_owned()));
        }
        Ok(out)
    }

    /// Once per boot (tracked by the `boot` marker): releases reservations stamped with an
    /// earlier boot id. Returns what was released.
    pub fn release_previous_boots(&self) -> Result<Vec<IpAddr>> {
        let marker = self.store.side.join(BOOT_MARKER);
        let seen = fs::read_to_string(&marker).unwrap_or_default();
        if seen.trim() == self.store.boot_id {
            return Ok(Vec::new());
        }
        let mut released = Vec::new();
        for (ip, boot, owner) in self.stamps()? {
            if boot == self.store.boot_id {
                continue;
            }
            let current = fs::read(self.path(ip)).ok();
            if current
                .as_deref()
                .is_some_and(|c| String::from_utf8_lossy(c).trim() == owner)
            {
                remove_if_exists(&self.path(ip))?;
                released.push(ip);
            }
            remove_if_exists(&self.store.side.join(ip.to_string()))?;
        }
        fs::create_dir_all(&self.store.side)
            .map_err(|e| Error::io("creating", &self.store.side, e))?;
        write_replace(&marker, self.store.boot_id.as_bytes())?;
        Ok(released)
    }
}

fn create_dir_0755(dir: &Path) -> Result<()> {
    match fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            use std::os::unix::fs::DirBuilderExt as _;
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
                .map_err(|e| Error::io("creating", dir, e))
        }
        Err(e) => Err(Error::io("creating", dir, e)),
    }
}

fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("removing", path, e)),
    }
}

/// Replaces `path` atomically (temp file + rename), mode 0600.
fn write_replace(path: &Path, content: &[u8]) -> Result<()> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}{TMP_MARK}{}", std::process::id()));
    let res = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(content)?;
        fs::rename(&tmp, path)
    })();
    res.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io("writing", path, e)
    })
}

/// Creates `path` with `content` unless it exists (`Ok(false)`). Atomic where O_TMPFILE works.
fn create_with_content(dir: &Path, path: &Path, content: &[u8]) -> Result<bool> {
    match OpenOptions::new()
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE)
        .open(dir)
    {
        Ok(mut f) => {
            f.write_all(content)
                .map_err(|e| Error::io("writing", path, e))?;
            let src = CString::new(format!("/proc/self/fd/{}", f.as_raw_fd())).unwrap_or_default();
            let dst = CString::new(path.as_os_str().as_bytes())
                .map_err(|e| Error::io("reserving", path, io::Error::other(e)))?;
            // SAFETY: both are valid NUL-terminated paths; AT_SYMLINK_FOLLOW resolves the magic
            // /proc link to the unnamed file (no CAP_DAC_READ_SEARCH needed, unlike AT_EMPTY_PATH).
            let rc = unsafe {
                libc::linkat(
                    libc::AT_FDCWD,
                    src.as_ptr(),
                    libc::AT_FDCWD,
                    dst.as_ptr(),
                    libc::AT_SYMLINK_FOLLOW,
                )
            };
            if rc == 0 {
                return Ok(true);
            }
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::AlreadyExists {
                Ok(false)
            } else {
                Err(Error::io("reserving", path, e))
            }
        }
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EOPNOTSUPP) | Some(libc::EISDIR) | Some(libc::EINVAL)
            ) =>
        {
            create_excl(path, content)
        }
        Err(e) => Err(Error::io("reserving", path, e)),
    }
}

/// host-local's reservation primitive: O_EXCL create, then write.
fn create_excl(path: &Path, content: &[u8]) -> Result<bool> {
    let mut f = match OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(Error::io("reserving", path, e)),
    };
    if let Err(e) = f.write_all(content) {
        let _ = fs::remove_file(path);
        return Err(Error::io("writing", path, e));
    }
    Ok(true)
}
