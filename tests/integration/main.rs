//! All integration tests, one binary, one module per area.

mod accumulators;
mod cache;
mod capture;
mod checkpoint;
mod errors;
mod fixtures;
mod lineage;
mod observe;
mod plan;
mod props;
mod scheduler;
mod shipping;
mod shuffle_memory;
mod wordcount;

#[path = "../common/jobs.rs"]
mod common;
