//! Building blocks of the Mesos framework backend (`mesos://host:port`).
//!
//! - [`offers`]: fitting pending tasks into resource offers, carving the task's and the
//!   executor's resources out of the offered `Resource`s so that every field Mesos sent
//!   (role, allocation, reservations, …) goes back unchanged.
//! - [`exec_server`]: the driver serves its own executable over HTTP for the agents'
//!   fetcher (`GET`/`HEAD` with `Content-Length`, at a URL naming the binary's hash).
//!
//! - `coarse`: coarse-grained mode (the default): one long-running executor task per
//!   agent, tasks sent over the driver's control channel.
//! - [`framework`]: the backend itself: the subscription's event loop (OFFERS →
//!   ACCEPT/DECLINE, SUPPRESS/REVIVE, UPDATE → task ends + ACKNOWLEDGE, FAILURE → executor
//!   lost, re-subscription + RECONCILE, ERROR, TEARDOWN).

pub(crate) mod coarse;
pub mod exec_server;
pub mod framework;
pub mod offers;
