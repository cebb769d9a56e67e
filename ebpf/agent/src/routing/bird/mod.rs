//! BIRD 2, the BGP speaker: its configuration ([`render`]) and the peers' passwords it holds
//! ([`password`]), the files it shares with the agent ([`Paths`]), its control socket
//! ([`control`] speaking [`reply`]'s protocol, answers parsed by [`show`]) and, in static mode,
//! its process ([`supervise`]).

pub mod control;
pub mod install;
pub mod password;
pub mod paths;
pub mod render;
pub mod reply;
pub mod show;
pub mod supervise;

pub use paths::Paths;
