//! Map outputs on disk: `shuffle_S_M.data` holds one segment per reduce partition;
//! `shuffle_S_M.index` holds the segments' `(offset, length)`. A segment is a sequence of
//! frames (`spate_core::shuffle::frame`: checksummed lz4 blocks of about 64 KiB of encoded
//! records), in the order the map task spilled its chunks, so merging spills is a byte
//! copy. Both files are written under temp names
//! and renamed, data first, so an index only ever points into a complete data file.

use spate_core::error::{Error, Result};
use spate_core::rdd::ShuffleId;
use spate_core::shuffle::BlockData;
use spate_core::shuffle::frame::{EncodedChunk, FRAME_BYTES, FrameWriter};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// An executor's shuffle directory.
pub struct DiskStore {
    dir: PathBuf,
    tmp_counter: AtomicU64,
}

impl DiskStore {
    /// Use (and create) `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io("creating shuffle directory", dir.clone(), e))?;
        Ok(DiskStore {
            dir,
            tmp_counter: AtomicU64::new(0),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn data_path(&self, shuffle: ShuffleId, map: usize) -> PathBuf {
        self.dir.join(format!("shuffle_{shuffle}_{map}.data"))
    }

    fn index_path(&self, shuffle: ShuffleId, map: usize) -> PathBuf {
        self.dir.join(format!("shuffle_{shuffle}_{map}.index"))
    }

    fn tmp_path(&self) -> PathBuf {
        let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!(".tmp-{}-{n}", std::process::id()))
    }

    /// Write one map task's buckets in one go; returns records per reduce partition.
    pub fn write(
        &self,
        shuffle: ShuffleId,
        map: usize,
        buckets: &[Box<dyn BlockData>],
    ) -> Result<Vec<u64>> {
        let mut w = self.writer(shuffle, map, buckets.len());
        w.spill(buckets)?;
        w.commit()
    }

    /// Start writing a map output that may arrive in several spilled chunks.
    pub fn writer(&self, shuffle: ShuffleId, map: usize, reduces: usize) -> DiskWriter<'_> {
        DiskWriter {
            store: self,
            shuffle,
            map,
            spills: Vec::new(),
            records: vec![0; reduces],
            framer: FrameWriter::default(),
        }
    }

    /// The raw segment (its frames) of one reduce partition, or `None`
    /// when this store does not have that map output.
    pub fn read_segment(
        &self,
        shuffle: ShuffleId,
        map: usize,
        reduce: usize,
    ) -> std::io::Result<Option<Vec<u8>>> {
        let index = match std::fs::read(self.index_path(shuffle, map)) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let entry = 4 + reduce * 16;
        let Some(bytes) = index.get(entry..entry + 16) else {
            return Ok(None);
        };
        let offset = u64::from_le_bytes(bytes[..8].try_into().unwrap_or([0; 8]));
        let len = u64::from_le_bytes(bytes[8..].try_into().unwrap_or([0; 8]));
        let mut f = File::open(self.data_path(shuffle, map))?;
        f.seek(SeekFrom::Start(offset))?;
        let mut seg = vec![0u8; len as usize];
        f.read_exact(&mut seg)?;
        Ok(Some(seg))
    }

    /// Whether a map output is stored.
    pub fn has(&self, shuffle: ShuffleId, map: usize) -> bool {
        self.index_path(shuffle, map).exists()
    }

    /// Delete every map output of `shuffle`.
    pub fn remove_shuffle(&self, shuffle: ShuffleId) {
        let prefix = format!("shuffle_{shuffle}_");
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(map) = name
                .strip_prefix(&prefix)
                .and_then(|rest| rest.strip_suffix(".index"))
                .and_then(|m| m.parse::<usize>().ok())
            {
                self.remove(shuffle, map);
            }
        }
    }

    /// Delete a map output.
    pub fn remove(&self, shuffle: ShuffleId, map: usize) {
        let _ = std::fs::remove_file(self.index_path(shuffle, map));
        let _ = std::fs::remove_file(self.data_path(shuffle, map));
    }
}

/// One spill file: per reduce partition, where its frame is (absent if empty).
struct Spill {
    path: PathBuf,
    frames: Vec<Option<(u64, u64)>>,
}

/// Writes one map output, spill by spill; nothing is visible until [`DiskWriter::commit`].
pub struct DiskWriter<'a> {
    store: &'a DiskStore,
    shuffle: ShuffleId,
    map: usize,
    spills: Vec<Spill>,
    records: Vec<u64>,
    framer: FrameWriter,
}

