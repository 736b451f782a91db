//! spate-shuffle: where map outputs live between a map task and the reduce tasks.
//!
//! - [`memory`]: the local-mode store, keeping blocks as live objects (no serialization);
//!   map outputs stay until their shuffle is dropped, so later jobs reuse them.
//!
//! The distributed implementation (one data file + index per map task, served over HTTP)
//! implements the same [`spate_core::shuffle::ShuffleService`] trait.

pub mod memory;

pub use memory::MemoryShuffleStore;
