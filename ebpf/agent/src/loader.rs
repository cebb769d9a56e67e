//! Loading the eBPF object with its maps pinned by name, so a restarted or upgraded loader keeps
//! the state (conntrack, NAT bindings, counters) of the previous one.

use std::{collections::BTreeMap, fs, path::Path};

use aya::{
    Ebpf, EbpfLoader, PinningType,
    maps::MapInfo,
    programs::{Program, SchedClassifier},
};
use sixlane_attach::{Attached, RepointReport, pins::remove_pin, tcx};
use sixlane_common::layout::{self, Hook};
use tracing::{debug, info, warn};

use crate::{
    Error, PinLayout, Result,
    error::{MapDiff, MapDiffs},
};

/// Knobs for [`Datapath::load`].
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Map sizes overriding the object's defaults (map name → max entries).
    pub max_entries: BTreeMap<String, u32>,
    /// Replace a pinned map whose layout differs from this build instead of refusing to load.
    /// The old map's state is lost, so this is an explicit operator decision.
    pub replace_incompatible_maps: bool,
}

/// The loaded object: maps reused from (or newly pinned under) the pin root, programs loaded and
/// pinned so the CNI plugin can attach them.
pub struct Datapath {
    ebpf: Ebpf,
    layout: PinLayout,
}

impl std::fmt::Debug for Datapath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Datapath")
            .field("layout", &self.layout)
            .finish_non_exhaustive()
    }
}

/// Blocks every blockable signal in the calling thread until dropped. The verifier abandons a
/// load with `EAGAIN` whenever a signal is pending for the loading thread (a child process
/// exiting, a timer), and verifying the large programs takes long enough for a busy process to
/// be hit again on every retry. Meanwhile a signal for the process goes to another thread, or
/// waits until the mask is restored.
struct SignalsBlocked(libc::sigset_t);

impl SignalsBlocked {
    fn new() -> Self {
        // SAFETY: plain libc calls on sets owned here; sigset_t is plain data (zeroed, then
        // filled/written by libc).
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old);
            Self(old)
        }
    }
}

impl Drop for SignalsBlocked {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved by `new` on this same thread.
        unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut());
        }
    }
}

impl Datapath {
    /// Loads the embedded object (see [`crate::object`]).
    pub fn load(layout: &PinLayout, opts: &LoadOptions) -> Result<Self> {
        Self::load_bytes(crate::object(), layout, opts)
    }

    /// Loads `object`, reusing compatible maps already pinned under `layout`, and pins every
    /// program under `layout.progs_dir()` (replacing older pins atomically by rename).
    pub fn load_bytes(object: &[u8], layout: &PinLayout, opts: &LoadOptions) -> Result<Self> {
        if object.is_empty() {
            return Err(Error::EmptyObject);
        }
        layout.create()?;
        check_pinned_maps(object, layout, opts)?;

        let mut loader = EbpfLoader::new();
        let maps_dir = layout.maps_dir();
        loader.default_map_pin_directory(&maps_dir);
        for (name, size) in &opts.max_entries {
            loader.map_max_entries(name, *size);
        }
        let mut ebpf = loader.load(object)?;

        let quiet = SignalsBlocked::new();
        for (name, program) in ebpf.programs_mut() {
            let res = match program {
                Program::SchedClassifier(p) => p.load(),
                Program::Xdp(p) => p.load(),
                other => {
                    warn!(program = name, kind = ?other.prog_type(), "skipping program of unexpected type");
                    continue;
                }
            };
            res.map_err(|source| Error::Program {
                name: name.to_owned(),
                source,
            })?;
            pin_program(program, name, &layout.prog(name))?;
            debug!(program = name, "loaded and pinned");
        }
        drop(quiet);
        let mut dp = Self {
            ebpf,
            layout: layout.clone(),
        };
        dp.install_stages()?;
        info!(pin_root = %layout.root().display(), "datapath loaded");
        Ok(dp)
    }

    /// Points every slot of the pinned stage array (`layout::STAGES`) at this load's program.
    /// Each update is atomic; until it runs, packets use the previous load's stage programs.
    fn install_stages(&mut self) -> Result<()> {
        let mut fds = Vec::new();
        for (slot, name) in layout::STAGES {
            let fd = self
                .classifier(name)?
                .fd()
                .and_then(|fd| fd.try_clone().map_err(Into::into))
                .map_err(|source| Error::Program {
                    name: name.to_owned(),
                    source,
                })?;
            fds.push((slot, fd));
        }
        let map_err = |source| Error::Map {
            name: layout::MAP_STAGES.to_owned(),
            source,
        };
        let map = self
            .ebpf
            .map_mut(layout::MAP_STAGES)
            .ok_or_else(|| Error::NoSuchProgram(layout::MAP_STAGES.to_owned()))?;
        let mut stages = aya::maps::ProgramArray::try_from(map).map_err(map_err)?;
        for (slot, fd) in &fds {
            stages.set(*slot, fd, 0).map_err(map_err)?;
        }
        Ok(())
    }