/// One map output being written to a store that keeps outputs in memory up to a budget
/// (local mode's and an executor's): its chunks (`C`) stay in memory while the budget has
/// room; once one does not fit, the whole output goes to disk, the chunks kept so far
/// first.
pub(crate) struct Tiered<'a, C> {
    /// Chunks kept in memory so far, and their bytes.
    pub(crate) chunks: Vec<C>,
    pub(crate) bytes: usize,
    /// Records per reduce partition of the chunks kept in memory.
    pub(crate) records: Vec<u64>,
    /// Set once this output goes to disk (it then takes every chunk, and counts records).
    pub(crate) disk: Option<DiskWriter<'a>>,
}

impl<'a, C> Tiered<'a, C> {
    pub(crate) fn new(reduces: usize) -> Self {
        Tiered {
            chunks: Vec::new(),
            bytes: 0,
            records: vec![0; reduces],
            disk: None,
        }
    }

    /// Keep `chunk` (of `size()` bytes, holding `records` per reduce partition) in memory
    /// when this output is not on disk yet and `fits` the bytes it would then hold;
    /// otherwise hand it back.
    pub(crate) fn keep(
        &mut self,
        chunk: C,
        size: impl FnOnce(&C) -> usize,
        records: impl FnOnce(&C) -> Vec<u64>,
        fits: impl FnOnce(usize) -> bool,
    ) -> std::result::Result<usize, C> {
        if self.disk.is_some() {
            return Err(chunk);
        }
        let size = size(&chunk);
        if !fits(self.bytes + size) {
            return Err(chunk);
        }
        self.bytes += size;
        for (n, mine) in records(&chunk).into_iter().zip(&mut self.records) {
            *mine += n;
        }
        self.chunks.push(chunk);
        Ok(size)
    }

    /// The disk writer of this output: on first use opened by `open`, and given the
    /// chunks kept so far by `flush`.
    pub(crate) fn disk(
        &mut self,
        open: impl FnOnce() -> Result<DiskWriter<'a>>,
        mut flush: impl FnMut(&mut DiskWriter<'a>, C) -> Result<()>,
    ) -> Result<&mut DiskWriter<'a>> {
        if self.disk.is_none() {
            let mut w = open()?;
            for chunk in std::mem::take(&mut self.chunks) {
                flush(&mut w, chunk)?;
            }
            self.bytes = 0;
            self.disk = Some(w);
        }
        self.disk
            .as_mut()
            .ok_or_else(|| Error::Other("shuffle disk writer missing".into()))
    }
}

/// A chunk handed to a map writer has at most one bucket per reduce partition.
pub(crate) fn check_chunk_width(buckets: usize, reduces: usize) -> Result<()> {
    if buckets > reduces {
        return Err(Error::Other(format!(
            "map output chunk has more than {reduces} buckets"
        )));
    }
    Ok(())
}

/// Write `b` to `out` (the file at `path`) as frames; returns the bytes written.
fn write_block(
    framer: &mut FrameWriter,
    out: &mut impl Write,
    path: &Path,
    b: &dyn BlockData,
) -> Result<u64> {
    let mut written = 0u64;
    b.encode_chunks(FRAME_BYTES, &mut |encoded| {
        written += framer
            .write(out, encoded)
            .map_err(|e| Error::io("writing", path, e))?;
        Ok(())
    })?;
    Ok(written)
}

