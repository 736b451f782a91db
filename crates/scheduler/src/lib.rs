//! spate-scheduler: turns jobs into stages and stages into tasks.
//!
//! - [`dag`]: the DAG scheduler, one owner of all scheduling state, driven by an event
//!   loop (`event::Event`); stages, their states, retries, fetch-failure recovery and
//!   task placement on executor cores.
//! - [`event`]: the events and the sink backends report through.
//! - [`backend`]: the [`backend::SchedulerBackend`] trait, the one deployment seam, with
//!   the local thread-pool, local-cluster and Mesos backends and the executor control
//!   channel the process backends share.
//! - [`listener`]: events for observers ([`listener::SchedulerEvent`]), the bus that
//!   delivers them off the scheduler's thread, and the JSON-lines event log.
//! - [`handle`]: [`handle::Scheduler`], the driver-side handle that implements
//!   `spate_core::JobRunner` (run a job, wait for its results).

pub mod backend;
pub mod dag;
pub mod event;
pub mod handle;
pub mod listener;

pub use backend::SchedulerBackend;
pub use backend::local::LocalBackend;
pub use handle::{Scheduler, SchedulerOptions};
