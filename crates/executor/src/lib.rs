//! spate-executor: the runtime a program enters when it was started as an executor.
//!
//! - [`role`]: how a process learns that it is an executor (its environment), so that
//!   `Context::new()` can hand over control before any user code runs.
//! - [`runtime`]: the executor itself: registers with the driver, hosts the block server,
//!   runs tasks on a pool sized to its cores and reports their status; exits when the
//!   driver goes away.

pub mod role;
pub mod runtime;

pub use runtime::{ExecutorConfig, run};