impl DiskWriter<'_> {
    /// Write a chunk (`buckets[r]` for reduce partition `r`) to a spill file.
    pub fn spill<B: AsRef<dyn BlockData>>(&mut self, buckets: &[B]) -> Result<()> {
        check_chunk_width(buckets.len(), self.records.len())?;
        for (b, records) in buckets.iter().zip(&mut self.records) {
            *records += b.as_ref().records() as u64;
        }
        let mut framer = std::mem::take(&mut self.framer);
        let written = self.write_spill(buckets.len(), |r, out, path| match buckets.get(r) {
            Some(b) if b.as_ref().records() > 0 => write_block(&mut framer, out, path, b.as_ref()),
            _ => Ok(0),
        });
        self.framer = framer;
        written
    }

    /// Write a chunk already encoded as frames to a spill file.
    pub fn spill_encoded(&mut self, chunk: EncodedChunk) -> Result<()> {
        let EncodedChunk { segments, records } = chunk;
        check_chunk_width(segments.len().max(records.len()), self.records.len())?;
        for (mine, n) in self.records.iter_mut().zip(records) {
            *mine += n;
        }
        self.write_spill(segments.len(), |r, out, path| {
            let Some(seg) = segments.get(r) else {
                return Ok(0);
            };
            for piece in seg.pieces() {
                out.write_all(piece)
                    .map_err(|e| Error::io("writing", path, e))?;
            }
            Ok(seg.len() as u64)
        })
    }

    /// Write a spill file of `reduces` segments, `segment` writing partition `r`'s
    /// (returning its length, 0 for none).
    fn write_spill(
        &mut self,
        reduces: usize,
        mut segment: impl FnMut(usize, &mut std::io::BufWriter<File>, &Path) -> Result<u64>,
    ) -> Result<()> {
        let path = self.store.tmp_path();
        let mut out = std::io::BufWriter::with_capacity(
            FRAME_BYTES,
            File::create(&path).map_err(|e| Error::io("creating", path.clone(), e))?,
        );
        // Registered before writing, so that a failed spill's file is removed on drop.
        self.spills.push(Spill {
            path: path.clone(),
            frames: Vec::with_capacity(reduces),
        });
        let mut frames = Vec::with_capacity(reduces);
        let mut offset = 0u64;
        for r in 0..reduces {
            let len = segment(r, &mut out, &path)?;
            frames.push((len > 0).then_some((offset, len)));
            offset += len;
        }
        out.flush()
            .map_err(|e| Error::io("writing", path.clone(), e))?;
        spate_core::metrics::record(|m| m.shuffle_write_bytes += offset);
        if let Some(last) = self.spills.last_mut() {
            last.frames = frames;
        }
        Ok(())
    }

    /// Merge the spills into the data file and index, and publish them; returns records
    /// per reduce partition.
    ///
    /// A single spill (the common case) already is the data file: its frames are in
    /// reduce-partition order, so it is renamed, not copied. Nothing is synced to disk: a
    /// map output is recomputable, and a file torn by a crash fails its frames' checksums
    /// and is recomputed (Spark does not sync shuffle files either).
    pub fn commit(mut self) -> Result<Vec<u64>> {
        let reduces = self.records.len();
        let mut index = Vec::with_capacity(reduces * 16 + 4);
        index.extend_from_slice(&(reduces as u32).to_le_bytes());
        let data_tmp = if let [only] = self.spills.as_slice() {
            for r in 0..reduces {
                let (start, len) = only.frames.get(r).copied().flatten().unwrap_or((0, 0));
                index.extend_from_slice(&start.to_le_bytes());
                index.extend_from_slice(&len.to_le_bytes());
            }
            only.path.clone()
        } else {
            let data_tmp = self.store.tmp_path();
            self.merge_spills(&data_tmp, &mut index)?;
            data_tmp
        };
        let index_tmp = self.store.tmp_path();
        std::fs::write(&index_tmp, &index)
            .map_err(|e| Error::io("writing", index_tmp.clone(), e))?;
        let (data_path, index_path) = (
            self.store.data_path(self.shuffle, self.map),
            self.store.index_path(self.shuffle, self.map),
        );
        std::fs::rename(&data_tmp, &data_path)
            .map_err(|e| Error::io("renaming to", data_path, e))?;
        std::fs::rename(&index_tmp, &index_path)
            .map_err(|e| Error::io("renaming to", index_path, e))?;
        Ok(std::mem::take(&mut self.records))
    }

    /// Copy the spills' frames into `data_tmp`, reduce partition by reduce partition,
    /// appending each partition's `(offset, length)` to `index`.
    fn merge_spills(&self, data_tmp: &Path, index: &mut Vec<u8>) -> Result<()> {
        let mut data = std::io::BufWriter::new(
            File::create(data_tmp).map_err(|e| Error::io("creating", data_tmp, e))?,
        );
        let mut sources = Vec::with_capacity(self.spills.len());
        for sp in &self.spills {
            sources
                .push(File::open(&sp.path).map_err(|e| Error::io("opening", sp.path.clone(), e))?);
        }
        let mut offset = 0u64;
        for r in 0..self.records.len() {
            let start = offset;
            for (sp, src) in self.spills.iter().zip(sources.iter_mut()) {
                if let Some(Some((off, len))) = sp.frames.get(r) {
                    src.seek(SeekFrom::Start(*off))
                        .map_err(|e| Error::io("seeking in", sp.path.clone(), e))?;
                    let copied = std::io::copy(&mut Read::by_ref(src).take(*len), &mut data)
                        .map_err(|e| Error::io("copying", sp.path.clone(), e))?;
                    offset += copied;
                }
            }
            index.extend_from_slice(&start.to_le_bytes());
            index.extend_from_slice(&(offset - start).to_le_bytes());
        }
        data.flush().map_err(|e| Error::io("writing", data_tmp, e))
    }
}

