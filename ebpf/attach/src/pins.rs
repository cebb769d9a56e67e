//! The bpffs pin directory layout (see `sixlane_common::layout`), and the programs and maps
//! pinned there.

use std::{
    collections::HashSet,
    ffi::CString,
    fs,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
};

use aya::{
    maps::MapInfo,
    programs::{ProgramInfo, SchedClassifier},
};
use sixlane_common::layout;

use crate::{Error, Result};

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Where sixlane's maps, programs and links are pinned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinLayout {
    root: PathBuf,
}

impl Default for PinLayout {
    fn default() -> Self {
        Self::new(layout::DEFAULT_PIN_ROOT)
    }
}

impl PinLayout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn maps_dir(&self) -> PathBuf {
        self.root.join(layout::MAPS_DIR)
    }

    pub fn progs_dir(&self) -> PathBuf {
        self.root.join(layout::PROGS_DIR)
    }

    pub fn links_dir(&self) -> PathBuf {
        self.root.join(layout::LINKS_DIR)
    }

    pub fn map(&self, name: &str) -> PathBuf {
        self.maps_dir().join(name)
    }

    pub fn prog(&self, name: &str) -> PathBuf {
        self.progs_dir().join(name)
    }

    /// Pin of the TCX link running `prog` on `ifname`: `<prog>@<ifname>`. One program per
    /// (interface, program), so re-attaching the same program is an atomic replacement, never a
    /// second copy.
    pub fn link(&self, ifname: &str, prog: &str) -> PathBuf {
        self.links_dir()
            .join(format!("{prog}@{}", escape_ifname(ifname)))
    }

    /// Creates the directories, checking that the root is on bpffs (pins elsewhere fail with an
    /// obscure EPERM otherwise).
    pub fn create(&self) -> Result<()> {
        for dir in [self.maps_dir(), self.progs_dir(), self.links_dir()] {
            fs::create_dir_all(&dir).map_err(|e| Error::io("creating", &dir, e))?;
        }
        if !is_bpffs(&self.root)? {
            return Err(Error::NotBpffs {
                path: self.root.clone(),
            });
        }
        Ok(())
    }

    /// Removes every pin (maps, programs, links) and the directories. Links whose pin goes away
    /// are detached by the kernel once no process holds them.
    pub fn remove_all(&self) -> Result<()> {
        match fs::remove_dir_all(&self.root) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("removing", &self.root, e)),
        }
    }

    /// Link pins as (interface, program, path), parsed from their file names.
    pub fn links(&self) -> Result<Vec<(String, String, PathBuf)>> {
        let dir = self.links_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("listing", &dir, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("listing", &dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            // Program names cannot contain '@'; interface names come escaped.
            if let Some((prog, ifname)) = name.split_once('@')
                && let Some(ifname) = unescape_ifname(ifname)
            {
                out.push((ifname, prog.to_owned(), entry.path()));
            }
        }
        out.sort();
        Ok(out)
    }

    /// The classifier pinned at `progs/<name>` (by a running agent); [`Error::NotPinned`] when
    /// the datapath is not loaded.
    pub fn open_classifier(&self, name: &str) -> Result<SchedClassifier> {
        let path = self.pinned_prog(name)?;
        SchedClassifier::from_pin(&path).map_err(|source| Error::program(name, source))
    }

    /// The id of the program pinned at `progs/<name>`.
    pub fn program_id(&self, name: &str) -> Result<u32> {
        let path = self.pinned_prog(name)?;
        let info = ProgramInfo::from_pin(&path).map_err(|source| Error::program(name, source))?;
        Ok(info.id())
    }

    /// The path of the pinned program `name`; [`Error::NotPinned`] when there is none.
    fn pinned_prog(&self, name: &str) -> Result<PathBuf> {
        let path = self.prog(name);
        if !path.exists() {
            return Err(Error::NotPinned {
                name: name.to_owned(),
                path,
            });
        }
        Ok(path)
    }

    /// Ids of the maps pinned here. A program that uses one of them belongs to this datapath:
    /// maps are reused across loads, so this holds for programs of earlier loads too.
    pub fn map_ids(&self) -> Result<HashSet<u32>> {
        let dir = self.maps_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashSet::new()),
            Err(e) => return Err(Error::io("listing", &dir, e)),
        };
        let mut ids = HashSet::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("listing", &dir, e))?;
            let path = entry.path();
            let info = MapInfo::from_pin(&path).map_err(|source| Error::Map {
                name: path.display().to_string(),
                source,
            })?;
            ids.insert(info.id());
        }
        Ok(ids)
    }
}

/// Removes the pin at `path`; a missing pin is fine.
pub fn remove_pin(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("removing pin", path, e)),
    }
}

/// bpffs refuses names containing '.', which interface names may have (`eth0.100`): escape '.'
/// and the escape character itself.
fn escape_ifname(ifname: &str) -> String {
    let mut out = String::with_capacity(ifname.len());
    for c in ifname.chars() {
        match c {
            '%' => out.push_str("%25"),
            '.' => out.push_str("%2e"),
            c => out.push(c),
        }
    }
    out
}

fn unescape_ifname(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3)? {
            "%25" => out.push('%'),
            "%2e" => out.push('.'),
            _ => return None,
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// Whether `path` is on a bpffs mount.
fn is_bpffs(path: &Path) -> Result<bool> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| Error::io("checking", path, std::io::Error::other(e)))?;
    let mut st = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: `c` is a valid NUL-terminated path and `st` is a properly sized out-buffer.
    let rc = unsafe { libc::statfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(Error::io("statfs", path, std::io::Error::last_os_error()));
    }
    // SAFETY: statfs returned 0, so it filled the struct.
    let st = unsafe { st.assume_init() };
    Ok(st.f_type == BPF_FS_MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_paths() {
        let l = PinLayout::new("/sys/fs/bpf/x");
        assert_eq!(l.map("M"), Path::new("/sys/fs/bpf/x/maps/M"));
        assert_eq!(l.prog("p"), Path::new("/sys/fs/bpf/x/progs/p"));
        assert_eq!(
            l.link("veth0", "sl_count_ingress"),
            Path::new("/sys/fs/bpf/x/links/sl_count_ingress@veth0")
        );
    }

    #[test]
    fn ifname_escaping_round_trips_and_avoids_dots() {
        for name in ["eth0", "eth0.100", "a%b", "%2e", "x.y.z%"] {
            let e = escape_ifname(name);
            assert!(!e.contains('.'), "{e}");
            assert_eq!(unescape_ifname(&e).as_deref(), Some(name));
        }
        assert_eq!(unescape_ifname("bad%zz"), None);
    }

    #[test]
    fn tmp_is_not_bpffs() {
        assert!(!is_bpffs(Path::new("/tmp")).unwrap());
    }
}
