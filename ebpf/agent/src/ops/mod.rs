//! Operability: metrics, status and the HTTP endpoints.

pub mod http;
pub mod metrics;
pub mod status;
