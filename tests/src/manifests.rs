//! The manifest directory a static-mode agent reads (`--manifests`).

use std::{fs, path::Path};

/// Writes manifest `name` in `dir` atomically (a temporary file renamed into place, as the docs
/// ask), so the agent never reads half a file.
pub fn put(dir: &Path, name: &str, body: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    fs::write(&tmp, body).unwrap();
    fs::rename(&tmp, dir.join(name)).unwrap();
}

/// A Node named `name` with `pod_cidr` and InternalIP `internal_ip`.
pub fn node(name: &str, internal_ip: impl std::fmt::Display, pod_cidr: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Node\nmetadata: {{name: {name}}}\nspec: {{podCIDRs: [\"{pod_cidr}\"]}}\n\
         status: {{addresses: [{{type: InternalIP, address: \"{internal_ip}\"}}]}}\n"
    )
}
