//! Map outputs on disk: `shuffle_S_M.data` holds one segment per reduce partition, each
//! `[crc32 of the compressed bytes][lz4 block]`; `shuffle_S_M.index` holds the segments'
//! `(offset, length)`. Both are written under temp names and renamed, data first, so an
//! index only ever points into a complete data file.

use spate_core::error::{Error, Result};
use spate_core::rdd::ShuffleId;
use spate_core::shuffle::BlockData;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// An executor's shuffle directory.
pub struct DiskStore {
    dir: PathBuf,
    tmp_counter: AtomicU64,
}

/// A segment whose checksum or compression does not verify.
#[derive(Debug, PartialEq, Eq)]
pub struct Corrupt(pub String);

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

    /// Write one map task's buckets; returns records per reduce partition.
    pub fn write(
        &self,
        shuffle: ShuffleId,
        map: usize,
        buckets: &[Box<dyn BlockData>],
    ) -> Result<Vec<u64>> {
        let data_tmp = self.tmp_path();
        let index_tmp = self.tmp_path();
        let mut data = std::io::BufWriter::new(
            File::create(&data_tmp).map_err(|e| Error::io("creating", data_tmp.clone(), e))?,
        );
        let mut index = Vec::with_capacity(buckets.len() * 16 + 4);
        index.extend_from_slice(&(buckets.len() as u32).to_le_bytes());
        let mut offset = 0u64;
        let mut records = Vec::with_capacity(buckets.len());
        for b in buckets {
            let encoded = b.encode()?;
            let compressed = lz4_flex::compress_prepend_size(&encoded);
            let crc = crc32fast::hash(&compressed);
            data.write_all(&crc.to_le_bytes())
                .and_then(|_| data.write_all(&compressed))
                .map_err(|e| Error::io("writing", data_tmp.clone(), e))?;
            let len = 4 + compressed.len() as u64;
            index.extend_from_slice(&offset.to_le_bytes());
            index.extend_from_slice(&len.to_le_bytes());
            offset += len;
            records.push(b.records() as u64);
        }
        data.into_inner()
            .map_err(|e| Error::io("writing", data_tmp.clone(), e.into_error()))?
            .sync_all()
            .map_err(|e| Error::io("syncing", data_tmp.clone(), e))?;
        std::fs::write(&index_tmp, &index)
            .map_err(|e| Error::io("writing", index_tmp.clone(), e))?;
        let (data_path, index_path) = (self.data_path(shuffle, map), self.index_path(shuffle, map));
        std::fs::rename(&data_tmp, &data_path)
            .map_err(|e| Error::io("renaming to", data_path, e))?;
        std::fs::rename(&index_tmp, &index_path)
            .map_err(|e| Error::io("renaming to", index_path, e))?;
        Ok(records)
    }

    /// The raw segment (checksum + compressed block) of one reduce partition, or `None`
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

    /// Delete a map output.
    pub fn remove(&self, shuffle: ShuffleId, map: usize) {
        let _ = std::fs::remove_file(self.index_path(shuffle, map));
        let _ = std::fs::remove_file(self.data_path(shuffle, map));
    }
}

/// Verify a segment's checksum and decompress it into the encoded block.
pub fn decode_segment(seg: &[u8]) -> std::result::Result<Vec<u8>, Corrupt> {
    if seg.len() < 4 {
        return Err(Corrupt(format!(
            "segment of {} bytes is too short",
            seg.len()
        )));
    }
    let (crc, body) = seg.split_at(4);
    let want = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    let got = crc32fast::hash(body);
    if want != got {
        return Err(Corrupt(format!(
            "checksum mismatch (stored {want:08x}, computed {got:08x})"
        )));
    }
    lz4_flex::decompress_size_prepended(body)
        .map_err(|e| Corrupt(format!("decompression failed: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("spate-disk-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
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
            let bytes = decode_segment(&seg).expect("valid");
            let got: Vec<u64> = spate_core::ship::codec::from_slice(&bytes).expect("decodes");
            assert_eq!(got, want);
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
    fn corruption_is_detected() {
        let dir = tmp("crc");
        let store = DiskStore::new(&dir).expect("dir");
        let buckets: Vec<Box<dyn BlockData>> = vec![Box::new(vec!["a".to_string(); 100])];
        store.write(0, 0, &buckets).expect("write");
        let mut seg = store.read_segment(0, 0, 0).expect("io").expect("present");
        let n = seg.len();
        seg[n - 3] ^= 0x55;
        assert!(
            decode_segment(&seg)
                .unwrap_err()
                .0
                .contains("checksum mismatch")
        );
        assert!(decode_segment(&[1, 2]).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
