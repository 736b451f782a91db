//! Building blocks of the Mesos framework backend (`mesos://host:port`).
//!
//! - [`offers`]: fitting pending tasks into resource offers, carving the task's and the
//!   executor's resources out of the offered `Resource`s so that every field Mesos sent
//!   (role, allocation, reservations, …) goes back unchanged.
//! - [`exec_server`]: the driver serves its own executable over HTTP for the agents'
//!   fetcher (`GET`/`HEAD` with `Content-Length`, at a URL naming the binary's hash).
//!
//! The backend's event loop (SUBSCRIBE, OFFERS → ACCEPT/DECLINE, UPDATE acknowledgements,
//! re-subscription, TEARDOWN) is built on these.

pub mod exec_server;
pub mod offers;
