//! `text_file`: lines of text files, split into byte ranges aligned to lines.
//!
//! Paths are resolved on the driver before anything runs, so a missing path, a glob that
//! matches nothing or an unreadable file is an error naming it, not a failed task. A file
//! larger than the split size becomes several partitions. Each split owns the lines that
//! *start* inside `(start, end]` (plus the line at offset 0): a split starting mid-line
//! skips to the next newline, and a split reads past its end to finish its last line, so
//! every line is read exactly once. Compressed files (`.gz`, `.zst`) cannot be split and
//! are read whole.

use super::{Dependency, JobRunner, NodeMeta, PartIter, Rdd, RddBase, RddNode};
use crate::error::{Error, Result};
use crate::task::{TaskContext, raise};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How `text_file` splits its input.
#[derive(Clone, Debug)]
pub struct TextFileOptions {
    /// At least this many partitions (when files are large enough to split). Defaults to
    /// the context's default parallelism.
    pub min_partitions: Option<usize>,
    /// Largest split, in bytes (like an HDFS block). Default 32 MiB. Always honoured: a
    /// value below `min_split_bytes` lowers the minimum to it.
    pub max_split_bytes: u64,
    /// Smallest split, in bytes; keeps tiny files from being cut into slivers. Default 1 MiB.
    pub min_split_bytes: u64,
}

