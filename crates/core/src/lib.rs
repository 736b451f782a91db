//! spate-core: the model of spate. No sockets, no threads of its own.
//!
//! - [`rdd`]: the typed [`Rdd`] API (transformations, pair operations, actions), the
//!   type-erased [`RddBase`] view for the scheduler, and the lineage nodes, one per file.
//! - [`func`]: user closures as shippable values ([`func::Fun`], [`func::With`]).
//! - [`data`]: the bounds on element and key types.
//! - [`partitioner`], [`aggregator`]: where keys go and how values combine.
//! - [`shuffle`]: the [`shuffle::ShuffleService`] seam between map and reduce tasks.
//! - [`accumulator`]: values tasks add to, applied once per successful partition.
//! - [`broadcast`]: read-only values shipped to each executor at most once.
//! - [`cache`]: this process's persisted RDD partitions (memory, disk).
//! - [`metrics`]: per-task counters (records and bytes read and written, run time).
//! - [`objfile`]: files of typed elements with checksums (checkpoints, object files).
//! - [`task`]: tasks, [`task::TaskContext`] and the task boundary that classifies failures.
//! - [`plan`]: lineage → stages, a pure function.
//! - [`protocol`]: driver ↔ executor messages and their framing.
//! - [`ship`]: encoding tasks for executors (code offsets, binary identity, HMAC).
//! - [`config`]: master URLs and settings.
//! - [`text`]: word splitting without an allocation per word.
//! - [`error`]: the crate's [`Error`] and [`Result`].

pub mod accumulator;
pub mod aggregator;
pub mod broadcast;
pub mod cache;
pub mod config;
pub mod data;
pub mod error;
pub mod func;
pub mod metrics;
pub mod objfile;
pub mod partitioner;
pub mod plan;
pub mod protocol;
pub mod rdd;
pub mod ship;
pub mod shuffle;
pub mod task;
pub mod text;

pub use config::{Config, Master};
pub use data::{Data, Key};
pub use error::{Error, Result};
pub use rdd::{JobRunner, PartIter, Rdd, RddBase, RddNode};
