//! Files of typed elements: what checkpoints (and object files) are made of.
//!
//! A file is the magic `SPATEOB1`, then blocks of about [`BLOCK_BYTES`]: a header
//! (`elements: u32`, `bytes: u32`, `crc32: u32`, little-endian) and that many bytes holding
//! that many bincode-encoded elements. A last block of zero elements holds the total element
//! count (`u64`): a file without it was cut short. Writers write to a temporary name in the
//! same directory and rename when done, so a file that exists is complete; readers check
//! every block's checksum and name the file and block of any damage.

use crate::error::{Error, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"SPATEOB1";
/// Encoded bytes per block before it is written.
pub const BLOCK_BYTES: usize = 256 << 10;
/// A block larger than this is damage, not data (a single element may exceed
/// [`BLOCK_BYTES`], so this is generous).
const MAX_BLOCK: u32 = 1 << 30;

fn corrupt(path: &Path, message: impl Into<String>) -> Error {
    Error::CorruptFile {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Writes elements to `dest` through a temporary file; [`ObjectWriter::finish`] makes it
/// appear. Dropped unfinished, it removes the temporary file.
pub struct ObjectWriter<T> {
    out: Option<BufWriter<File>>,
    tmp: PathBuf,
    dest: PathBuf,
    block: Vec<u8>,
    in_block: u32,
    total: u64,
    _elements: PhantomData<fn(&T)>,
}

impl<T: Serialize> ObjectWriter<T> {
    /// Start writing `dest` (its directory is created if missing).
    pub fn create(dest: &Path) -> Result<Self> {
        let dir = dest.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
        let name = dest
            .file_name()
            .map_or_else(|| "part".into(), |n| n.to_string_lossy().into_owned());
        let tmp = dir.join(format!(".{name}.{}.{}.tmp", std::process::id(), unique()));
        let file = File::create(&tmp).map_err(|e| Error::io("creating", &tmp, e))?;
        let mut out = BufWriter::with_capacity(BLOCK_BYTES, file);
        out.write_all(MAGIC)
            .map_err(|e| Error::io("writing", &tmp, e))?;
        Ok(ObjectWriter {
            out: Some(out),
            tmp,
            dest: dest.to_path_buf(),
            block: Vec::with_capacity(BLOCK_BYTES),
            in_block: 0,
            total: 0,
            _elements: PhantomData,
        })
    }

    /// Append one element.
    pub fn push(&mut self, x: &T) -> Result<()> {
        bincode::serialize_into(&mut self.block, x).map_err(|e| {
            Error::Other(format!(
                "encoding an element for {}: {e}",
                self.dest.display()
            ))
        })?;
        self.in_block += 1;
        self.total += 1;
        if self.block.len() >= BLOCK_BYTES || self.in_block == u32::MAX {
            self.flush_block()?;
        }
        Ok(())
    }

    fn write_block(&mut self, elements: u32, body: &[u8]) -> Result<()> {
        let len = u32::try_from(body.len())
            .ok()
            .filter(|l| *l <= MAX_BLOCK)
            .ok_or_else(|| {
                Error::Other(format!(
                    "an element of {} is over 1 GiB",
                    self.dest.display()
                ))
            })?;
        let mut header = [0u8; 12];
        header[..4].copy_from_slice(&elements.to_le_bytes());
        header[4..8].copy_from_slice(&len.to_le_bytes());
        header[8..].copy_from_slice(&crc32fast::hash(body).to_le_bytes());
        let tmp = &self.tmp;
        let out = self
            .out
            .as_mut()
            .ok_or_else(|| Error::Other(format!("{} is already finished", tmp.display())))?;
        out.write_all(&header)
            .and_then(|()| out.write_all(body))
            .map_err(|e| Error::io("writing", tmp, e))
    }

    fn flush_block(&mut self) -> Result<()> {
        if self.in_block == 0 {
            return Ok(());
        }
        let body = std::mem::take(&mut self.block);
        let r = self.write_block(self.in_block, &body);
        self.block = body;
        self.block.clear();
        self.in_block = 0;
        r
    }

    /// Write the last block, sync and rename to the destination. Returns the number of
    /// elements written.
    pub fn finish(mut self) -> Result<u64> {
        self.flush_block()?;
        let total = self.total;
        self.write_block(0, &total.to_le_bytes())?;
        let out = self.out.take();
        let tmp = self.tmp.clone();
        let file = out
            .ok_or_else(|| Error::Other(format!("{} is already finished", tmp.display())))?
            .into_inner()
            .map_err(|e| Error::io("writing", &tmp, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io("syncing", &tmp, e))?;
        std::fs::rename(&tmp, &self.dest).map_err(|e| Error::io("renaming", &tmp, e))?;
        Ok(total)
    }
}

impl<T> Drop for ObjectWriter<T> {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// A process-unique number for temporary names.
fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Reads the elements of a file made by [`ObjectWriter`], block by block, checking each.
pub struct ObjectReader<T> {
    input: BufReader<File>,
    path: PathBuf,
    block: std::vec::IntoIter<T>,
    blocks: u64,
    seen: u64,
    ended: bool,
}

impl<T: DeserializeOwned> ObjectReader<T> {
    /// Open `path` and check its magic.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io("opening", path, e))?;
        let mut input = BufReader::with_capacity(BLOCK_BYTES, file);
        let mut magic = [0u8; 8];
        input
            .read_exact(&mut magic)
            .map_err(|e| Error::io("reading", path, e))?;
        if &magic != MAGIC {
            return Err(corrupt(path, "not a spate object file (bad magic)"));
        }
        Ok(ObjectReader {
            input,
            path: path.to_path_buf(),
            block: Vec::new().into_iter(),
            blocks: 0,
            seen: 0,
            ended: false,
        })
    }

    /// The next block's elements; `Ok(false)` at the end.
    fn next_block(&mut self) -> Result<bool> {
        let path = self.path.clone();
        let cut = |e: std::io::Error| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                corrupt(&path, "cut short (no end block)")
            } else {
                Error::io("reading", &path, e)
            }
        };
        let mut header = [0u8; 12];
        self.input.read_exact(&mut header).map_err(cut)?;
        let word =
            |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
        let (elements, len, crc) = (word(0), word(4), word(8));
        let block = self.blocks;
        self.blocks += 1;
        if len > MAX_BLOCK {
            return Err(corrupt(&path, format!("block {block} claims {len} bytes")));
        }
        let mut body = vec![0u8; len as usize];
        self.input.read_exact(&mut body).map_err(cut)?;
        if crc32fast::hash(&body) != crc {
            return Err(corrupt(
                &path,
                format!("checksum mismatch in block {block}"),
            ));
        }
        if elements == 0 {
            let total = body
                .try_into()
                .map(u64::from_le_bytes)
                .map_err(|_| corrupt(&path, "malformed end block"))?;
            if total != self.seen {
                return Err(corrupt(
                    &path,
                    format!("holds {} elements, its end block says {total}", self.seen),
                ));
            }
            self.ended = true;
            return Ok(false);
        }
        let mut at = &body[..];
        let mut out = Vec::with_capacity(elements as usize);
        for i in 0..elements {
            let x: T = bincode::deserialize_from(&mut at).map_err(|e| {
                corrupt(
                    &path,
                    format!("element {i} of block {block} does not decode: {e}"),
                )
            })?;
            out.push(x);
        }
        self.seen += u64::from(elements);
        self.block = out.into_iter();
        Ok(true)
    }
}

impl<T: DeserializeOwned> Iterator for ObjectReader<T> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        loop {
            if let Some(x) = self.block.next() {
                return Some(Ok(x));
            }
            if self.ended {
                return None;
            }
            match self.next_block() {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => {
                    self.ended = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("spate-objfile-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn write(path: &Path, n: u64) {
        let mut w = ObjectWriter::create(path).expect("create");
        for i in 0..n {
            w.push(&(i, format!("element {i}"))).expect("push");
        }
        assert_eq!(w.finish().expect("finish"), n);
    }

    fn read(path: &Path) -> Result<Vec<(u64, String)>> {
        ObjectReader::open(path)?.collect()
    }

    #[test]
    fn elements_round_trip_across_blocks() {
        let d = dir("round");
        let p = d.join("part-00000");
        write(&p, 50_000);
        let back = read(&p).expect("read");
        assert_eq!(back.len(), 50_000);
        assert_eq!(back[49_999], (49_999, "element 49999".to_string()));
        assert!(std::fs::metadata(&p).expect("file").len() > 2 * BLOCK_BYTES as u64);
        write(&d.join("empty"), 0);
        assert!(read(&d.join("empty")).expect("read").is_empty());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn an_unfinished_writer_leaves_nothing() {
        let d = dir("unfinished");
        let p = d.join("part-00001");
        {
            let mut w = ObjectWriter::create(&p).expect("create");
            w.push(&1u32).expect("push");
        }
        assert!(!p.exists());
        assert_eq!(
            std::fs::read_dir(&d).expect("dir").count(),
            0,
            "temporary removed"
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn damage_is_named_with_file_and_block() {
        let d = dir("damage");
        let p = d.join("part-00002");
        write(&p, 50_000);
        let mut bytes = std::fs::read(&p).expect("read");
        let at = 8 + 12 + BLOCK_BYTES + 100; // inside block 1's body
        bytes[at] ^= 0xff;
        std::fs::write(&p, &bytes).expect("write");
        let e = read(&p).expect_err("damaged").to_string();
        assert!(
            e.contains("part-00002") && e.contains("checksum mismatch in block 1"),
            "{e}"
        );
        let cut = &bytes[..bytes.len() - 10];
        std::fs::write(&p, cut).expect("write");
        let e = read(&p).expect_err("cut").to_string();
        assert!(e.contains("cut short") || e.contains("checksum"), "{e}");
        std::fs::write(&p, b"hello world, not an object file").expect("write");
        let e = read(&p).expect_err("foreign").to_string();
        assert!(e.contains("bad magic"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
