//! What attaching and re-pointing did, in either mode.

/// What attaching one program to one interface did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attached {
    /// A new tc filter or TCX link was created (and the link pinned).
    Created,
    /// sixlane's filter on the hook, or the pinned link of this interface and program, existed:
    /// its program was swapped in place, atomically.
    Replaced,
}

/// What re-pointing one mode's attachments at a new load's programs did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Repointed {
    /// Switched to this load's program.
    pub replaced: usize,
    /// Already ran it.
    pub current: usize,
    /// Their interface is gone: link pins of deleted interfaces (unpinned), filters that went
    /// with their interface while we worked.
    pub gone: usize,
    /// For a program this build does not have; left alone.
    pub unknown: usize,
    /// Filters at sixlane's priority and handle whose program belongs to another datapath
    /// (another pin root); left alone. (Link pins belong to the pin root they are under.)
    pub foreign: usize,
}
