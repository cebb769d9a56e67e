//! sixlane's [`Hook`] in aya's and iproute2's terms, written once for every user.

use aya::programs::TcAttachType;
use sixlane_common::layout::Hook;

/// What a [`Hook`] is called outside sixlane (a trait: both types are foreign to this crate).
pub trait HookExt {
    /// The tc/TCX attach point.
    fn attach_type(self) -> TcAttachType;
    /// `ingress` or `egress`, as tc spells it (`tc filter show dev <if> ingress`).
    fn name(self) -> &'static str;
}

impl HookExt for Hook {
    fn attach_type(self) -> TcAttachType {
        match self {
            Hook::Ingress => TcAttachType::Ingress,
            Hook::Egress => TcAttachType::Egress,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Hook::Ingress => "ingress",
            Hook::Egress => "egress",
        }
    }
}
