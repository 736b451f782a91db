//! The bounds on element types. They are the shipping rules of DESIGN.md: anything that
//! flows through an RDD may later cross a process boundary, so it must be serde-able, and
//! it is shared between threads, so it must be `Send + Sync`. `Clone` is needed because
//! a partition may be computed more than once (retries, re-used sources, cartesian).

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::hash::Hash;

/// Element type of an RDD. Implemented for every type that meets the bounds.
pub trait Data: Clone + Serialize + DeserializeOwned + Send + Sync + 'static {}
impl<T: Clone + Serialize + DeserializeOwned + Send + Sync + 'static> Data for T {}

/// Key type of a pair RDD: hashable and comparable for equality.
pub trait Key: Data + Hash + Eq {}
impl<T: Data + Hash + Eq> Key for T {}
