//! spate-shuffle: where map outputs live between a map task and the reduce tasks.
//!
//! - [`memory`]: the local-mode store, keeping blocks as live objects (no serialization);
//!   map outputs stay until their shuffle is dropped, so later jobs reuse them.
//! - [`disk`]: map outputs on disk: per map task one data file of compressed,
//!   checksummed blocks (grouped by reduce partition) and an index of their offsets,
//!   written under temp names and renamed.
//! - [`store`]: an executor's store: map outputs kept in memory as frames up to a
//!   budget (served and read without a copy), the rest in a [`DiskStore`].
//! - [`server`]: the block server (hyper): `GET /shuffle/S/M/R` and `GET /result/T`,
//!   served only from the executor's own directories; anything else is 404.
//! - [`client`]: fetching blocks and results over HTTP, with retries.
//! - [`remote`]: the executor-side [`spate_core::shuffle::ShuffleService`]: writes to the
//!   executor's store, reads local blocks directly and remote ones concurrently over HTTP,
//!   and turns a lost or corrupt block into a typed fetch failure naming shuffle, map and
//!   executor.

pub mod client;
pub mod disk;
pub mod memory;
pub mod remote;
pub mod server;
pub mod store;

pub use disk::DiskStore;
pub use memory::MemoryShuffleStore;
pub use remote::RemoteShuffle;
pub use store::BlockStore;
