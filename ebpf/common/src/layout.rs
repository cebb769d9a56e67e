//! Names shared by the loader, the CLI and the CNI plugin: program and map names in the eBPF
//! object and the layout of the bpffs pin directory.
//!
//! ```text
//! <pin root>/                 default /sys/fs/bpf/sixlane
//!   maps/<MAP NAME>           every map of the object, pinned by name (survives restarts)
//!   progs/<program name>      the loaded programs, for the CNI plugin to attach
//!   links/<prog>@<ifname>     TCX links, pinned so they outlive the process that made them
//! ```

/// Default bpffs directory for sixlane's pins.
pub const DEFAULT_PIN_ROOT: &str = "/sys/fs/bpf/sixlane";
/// Sub-directory of the pin root holding maps.
pub const MAPS_DIR: &str = "maps";
/// Sub-directory of the pin root holding programs.
pub const PROGS_DIR: &str = "progs";
/// Sub-directory of the pin root holding TCX links.
pub const LINKS_DIR: &str = "links";

/// Per-CPU datapath counters (see [`crate::metrics`]).
pub const MAP_METRICS: &str = "SL_METRICS";

/// tc program counting every packet by direction (the harness's first program).
pub const PROG_COUNT_INGRESS: &str = "sl_count_ingress";
/// tc program counting every packet by direction, egress side.
pub const PROG_COUNT_EGRESS: &str = "sl_count_egress";
