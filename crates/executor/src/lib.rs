//! spate-executor: the runtime a program enters when it was started as an executor.
//!
//! - [`role`]: how a process learns that it is an executor (its environment), so that
//!   `Context::new()` can hand over control before any user code runs.
//!
//! Executor processes (local-cluster and Mesos modes) are built on this seam; in local
//! mode the driver runs tasks itself and this crate only answers "not an executor".

pub mod role;
