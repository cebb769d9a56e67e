//! Sources of desired state. Both produce [`store::Change`]s for the same [`store::Store`]:
//! - [`kube`]: watchers on the API server;
//! - [`manifests`]: a directory of Kubernetes YAML, re-read on change.

pub mod kube;
pub mod manifests;
pub mod store;