impl Drop for DiskWriter<'_> {
    fn drop(&mut self) {
        for sp in &self.spills {
            let _ = std::fs::remove_file(&sp.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spate_core::shuffle::frame::{EncodingBuckets, decode_records, verify_segment};

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("spate-disk-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn removing_a_shuffle_deletes_only_its_outputs() {
        let dir = tmp("remove");
        let store = DiskStore::new(&dir).expect("dir");
        for (shuffle, map) in [(1, 0), (1, 11), (11, 0), (2, 1)] {
            let buckets: Vec<Box<dyn BlockData>> = vec![Box::new(vec![shuffle as u64])];
            store.write(shuffle, map, &buckets).expect("write");
        }
        store.remove_shuffle(1);
        assert!(!store.has(1, 0) && !store.has(1, 11));
        assert!(store.has(11, 0) && store.has(2, 1));
        let left = std::fs::read_dir(&dir).expect("dir").count();
        assert_eq!(left, 4, "index and data of the two other outputs");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn write_then_read_every_segment() {
        let dir = tmp("rw");
        let store = DiskStore::new(&dir).expect("dir");
        let buckets: Vec<Box<dyn BlockData>> = vec![
            Box::new(vec![1u64, 2, 3]),
            Box::new(Vec::<u64>::new()),
            Box::new(vec![9u64]),
        ];
        assert_eq!(store.write(4, 2, &buckets).expect("write"), vec![3, 0, 1]);
        for (r, want) in [vec![1u64, 2, 3], vec![], vec![9]].into_iter().enumerate() {
            let seg = store.read_segment(4, 2, r).expect("io").expect("present");
            assert_eq!(decode_records::<u64>(&seg).expect("valid"), want);
        }
        assert_eq!(
            store.read_segment(4, 2, 3).expect("io"),
            None,
            "no such reduce partition"
        );
        assert_eq!(
            store.read_segment(4, 9, 0).expect("io"),
            None,
            "no such map output"
        );
        let names: Vec<String> = std::fs::read_dir(&dir)
            .expect("ls")
            .map(|e| e.expect("e").file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.iter().all(|n| !n.starts_with(".tmp")),
            "no temp files left: {names:?}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn spilled_chunks_merge_per_reduce_partition() {
        let dir = tmp("spill");
        let store = DiskStore::new(&dir).expect("dir");
        let mut w = store.writer(1, 0, 2);
        let c1: Vec<Box<dyn BlockData>> = vec![Box::new(vec![1u32]), Box::new(vec![10u32, 11])];
        let c2: Vec<Box<dyn BlockData>> = vec![Box::new(Vec::<u32>::new()), Box::new(vec![12u32])];
        let c3: Vec<Box<dyn BlockData>> =
            vec![Box::new(vec![2u32, 3]), Box::new(Vec::<u32>::new())];
        // An encoded chunk between object chunks (a memory store's output moving to disk).
        let mut encoded = EncodingBuckets::new(2);
        for (r, x) in [(1, 13u32), (0, 4), (1, 14)] {
            encoded.push(r, &x).expect("push");
        }
        w.spill(&c1).expect("spill");
        w.spill(&c2).expect("spill");
        w.spill_encoded(encoded.finish().expect("finish"))
            .expect("spill");
        w.spill(&c3).expect("spill");
        assert!(!store.has(1, 0), "invisible before commit");
        assert_eq!(w.commit().expect("commit"), vec![4, 5]);
        let read = |r| -> Vec<u32> {
            let seg = store.read_segment(1, 0, r).expect("io").expect("present");
            decode_records(&seg).expect("valid")
        };
        assert_eq!(read(0), vec![1, 4, 2, 3]);
        assert_eq!(read(1), vec![10, 11, 12, 13, 14]);
        let left: Vec<String> = std::fs::read_dir(&dir)
            .expect("ls")
            .map(|e| e.expect("e").file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            left.iter().all(|n| !n.starts_with(".tmp")),
            "spill files removed: {left:?}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn corruption_is_detected() {
        let dir = tmp("crc");
        let store = DiskStore::new(&dir).expect("dir");
        let buckets: Vec<Box<dyn BlockData>> = vec![Box::new(vec!["a".to_string(); 100])];
        store.write(0, 0, &buckets).expect("write");
        let mut seg = store.read_segment(0, 0, 0).expect("io").expect("present");
        let n = seg.len();
        seg[n - 3] ^= 0x55;
        assert!(
            verify_segment(&seg)
                .unwrap_err()
                .0
                .contains("checksum mismatch")
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
