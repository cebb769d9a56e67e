//! Builds the eBPF object (`sixlane-ebpf`, target bpfel-unknown-none, nightly + bpf-linker) into
//! OUT_DIR so the agent can embed it. Set AYA_BUILD_SKIP=1 to skip (the object is then missing
//! and loading fails loudly).
use anyhow::{Context as _, anyhow};

fn main() -> anyhow::Result<()> {
    let cargo_metadata::Metadata { packages, .. } = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = packages
        .into_iter()
        .find(|p| p.name.as_str() == "sixlane-ebpf")
        .ok_or_else(|| anyhow!("sixlane-ebpf package not found in the workspace"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", ebpf.manifest_path))?;
    let package = aya_build::Package {
        name: ebpf.name.as_str(),
        root_dir: root_dir.as_str(),
        ..Default::default()
    };
    aya_build::build_ebpf([package], aya_build::Toolchain::default())
        .context("building the eBPF object (run `cargo xtask setup` if the toolchain is missing)")
}
