//! BIRD 2, the BGP speaker: its configuration ([`render`]) and the peers' passwords it holds
//! ([`password`]), the files it shares with the agent ([`Paths`]), its control socket
//! ([`control`] speaking [`reply`]'s protocol, answers parsed by [`show`]), its process: in
//! static mode the agent's ([`supervise`]), in Kubernetes the pod's `bird` container
//! ([`container`]), and what is left of it when BGP is turned off ([`retire`]).

pub mod container;
pub mod control;
pub mod install;
pub mod password;
pub mod paths;
pub mod render;
pub mod reply;
pub mod retire;
pub mod show;
pub mod supervise;

pub use paths::Paths;
