//! spate: a distributed dataset engine for Rust in the style of Spark core and dpark.
//!
//! Write a data-parallel program against a typed RDD API; spate cuts its lineage into
//! stages at shuffle boundaries and runs the tasks on all cores (`local[*]`, the default).
//!
//! ```
//! use spate::prelude::*;
//!
//! # fn main() -> spate::Result<()> {
//! let ctx = Context::builder().master("local[2]").build()?;
//! let lines = ctx.parallelize(vec!["to be or".to_string(), "not to be".to_string()], 2);
//! let mut counts = lines
//!     .flat_map(words)
//!     .map(|w| (w, 1u64))
//!     .reduce_by_key(|a, b| a + b)
//!     .collect()?;
//! counts.sort();
//! assert_eq!(counts[0], ("be".into(), 2));
//! # Ok(())
//! # }
//! ```
//!
//! Modules: [`context`] (the [`Context`], entry point of every program) and re-exports of
//! the model from `spate-core`: [`Rdd`] and its operations, [`text`] helpers,
//! [`partitioner`], [`plan`], [`config`].

mod broadcast_server;
pub mod context;

pub use broadcast_server::BroadcastStats;

pub use context::{
    Context, ContextBuilder, EngineFlags, MesosMode, MesosOptions, split_engine_flags,
};

/// The program's arguments (without the program name) minus the engine's flags
/// (`--master`, `--event-log`, `--ui-port`, `--no-ui`, `--quiet`), for its own parsing.
pub fn args() -> Vec<String> {
    split_engine_flags(std::env::args().skip(1)).1
}
pub use spate_core::accumulator::Accumulator;
pub use spate_core::broadcast::Broadcast;
pub use spate_core::rdd::{Numeric, StatCounter, TextFileOptions};
pub use spate_core::ship::SerArc;
pub use spate_core::{Data, Error, Key, Master, PartIter, Rdd, Result};
pub use spate_core::{
    accumulator, broadcast, config, func, metrics, partitioner, plan, protocol, rdd, ship, task,
    text,
};
pub use spate_scheduler::listener;
/// The web UI and terminal progress (also usable to serve an event log again).
pub use spate_ui as ui;

/// Everything a job usually needs: `use spate::prelude::*;`.
pub mod prelude {
    pub use crate::context::Context;
    pub use spate_core::text::{Word, words};
    pub use spate_core::{Data, Error, Key, PartIter, Rdd, Result};
}

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
