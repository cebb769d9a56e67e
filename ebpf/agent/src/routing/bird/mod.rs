//! BIRD 2, the BGP speaker: its configuration ([`render`]) and the peers' passwords it holds
//! ([`password`]).

pub mod password;
pub mod render;
