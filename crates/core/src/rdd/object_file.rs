//! `object_file`: an RDD read back from the part files `save_as_object_file` wrote (one
//! partition per file, in order), so RDDs can be handed between programs without a text
//! format. The files are [`crate::objfile`]s: typed elements in checksummed blocks.

use super::{Dependency, JobRunner, NodeMeta, PartIter, Rdd, RddBase, RddNode};
use crate::data::Data;
use crate::error::{Error, Result};
use crate::objfile::ObjectReader;
use crate::task::{TaskContext, raise};
use serde::{Deserialize, Serialize};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The file naming the element type, next to the parts.
pub(crate) const TYPE_FILE: &str = "_TYPE";

#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
struct ObjectFileNode<T> {
    meta: NodeMeta,
    files: Vec<PathBuf>,
    #[serde(skip)]
    _elements: PhantomData<fn() -> T>,
}

impl<T: Data> RddBase for ObjectFileNode<T> {
    fn meta(&self) -> &NodeMeta {
        &self.meta
    }
    fn num_partitions(&self) -> usize {
        self.files.len()
    }
    fn dependencies(&self) -> Vec<Dependency> {
        Vec::new()
    }
}

impl<T: Data> RddNode<T> for ObjectFileNode<T> {
    fn compute(self: Arc<Self>, split: usize, _tc: &TaskContext) -> PartIter<T> {
        let Some(file) = self.files.get(split) else {
            raise(Error::Other(format!(
                "{} has no partition {split}",
                self.meta
            )))
        };
        match ObjectReader::<T>::open(file) {
            Ok(reader) => PartIter::new(reader.map(|x| {
                let x = x.unwrap_or_else(|e| raise(e));
                crate::metrics::record(|m| m.input_records += 1);
                x
            })),
            Err(e) => raise(e),
        }
    }
}

/// The part files of a directory written by `save_as_object_file` (or one such file),
/// checked to hold elements of type `T`.
#[track_caller]
pub fn object_file<T: Data>(sc: Arc<dyn JobRunner>, path: impl AsRef<Path>) -> Result<Rdd<T>> {
    let path = path.as_ref();
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::InputNotFound(path.to_path_buf()),
        _ => Error::io("reading metadata of", path, e),
    })?;
    let files = if meta.is_dir() {
        let want = std::any::type_name::<T>();
        if let Ok(written) = std::fs::read_to_string(path.join(TYPE_FILE))
            && written.trim() != want
        {
            return Err(Error::InvalidArgument(format!(
                "{} holds elements of type {}, not {want}",
                path.display(),
                written.trim()
            )));
        }
        let mut parts: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| Error::io("listing", path, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("part-"))
            })
            .collect();
        parts.sort();
        if parts.is_empty() {
            return Err(Error::GlobNoMatch(format!(
                "{}/part-* (not a directory written by save_as_object_file)",
                path.display()
            )));
        }
        parts
    } else {
        vec![path.to_path_buf()]
    };
    let meta = NodeMeta::new(&*sc, "object_file");
    Ok(Rdd::from_node(
        sc,
        ObjectFileNode::<T> {
            meta,
            files,
            _elements: PhantomData,
        },
    ))
}
