//! spate-executor: the runtime a program enters when it was started as an executor.
//!
//! - [`mesos`]: the custom Mesos executor (v1 executor HTTP API) on the same core.
//! - [`role`]: how a process learns that it is an executor (its environment), so that
//!   `Context::new()` can hand over control before any user code runs.
//! - [`core`]: what every executor runs: block server, disk shuffle store, task threads
//!   that open sealed tasks and report their states to a pluggable sink.
//! - [`runtime`]: the local-cluster executor: registers with the driver, hosts the block server,
//!   runs tasks on a pool sized to its cores and reports their status; exits when the
//!   driver goes away.

pub mod core;
pub mod mesos;
pub mod role;
pub mod runtime;

pub use runtime::{ExecutorConfig, run};