impl Default for TextFileOptions {
    fn default() -> Self {
        TextFileOptions {
            min_partitions: None,
            max_split_bytes: 32 << 20,
            min_split_bytes: 1 << 20,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct FileSplit {
    path: PathBuf,
    start: u64,
    /// Lines starting at offsets up to and including `end` belong to this split.
    end: u64,
    codec: Codec,
}

/// How a text file is stored. Compressed files cannot be split and are read whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Codec {
    /// Plain text.
    None,
    /// gzip (`.gz`), several members allowed.
    Gzip,
    /// Zstandard (`.zst`), several frames allowed.
    Zstd,
    /// bzip2 (`.bz2`), several streams allowed (as `pbzip2` writes).
    Bzip2,
}

impl Codec {
    /// The codec a file name says (`.gz`, `.zst`, `.bz2`), else plain text.
    pub fn of(path: &Path) -> Codec {
        match path.extension().and_then(|e| e.to_str()) {
            Some("gz") => Codec::Gzip,
            Some("zst") => Codec::Zstd,
            Some("bz2") => Codec::Bzip2,
            _ => Codec::None,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct TextFileNode {
    meta: NodeMeta,
    splits: Vec<FileSplit>,
}

impl RddBase for TextFileNode {
    fn meta(&self) -> &NodeMeta {
        &self.meta
    }
    fn num_partitions(&self) -> usize {
        self.splits.len()
    }
    fn dependencies(&self) -> Vec<Dependency> {
        Vec::new()
    }
}

impl RddNode<String> for TextFileNode {
    fn compute(self: Arc<Self>, split: usize, _tc: &TaskContext) -> PartIter<String> {
        match LineReader::open(&self.splits[split]) {
            Ok(r) => PartIter::new(r),
            Err(e) => raise(e),
        }
    }
}

fn has_glob_chars(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Files of a directory, sorted; hidden and `_`-prefixed entries (`_SUCCESS`, temp
/// files of an unfinished write) are skipped like Hadoop does.
fn list_dir(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io("listing directory", dir, e))?;
    let mut entries = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| Error::io("listing directory", dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        entries.push(entry.path());
    }
    entries.sort();
    for p in entries {
        if p.is_dir() {
            list_dir(&p, out)?;
        } else {
            out.push(p);
        }
    }
    Ok(())
}

/// Expand a path, directory or glob into the files to read, checking each is readable.
fn resolve_inputs(path: &str) -> Result<Vec<(PathBuf, u64)>> {
    let mut files = Vec::new();
    if has_glob_chars(path) {
        let matches = glob::glob(path).map_err(|e| Error::BadGlob {
            pattern: path.to_string(),
            message: e.to_string(),
        })?;
        let mut any = false;
        for m in matches {
            let p = m.map_err(|e| {
                Error::io("reading", e.path().to_path_buf(), std::io::Error::from(e))
            })?;
            any = true;
            if p.is_dir() {
                list_dir(&p, &mut files)?;
            } else {
                files.push(p);
            }
        }
        if !any {
            return Err(Error::GlobNoMatch(path.to_string()));
        }
    } else {
        let p = PathBuf::from(path);
        let meta = std::fs::metadata(&p).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::InputNotFound(p.clone()),
            _ => Error::io("opening", p.clone(), e),
        })?;
        if meta.is_dir() {
            list_dir(&p, &mut files)?;
        } else {
            files.push(p);
        }
    }
    files
        .into_iter()
        .map(|p| {
            // Opening proves readability now rather than in a task later.
            let f = File::open(&p).map_err(|e| Error::io("opening", p.clone(), e))?;
            let len = f
                .metadata()
                .map_err(|e| Error::io("reading metadata of", p.clone(), e))?
                .len();
            Ok((p, len))
        })
        .collect()
}

fn plan_splits(
    files: Vec<(PathBuf, u64)>,
    opts: &TextFileOptions,
    default_parallelism: usize,
) -> Vec<FileSplit> {
    let total: u64 = files.iter().map(|(_, len)| len).sum();
    let min_parts = opts.min_partitions.unwrap_or(default_parallelism).max(1) as u64;
    let goal = total.div_ceil(min_parts).max(1);
    // An explicit maximum wins over the minimum (asking for 1000-byte splits and getting
    // 1 MiB ones, silently, helps nobody).
    let max = opts.max_split_bytes.max(1);
    let min = opts.min_split_bytes.min(max);
    let split = goal.min(max).max(min).max(1);
    let mut splits = Vec::new();
    for (path, len) in files {
        let codec = Codec::of(&path);
        if codec != Codec::None || len == 0 {
            splits.push(FileSplit {
                path,
                start: 0,
                end: u64::MAX,
                codec,
            });
            continue;
        }
        let mut start = 0;
        // Like Hadoop's SPLIT_SLOP: do not leave a tail split under 10% of a split.
        while (len - start) as f64 / split as f64 > 1.1 {
            splits.push(FileSplit {
                path: path.clone(),
                start,
                end: start + split,
                codec,
            });
            start += split;
        }
        splits.push(FileSplit {
            path,
            start,
            end: len,
            codec,
        });
    }
    splits
}

/// Lines of `path` (a file, a directory of files, or a glob), one partition per split.
#[track_caller]
pub fn text_file(
    sc: Arc<dyn JobRunner>,
    path: &str,
    opts: &TextFileOptions,
) -> Result<Rdd<String>> {
    if opts.min_partitions == Some(0) {
        return Err(Error::InvalidArgument(
            "text_file: min_partitions must be at least 1".into(),
        ));
    }
    let files = resolve_inputs(path)?;
    let splits = plan_splits(files, opts, sc.default_parallelism());
    tracing::debug!(path, splits = splits.len(), "planned text file splits");
    let meta = NodeMeta::new(&*sc, "text_file");
    Ok(Rdd::from_node(sc, TextFileNode { meta, splits }))
}

/// `whole_text_files`: one `(path, content)` element per file, files grouped into
/// partitions of about equal bytes.
#[derive(Serialize, Deserialize)]
struct WholeTextFilesNode {
    meta: NodeMeta,
    groups: Vec<Vec<PathBuf>>,
}

impl RddBase for WholeTextFilesNode {
    fn meta(&self) -> &NodeMeta {
        &self.meta
    }
    fn num_partitions(&self) -> usize {
        self.groups.len()
    }
    fn dependencies(&self) -> Vec<Dependency> {
        Vec::new()
    }
}

impl RddNode<(String, String)> for WholeTextFilesNode {
    fn compute(self: Arc<Self>, split: usize, _tc: &TaskContext) -> PartIter<(String, String)> {
        let files = self.groups.get(split).cloned().unwrap_or_default();
        PartIter::new(files.into_iter().map(|path| {
            let content = read_whole(&path).unwrap_or_else(|e| raise(e));
            crate::metrics::record(|m| {
                m.input_records += 1;
                m.input_bytes += content.len() as u64;
            });
            (path.to_string_lossy().into_owned(), content)
        }))
    }
}

/// A whole file as text, decompressed by its extension.
fn read_whole(path: &Path) -> Result<String> {
    let file = File::open(path).map_err(|e| Error::io("opening", path, e))?;
    let mut reader: Box<dyn std::io::Read> = match Codec::of(path) {
        Codec::Gzip => Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(file))),
        Codec::Zstd => Box::new(
            zstd::stream::read::Decoder::new(file)
                .map_err(|e| Error::io("opening zstd stream", path, e))?,
        ),
        Codec::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(BufReader::new(file))),
        Codec::None => Box::new(file),
    };
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut reader, &mut bytes)
        .map_err(|e| Error::io("reading", path, e))?;
    String::from_utf8(bytes).map_err(|e| Error::InvalidUtf8 {
        path: path.to_path_buf(),
        offset: e.utf8_error().valid_up_to() as u64,
    })
}

