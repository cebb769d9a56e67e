//! Types shared between sixlane's eBPF programs (`no_std`, BPF target) and userspace.
//!
//! Every type that crosses the kernel boundary is `#[repr(C)]`, explicitly padded (no implicit
//! holes, so map keys hash identically whatever the compiler leaves in padding) and size-asserted
//! at compile time. The `user` feature adds `aya::Pod` so userspace can use them in maps.
#![no_std]

#[cfg(test)]
extern crate std;

pub mod layout;
pub mod metrics;
pub mod nat64;
pub mod ndp;
pub mod net;
pub mod services;
pub mod source;

/// Implements `aya::Pod` (with the `user` feature) and asserts the size of a map type at compile
/// time, so a change of layout breaks the build instead of the datapath.
#[macro_export]
macro_rules! map_type {
    ($ty:ty, $size:expr) => {
        const _: () = assert!(core::mem::size_of::<$ty>() == $size);
        #[cfg(feature = "user")]
        // SAFETY: the type is `#[repr(C)]`, `Copy`, has no padding (asserted by its size) and
        // every bit pattern is a valid value.
        unsafe impl aya::Pod for $ty {}
    };
}
