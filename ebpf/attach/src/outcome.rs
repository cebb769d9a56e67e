//! What attaching did, in either mode.

/// What attaching one program to one interface did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attached {
    /// A new tc filter or TCX link was created (and the link pinned).
    Created,
    /// sixlane's filter on the hook, or the pinned link of this interface and program, existed:
    /// its program was swapped in place, atomically.
    Replaced,
}
