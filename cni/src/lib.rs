//! The sixlane CNI plugin library. The spec layer, IPAM and plumbing land with the CNI issue; the
//! binary currently answers VERSION and refuses every other verb with a spec error.

pub mod spec;
