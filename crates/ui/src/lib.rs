//! spate-ui: seeing what a job does.
//!
//! - [`store`]: the application's jobs, stages, tasks and executors, folded from scheduler
//!   events (a listener).
//! - [`pages`]: server-side HTML pages (with an SVG stage DAG) and their JSON twins under
//!   `/api/`.
//! - [`server`]: the driver's web UI server (first free port from 4040).
//! - [`progress`]: per-stage progress lines on a terminal (indicatif).

pub mod pages;
pub mod progress;
pub mod server;
pub mod store;

pub use progress::Progress;
pub use server::{UiError, UiServer};
pub use store::Store;

/// First port tried for the web UI (Spark's).
pub const DEFAULT_UI_PORT: u16 = 4040;