/// Every file under `path` (a file, a directory or a glob, as for [`text_file`]) as one
/// `(path, content)` element, in `min_partitions` partitions (default: the context's
/// parallelism, at most one per file) of about equal total size.
#[track_caller]
pub fn whole_text_files(
    sc: Arc<dyn JobRunner>,
    path: &str,
    min_partitions: Option<usize>,
) -> Result<Rdd<(String, String)>> {
    if min_partitions == Some(0) {
        return Err(Error::InvalidArgument(
            "whole_text_files: min_partitions must be at least 1".into(),
        ));
    }
    let mut files = resolve_inputs(path)?;
    files.sort();
    let parts = min_partitions
        .unwrap_or_else(|| sc.default_parallelism())
        .clamp(1, files.len().max(1));
    // Largest first into the lightest partition, then each partition in path order.
    let mut by_size: Vec<&(PathBuf, u64)> = files.iter().collect();
    by_size.sort_by_key(|(_, len)| std::cmp::Reverse(*len));
    let mut groups: Vec<(u64, Vec<PathBuf>)> = vec![(0, Vec::new()); parts];
    for (p, len) in by_size {
        if let Some(g) = groups.iter_mut().min_by_key(|(bytes, _)| *bytes) {
            g.0 += len;
            g.1.push(p.clone());
        }
    }
    let mut groups: Vec<Vec<PathBuf>> = groups
        .into_iter()
        .map(|(_, mut g)| {
            g.sort();
            g
        })
        .collect();
    groups.sort();
    let meta = NodeMeta::new(&*sc, "whole_text_files");
    Ok(Rdd::from_node(sc, WholeTextFilesNode { meta, groups }))
}

struct LineReader {
    path: PathBuf,
    reader: Box<dyn BufRead>,
    /// Offset of the next unread byte (of the decompressed stream for gzip).
    pos: u64,
    end: u64,
    buf: Vec<u8>,
    done: bool,
    /// For the task's metrics: lines returned, and where this split's reading began.
    lines: u64,
    first: u64,
}

impl Drop for LineReader {
    fn drop(&mut self) {
        let (lines, bytes) = (self.lines, self.pos.saturating_sub(self.first));
        crate::metrics::record(|m| {
            m.input_records += lines;
            m.input_bytes += bytes;
        });
    }
}

impl LineReader {
    fn open(split: &FileSplit) -> Result<Self> {
        let mut file =
            File::open(&split.path).map_err(|e| Error::io("opening", split.path.clone(), e))?;
        let reader: Box<dyn BufRead> = match split.codec {
            Codec::Gzip => Box::new(BufReader::with_capacity(
                256 << 10,
                flate2::read::MultiGzDecoder::new(BufReader::with_capacity(256 << 10, file)),
            )),
            Codec::Zstd => Box::new(BufReader::with_capacity(
                256 << 10,
                zstd::stream::read::Decoder::new(file)
                    .map_err(|e| Error::io("opening zstd stream", split.path.clone(), e))?,
            )),
            Codec::Bzip2 => Box::new(BufReader::with_capacity(
                256 << 10,
                bzip2::read::MultiBzDecoder::new(BufReader::with_capacity(256 << 10, file)),
            )),
            Codec::None => {
                file.seek(SeekFrom::Start(split.start))
                    .map_err(|e| Error::io("seeking in", split.path.clone(), e))?;
                Box::new(BufReader::with_capacity(1 << 20, file))
            }
        };
        let mut r = LineReader {
            path: split.path.clone(),
            reader,
            pos: split.start,
            end: split.end,
            buf: Vec::with_capacity(256),
            done: false,
            lines: 0,
            first: split.start,
        };
        if split.start > 0 {
            // The line containing `start` (or starting exactly there) belongs to the
            // previous split.
            let n = r.read_line()?;
            r.pos += n as u64;
        }
        Ok(r)
    }

