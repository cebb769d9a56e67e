//! Library target so `sixlane-agent` can build-depend on this crate; the programs live in the
//! `sixlane` binary target (`main.rs`).
#![no_std]