    pub fn layout(&self) -> &PinLayout {
        &self.layout
    }

    /// The underlying object, for map access and `test_run`.
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    pub fn ebpf(&self) -> &Ebpf {
        &self.ebpf
    }

    /// A tc program of the object by name.
    pub fn classifier(&mut self, name: &str) -> Result<&mut SchedClassifier> {
        let prog = self
            .ebpf
            .program_mut(name)
            .ok_or_else(|| Error::NoSuchProgram(name.to_owned()))?;
        prog.try_into()
            .map_err(|_| Error::NotClassifier(name.to_owned()))
    }

    /// Attaches program `prog` to `iface` through a pinned TCX link (atomically replacing the
    /// program of an existing pin for the same interface and program).
    pub fn attach(&mut self, prog: &str, iface: &str, hook: Hook) -> Result<Attached> {
        let layout = self.layout.clone();
        let p = self.classifier(prog)?;
        Ok(tcx::attach(p, prog, iface, hook, &layout)?)
    }

    /// Points everything attached at this load's programs: every pinned link (the uplink, pods
    /// attached in TCX mode), then sixlane's tc filters on the interfaces of the calling thread's
    /// network namespace (pods attached in tc mode). Run after loading a new build, in the
    /// namespace holding the pod veths (the node's); see [`sixlane_attach::repoint_all`]. Links
    /// of defunct interfaces are unpinned.
    pub fn repoint_attachments(&mut self) -> Result<RepointReport> {
        Ok(sixlane_attach::repoint_all(&self.layout, &mut self.ebpf)?)
    }
}

/// Pins a program under `path` via a temporary name and a rename, so a concurrent reader of the
/// pin (the CNI plugin) sees the old or the new program, never no program.
fn pin_program(program: &mut Program, name: &str, path: &Path) -> Result<()> {
    // bpffs rejects '.' in names; '@' cannot occur in program names.
    let tmp = path.with_file_name(format!("{name}@new"));
    remove_pin(&tmp)?;
    program.pin(&tmp).map_err(|source| Error::Pin {
        path: tmp.clone(),
        source,
    })?;
    fs::rename(&tmp, path).map_err(|e| Error::io("renaming pin to", path, e))
}

/// aya reuses a map pinned by name without comparing it to the object's definition; a mismatch
/// would make the new programs read garbage. Compare first.
fn check_pinned_maps(object: &[u8], layout: &PinLayout, opts: &LoadOptions) -> Result<()> {
    let obj = aya_obj::Object::parse(object)?;
    for (name, def) in &obj.maps {
        if def.pinning() != PinningType::ByName {
            continue;
        }
        let path = layout.map(name);
        if !path.exists() {
            continue;
        }
        let info = MapInfo::from_pin(&path).map_err(|source| Error::Map {
            name: name.clone(),
            source,
        })?;
        let want_entries = opts
            .max_entries
            .get(name)
            .copied()
            .unwrap_or(def.max_entries());
        let pinned_type = info.map_type().map(|t| t as u32).unwrap_or(u32::MAX);
        let diffs = MapDiffs(
            [
                MapDiff::Type {
                    pinned: pinned_type,
                    built: def.map_type(),
                },
                MapDiff::KeySize {
                    pinned: info.key_size(),
                    built: def.key_size(),
                },
                MapDiff::ValueSize {
                    pinned: info.value_size(),
                    built: def.value_size(),
                },
                MapDiff::MaxEntries {
                    pinned: info.max_entries(),
                    built: want_entries,
                },
            ]
            .into_iter()
            .filter(MapDiff::differs)
            .collect(),
        );
        if diffs.is_empty() {
            continue;
        }
        if sixlane_common::layout::CONFIG_MAPS.contains(&name.as_str()) {
            info!(map = %name, %diffs, "replacing the pinned configuration map of an older datapath; the agent writes it again");
            remove_pin(&path)?;
        } else if opts.replace_incompatible_maps {
            warn!(map = %name, %diffs, "replacing incompatible pinned map; its state is lost");
            remove_pin(&path)?;
        } else {
            return Err(Error::IncompatibleMap {
                name: name.clone(),
                path,
                diffs,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    fn blocked(sig: i32) -> bool {
        // SAFETY: queries this thread's mask into a set owned here.
        unsafe {
            let mut cur: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut cur);
            libc::sigismember(&cur, sig) == 1
        }
    }

    #[test]
    fn signals_are_blocked_while_loading_and_restored_after() {
        assert!(!blocked(libc::SIGTERM));
        {
            let _quiet = super::SignalsBlocked::new();
            assert!(blocked(libc::SIGTERM) && blocked(libc::SIGCHLD));
        }
        assert!(!blocked(libc::SIGTERM) && !blocked(libc::SIGCHLD));
    }
}
