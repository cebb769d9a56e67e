//! CNI spec error reporting: exactly one JSON document on stdout.

use serde::Serialize;

/// Spec versions this plugin understands.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.4.0", "1.0.0", "1.1.0"];

/// A CNI error as the spec defines it (`code`, `msg`, `details`).
#[derive(Debug, Serialize, thiserror::Error)]
#[error("{msg}")]
pub struct CniError {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    pub code: u32,
    pub msg: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub details: String,
}
