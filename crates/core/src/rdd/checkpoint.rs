//! `checkpoint`: an RDD whose partitions are written to the checkpoint directory by the
//! first job that computes them, after which its lineage is cut and every later job (and
//! every lost partition downstream) reads the files.
//!
//! Before the cut, computing partition `p` reads `part-p` if an earlier job already wrote
//! it (a partial job, e.g. `take`), else computes the parent's partition and writes the
//! file as the elements pass (through a temporary name; renamed when the partition is
//! complete). After a job, the driver checks whether every partition's file exists; if so
//! the node drops its parent (the lineage is freed) and ships without it.

use super::{Dependency, NodeMeta, NodeRef, PartIter, RddBase, RddNode, base_of, compute};
use crate::data::Data;
use crate::error::Error;
use crate::objfile::{ObjectReader, ObjectWriter};
use crate::task::{TaskContext, raise};
use serde::{Deserialize, Serialize};
use std::any::Any;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub(crate) struct CheckpointNode<T: 'static> {
    pub meta: NodeMeta,
    /// This RDD's directory under the application's checkpoint directory.
    pub dir: PathBuf,
    pub partitions: usize,
    /// The lineage the files are computed from, until every file is written.
    pub parent: Mutex<Option<NodeRef<T>>>,
    /// The parent's partitioner (files keep partition `p`'s keys in partition `p`); the
    /// driver's joins use it, executors do not need it.
    pub partitioner: Option<Arc<dyn Any + Send + Sync>>,
}

/// What ships: the parent only while the lineage is not cut.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
struct Wire<T: 'static> {
    meta: NodeMeta,
    dir: PathBuf,
    partitions: usize,
    parent: Option<NodeRef<T>>,
}

impl<T: Data> Serialize for CheckpointNode<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Wire {
            meta: self.meta.clone(),
            dir: self.dir.clone(),
            partitions: self.partitions,
            parent: self.parent(),
        }
        .serialize(s)
    }
}

impl<'de, T: Data> Deserialize<'de> for CheckpointNode<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = Wire::<T>::deserialize(d)?;
        Ok(CheckpointNode {
            meta: w.meta,
            dir: w.dir,
            partitions: w.partitions,
            parent: Mutex::new(w.parent),
            partitioner: None,
        })
    }
}

impl<T: Data> CheckpointNode<T> {
    fn parent(&self) -> Option<NodeRef<T>> {
        self.parent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The file of partition `split`.
    pub fn file(dir: &Path, split: usize) -> PathBuf {
        dir.join(format!("part-{split:05}"))
    }
}

impl<T: Data> RddBase for CheckpointNode<T> {
    fn meta(&self) -> &NodeMeta {
        &self.meta
    }
    fn num_partitions(&self) -> usize {
        self.partitions
    }
    fn dependencies(&self) -> Vec<Dependency> {
        self.parent()
            .map(|p| Dependency::Narrow(base_of(&p)))
            .into_iter()
            .collect()
    }
    fn partitioner(&self) -> Option<Arc<dyn Any + Send + Sync>> {
        self.partitioner.clone()
    }
    fn is_checkpointed(&self) -> bool {
        self.parent().is_none()
    }
    fn finish_checkpoint(&self) {
        if self.parent().is_some()
            && (0..self.partitions).all(|p| Self::file(&self.dir, p).is_file())
        {
            // Every partition is on reliable storage: forget how to compute them.
            let cut = self.parent.lock().unwrap_or_else(|p| p.into_inner()).take();
            drop(cut);
            tracing::info!(rdd = %self.meta, dir = %self.dir.display(), "checkpointed: lineage cut");
        }
    }
}

impl<T: Data> RddNode<T> for CheckpointNode<T> {
    fn compute(self: Arc<Self>, split: usize, tc: &TaskContext) -> PartIter<T> {
        let file = Self::file(&self.dir, split);
        // Not yet written (and the lineage is still here): compute it and write it.
        if let Some(parent) = self.parent().filter(|_| !file.is_file()) {
            let input = compute(&parent, split, tc);
            return match ObjectWriter::create(&file) {
                Ok(writer) => PartIter::new(Writing {
                    input,
                    writer: Some(writer),
                }),
                Err(e) => raise(e),
            };
        }
        match ObjectReader::<T>::open(&file) {
            Ok(reader) => PartIter::new(reader.map(|x| x.unwrap_or_else(|e| raise(e)))),
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                raise(Error::CorruptFile {
                    path: file,
                    message: format!(
                        "checkpoint of {} partition {split} is missing (was the checkpoint directory removed, or is it not shared with this executor?)",
                        self.meta
                    ),
                })
            }
            Err(e) => raise(e),
        }
    }
}

/// Passes a partition's elements on while writing them; the file appears when the last
/// one has passed (a partly read partition leaves no file).
struct Writing<T: Data> {
    input: PartIter<T>,
    writer: Option<ObjectWriter<T>>,
}

impl<T: Data> Iterator for Writing<T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        match self.input.next() {
            Some(x) => {
                if let Some(w) = self.writer.as_mut()
                    && let Err(e) = w.push(&x)
                {
                    raise(e)
                }
                Some(x)
            }
            None => {
                if let Some(w) = self.writer.take()
                    && let Err(e) = w.finish()
                {
                    raise(e)
                }
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.input.size_hint()
    }
}