    fn read_line(&mut self) -> Result<usize> {
        self.buf.clear();
        self.reader
            .read_until(b'\n', &mut self.buf)
            .map_err(|e| Error::io("reading", self.path.clone(), e))
    }
}

impl LineReader {
    /// The next line's bytes with its `\n` (and the count of bytes consumed), borrowed from
    /// the reader's buffer when the whole line is in it (the common case: one copy per
    /// line, into the `String` returned), else assembled in `buf`.
    fn next_line_bytes(&mut self) -> Result<Option<(Vec<u8>, usize)>> {
        let available = self
            .reader
            .fill_buf()
            .map_err(|e| Error::io("reading", self.path.clone(), e))?;
        if available.is_empty() {
            return Ok(None);
        }
        if let Some(i) = memchr::memchr(b'\n', available) {
            let line = trim_eol(&available[..i]).to_vec();
            self.reader.consume(i + 1);
            return Ok(Some((line, i + 1)));
        }
        let n = self.read_line()?;
        Ok(Some((trim_eol(&self.buf).to_vec(), n)))
    }
}

/// A line without its `\n` or `\r\n`.
fn trim_eol(mut line: &[u8]) -> &[u8] {
    if let [rest @ .., b'\n'] = line {
        line = rest;
    }
    if let [rest @ .., b'\r'] = line {
        line = rest;
    }
    line
}

impl Iterator for LineReader {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        if self.done || self.pos > self.end {
            return None;
        }
        let line_start = self.pos;
        let (line, n) = match self.next_line_bytes() {
            Ok(Some(l)) => l,
            Ok(None) => {
                self.done = true;
                return None;
            }
            Err(e) => raise(e),
        };
        self.pos += n as u64;
        match String::from_utf8(line) {
            Ok(s) => {
                self.lines += 1;
                Some(s)
            }
            Err(e) => raise(Error::InvalidUtf8 {
                path: self.path.clone(),
                offset: line_start + e.utf8_error().valid_up_to() as u64,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(path: &Path, split_bytes: u64) -> Vec<String> {
        let len = std::fs::metadata(path).expect("test file").len();
        let opts = TextFileOptions {
            min_partitions: Some(1),
            max_split_bytes: split_bytes,
            min_split_bytes: 1,
        };
        let splits = plan_splits(vec![(path.to_path_buf(), len)], &opts, 1);
        let mut lines = Vec::new();
        for s in &splits {
            lines.extend(LineReader::open(s).expect("opens"));
        }
        lines
    }

    #[test]
    fn every_split_size_reads_each_line_once() {
        let dir = std::env::temp_dir().join(format!("spate-tf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp");
        let path = dir.join("lines.txt");
        let content = "alpha beta\n\ngamma\r\ndelta epsilon zeta\nlast-no-newline";
        std::fs::write(&path, content).expect("write");
        let want: Vec<String> = content.lines().map(str::to_string).collect();
        for split in 1..=content.len() as u64 + 2 {
            assert_eq!(read_all(&path, split), want, "split size {split}");
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_max_split_below_the_min_takes_effect() {
        let opts = TextFileOptions {
            min_partitions: Some(1),
            max_split_bytes: 1000,
            ..TextFileOptions::default()
        };
        let splits = plan_splits(vec![(PathBuf::from("big.txt"), 10_000)], &opts, 1);
        assert_eq!(splits.len(), 10, "1000-byte splits of 10 000 bytes");
        let defaults = plan_splits(
            vec![(PathBuf::from("big.txt"), 10_000)],
            &TextFileOptions::default(),
            4,
        );
        assert_eq!(
            defaults.len(),
            1,
            "the 1 MiB minimum still keeps small files whole"
        );
    }
}
