//! LoadBalancer IP assignment (LB-IPAM): Services of `type: LoadBalancer` whose class is unset
//! or sixlane's get an address from the configured pools (`docs/lb.md`).
//!
//! Layout: [`config`] (the `loadBalancer:` section), [`input`] (Service objects to the
//! assignment's input), [`assign`] (the rules, pure).

pub mod assign;
pub mod config;
pub mod input;

pub use config::LbConfig;
