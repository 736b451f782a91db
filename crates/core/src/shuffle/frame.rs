//! Shuffle frames: how map outputs are encoded for disk and the network.
//!
//! A reduce partition's share of a map output (a *segment*) is a sequence of frames
//! `[u32 length][u32 crc32 of the body][body]`, the body being `[u64 records][u32
//! uncompressed length][lz4 block]` of one encoded `Vec<R>` of about [`FRAME_BYTES`].
//! Frames are self-contained, so spills and segments concatenate as bytes, and small, so
//! encoding, compressing and decoding one stays in cache. The record count in the clear
//! lets a reader size its output from the headers alone ([`segment_records`]).
//!
//! [`EncodingBuckets`] is the map side's fast path for stores that keep bytes: each
//! record is encoded into its reduce partition's open frame the moment it is produced
//! (while it is still in cache, and dropped right after) instead of being buffered as an
//! object and encoded later.

use crate::error::{Error, Result};
use serde::Serialize;
use std::io::Write;

/// Encoded bytes per frame: small enough that a frame's encoding, compression and
/// decoding stay in cache, large enough for lz4 to find its matches.
pub const FRAME_BYTES: usize = 64 << 10;

/// Bytes the open frames of one map task may take together: with many reduce partitions
/// frames get smaller (down to [`MIN_FRAME_BYTES`]) rather than the buffers larger.
const OPEN_FRAMES_BYTES: usize = 4 << 20;
const MIN_FRAME_BYTES: usize = 4 << 10;

/// The length prefix of an encoded `Vec<R>` (bincode: a little-endian u64), copied into
/// the frame's body as its record count.
const COUNT_BYTES: usize = 8;

/// A frame body's header: record count and uncompressed length.
const BODY_HEADER: usize = COUNT_BYTES + 4;

/// Writes frames, keeping its compression buffer across them.
#[derive(Default)]
pub struct FrameWriter {
    compressed: Vec<u8>,
}

impl FrameWriter {
    /// Compress `encoded` (an encoded `Vec<R>`) and write it to `out` as one frame;
    /// returns the frame's length.
    pub fn write(&mut self, out: &mut impl Write, encoded: &[u8]) -> std::io::Result<u64> {
        let body = self.compress(encoded)?;
        write_frame(out, body)
    }

    /// [`FrameWriter::write`] onto the end of `seg`.
    pub fn write_segment(&mut self, seg: &mut Segment, encoded: &[u8]) -> std::io::Result<u64> {
        let body = self.compress(encoded)?;
        let len = write_frame(seg.piece_for(body.len() + 8), body)?;
        seg.len += len as usize;
        Ok(len)
    }

    /// A frame's body for `encoded`, in this writer's buffer.
    fn compress(&mut self, encoded: &[u8]) -> std::io::Result<&[u8]> {
        let Some(records) = encoded.first_chunk::<COUNT_BYTES>() else {
            return Err(std::io::Error::other(
                "shuffle frame without its record count",
            ));
        };
        let need = BODY_HEADER + lz4_flex::block::get_maximum_output_size(encoded.len());
        if self.compressed.len() < need {
            self.compressed.resize(need, 0);
        }
        let len32 = |n: usize| {
            u32::try_from(n).map_err(|_| std::io::Error::other("shuffle frame over 4 GiB"))
        };
        self.compressed[..COUNT_BYTES].copy_from_slice(records);
        self.compressed[COUNT_BYTES..BODY_HEADER]
            .copy_from_slice(&len32(encoded.len())?.to_le_bytes());
        let len = BODY_HEADER
            + lz4_flex::block::compress_into(encoded, &mut self.compressed[BODY_HEADER..])
                .map_err(std::io::Error::other)?;
        len32(len)?;
        Ok(&self.compressed[..len])
    }
}

/// Write the frame of `body` (header, then body); returns its length.
fn write_frame(out: &mut impl Write, body: &[u8]) -> std::io::Result<u64> {
    out.write_all(&(body.len() as u32).to_le_bytes())?;
    out.write_all(&crc32fast::hash(body).to_le_bytes())?;
    out.write_all(body)?;
    Ok(body.len() as u64 + 8)
}

/// One reduce partition's frames as a map task builds them: in pieces that each hold
/// whole frames, allocated in growing sizes, so that a segment grows without being
/// reallocated (no copy, and no page written twice; a growing vector measured 3 % of
/// `shuffle_bench`). Pieces concatenate as bytes into the segment.
#[derive(Default, Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pieces: Vec<Vec<u8>>,
    len: usize,
}

/// Sizes of a segment's first and largest pieces.
const FIRST_PIECE: usize = 16 << 10;
const MAX_PIECE: usize = 1 << 20;

impl Segment {
    /// Bytes of frames.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds no frame.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The pieces, in order.
    pub fn pieces(&self) -> &[Vec<u8>] {
        &self.pieces
    }

    /// The pieces, in order, taken over.
    pub fn into_pieces(self) -> Vec<Vec<u8>> {
        self.pieces
    }

    /// All its bytes in one buffer.
    pub fn to_vec(&self) -> Vec<u8> {
        self.pieces.concat()
    }

    /// The piece to append `n` bytes to: the last one when it has room, else a new one
    /// (twice the last one's size, up to [`MAX_PIECE`], and at least `n`).
    fn piece_for(&mut self, n: usize) -> &mut Vec<u8> {
        let room = self
            .pieces
            .last()
            .is_some_and(|p| p.capacity() - p.len() >= n);
        if !room {
            let next = self
                .pieces
                .last()
                .map_or(FIRST_PIECE, |p| (p.capacity() * 2).min(MAX_PIECE));
            self.pieces.push(Vec::with_capacity(next.max(n)));
        }
        let last = self.pieces.len() - 1;
        &mut self.pieces[last]
    }
}

/// A segment whose checksum or compression does not verify.
#[derive(Debug, PartialEq, Eq)]
pub struct Corrupt(pub String);

/// Check every frame's header and checksum, so that a damaged segment is reported when it
/// is fetched (its map output is then recomputed) while decompression is left to the
/// reader, frame by frame. Cheap: the checksum runs over the compressed bytes.
pub fn verify_segment(seg: &[u8]) -> std::result::Result<(), Corrupt> {
    let mut rest = seg;
    while !rest.is_empty() {
        let (body, tail) = split_frame(rest)?;
        let want = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        let got = crc32fast::hash(body);
        if want != got {
            return Err(Corrupt(format!(
                "checksum mismatch (stored {want:08x}, computed {got:08x})"
            )));
        }
        rest = tail;
    }
    Ok(())
}

/// The records in a segment, from its frames' headers (nothing is decompressed).
pub fn segment_records(seg: &[u8]) -> std::result::Result<u64, Corrupt> {
    let (mut rest, mut records) = (seg, 0u64);
    while !rest.is_empty() {
        let (body, tail) = split_frame(rest)?;
        records = records.saturating_add(frame_records(body)?);
        rest = tail;
    }
    Ok(records)
}

/// The record count at the start of a frame's body.
fn frame_records(body: &[u8]) -> std::result::Result<u64, Corrupt> {
    match body.first_chunk::<COUNT_BYTES>() {
        Some(n) => Ok(u64::from_le_bytes(*n)),
        None => Err(Corrupt("frame without its record count".into())),
    }
}

/// The body of the frame at the start of `rest`, and what follows it.
fn split_frame(rest: &[u8]) -> std::result::Result<(&[u8], &[u8]), Corrupt> {
    if rest.len() < 8 {
        return Err(Corrupt(format!(
            "truncated frame header ({} bytes)",
            rest.len()
        )));
    }
    let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    match rest.get(8..8 + len) {
        Some(body) => Ok((body, &rest[8 + len..])),
        None => Err(Corrupt(format!(
            "frame of {len} bytes runs past the segment"
        ))),
    }
}

/// Decompress the frame of `seg` at `*pos` into `out` (a buffer the caller reuses) and
/// move `*pos` past it; returns the records its header announces. The segment should
/// have passed [`verify_segment`].
pub fn next_frame(
    seg: &[u8],
    pos: &mut usize,
    out: &mut Vec<u8>,
) -> std::result::Result<u64, Corrupt> {
    let (body, tail) = split_frame(seg.get(*pos..).unwrap_or_default())?;
    let records = frame_records(body)?;
    let Some((size, block)) = body
        .get(COUNT_BYTES..)
        .and_then(<[u8]>::split_first_chunk::<4>)
    else {
        return Err(Corrupt("frame without its size".into()));
    };
    let size = u32::from_le_bytes(*size) as usize;
    // Only a growing buffer is zero-filled (its new part); decompression overwrites it.
    out.resize(size, 0);
    let n = lz4_flex::block::decompress_into(block, out)
        .map_err(|e| Corrupt(format!("decompression failed: {e}")))?;
    if n != size {
        return Err(Corrupt(format!(
            "frame decompressed to {n} bytes, not {size}"
        )));
    }
    *pos = seg.len() - tail.len();
    Ok(records)
}

/// Verify a segment and decompress all its frames: one encoded `Vec<R>` per frame.
pub fn decode_segment(seg: &[u8]) -> std::result::Result<Vec<Vec<u8>>, Corrupt> {
    verify_segment(seg)?;
    let (mut chunks, mut pos) = (Vec::new(), 0);
    while pos < seg.len() {
        let mut chunk = Vec::new();
        next_frame(seg, &mut pos, &mut chunk)?;
        chunks.push(chunk);
    }
    Ok(chunks)
}

/// All records of a segment (for tests and tools; reduce tasks decode frame by frame).
pub fn decode_records<R: serde::de::DeserializeOwned>(seg: &[u8]) -> Result<Vec<R>> {
    let mut out = Vec::new();
    for chunk in decode_segment(seg).map_err(|c| Error::Other(c.0))? {
        out.extend(
            crate::ship::codec::from_slice::<Vec<R>>(&chunk)
                .map_err(|e| Error::Other(format!("decoding a shuffle frame: {e}")))?,
        );
    }
    Ok(out)
}

/// One map output chunk as frames: `segments[r]` (possibly empty) for reduce partition
/// `r`, holding `records[r]` records.
pub struct EncodedChunk {
    /// Per reduce partition, its frames.
    pub segments: Vec<Segment>,
    /// Per reduce partition, its record count.
    pub records: Vec<u64>,
}

/// Encodes a map task's records straight into per-reduce-partition frames.
pub struct EncodingBuckets {
    /// Per reduce partition: its open frame (`[u64 count]` then encoded records).
    open: Vec<Vec<u8>>,
    /// Records in each open frame.
    counts: Vec<u64>,
    chunk: EncodedChunk,
    frame_bytes: usize,
    writer: FrameWriter,
    /// Bytes held: closed frames plus the open ones.
    held: usize,
}

impl EncodingBuckets {
    /// Buckets for `reduces` reduce partitions.
    pub fn new(reduces: usize) -> Self {
        let frame_bytes = (OPEN_FRAMES_BYTES / reduces.max(1)).clamp(MIN_FRAME_BYTES, FRAME_BYTES);
        EncodingBuckets {
            open: (0..reduces).map(|_| Vec::new()).collect(),
            counts: vec![0; reduces],
            chunk: EncodedChunk {
                segments: (0..reduces).map(|_| Segment::default()).collect(),
                records: vec![0; reduces],
            },
            frame_bytes,
            writer: FrameWriter::default(),
            held: 0,
        }
    }

    /// Encode `record` for reduce partition `r`.
    #[inline]
    pub fn push<R: Serialize>(&mut self, r: usize, record: &R) -> Result<()> {
        let Some(buf) = self.open.get_mut(r) else {
            return Err(Error::Other(format!(
                "partitioner chose reduce partition {r} of {}",
                self.open.len()
            )));
        };
        let before = buf.len();
        if buf.is_empty() {
            buf.reserve(self.frame_bytes + self.frame_bytes / 8);
            buf.extend_from_slice(&[0; COUNT_BYTES]);
        }
        crate::ship::codec::to_writer(buf, record)
            .map_err(|e| Error::Other(format!("encoding a shuffle record: {e}")))?;
        self.held += buf.len() - before;
        self.counts[r] += 1;
        if buf.len() >= self.frame_bytes {
            self.close(r)?;
        }
        Ok(())
    }

    /// Bytes held: closed frames plus what the open ones hold.
    pub fn held_bytes(&self) -> usize {
        self.held
    }

    /// Close every open frame and hand over the chunk.
    pub fn finish(mut self) -> Result<EncodedChunk> {
        for r in 0..self.open.len() {
            self.close(r)?;
        }
        Ok(self.chunk)
    }

    fn close(&mut self, r: usize) -> Result<()> {
        let count = std::mem::take(&mut self.counts[r]);
        if count == 0 {
            return Ok(());
        }
        let buf = &mut self.open[r];
        buf[..COUNT_BYTES].copy_from_slice(&count.to_le_bytes());
        let segment = &mut self.chunk.segments[r];
        let len = self
            .writer
            .write_segment(segment, buf)
            .map_err(|e| Error::Other(format!("compressing a shuffle frame: {e}")))?;
        self.held = self.held + len as usize - buf.len();
        buf.clear();
        self.chunk.records[r] += count;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode<R: serde::de::DeserializeOwned>(seg: &[u8]) -> Vec<R> {
        decode_records(seg).expect("decodes")
    }

    #[test]
    fn encoded_buckets_decode_to_what_was_pushed_in_order() {
        // 3 partitions; enough records that partition 0 closes many frames.
        let mut b = EncodingBuckets::new(3);
        let mut want: Vec<Vec<(u64, String)>> = vec![Vec::new(); 3];
        for i in 0..20_000u64 {
            let r = (i % 7 % 3) as usize;
            let rec = (i, "x".repeat((i % 50) as usize));
            b.push(r, &rec).expect("push");
            want[r].push(rec);
        }
        let closed: usize = b.chunk.segments.iter().map(Segment::len).sum();
        let open: usize = b.open.iter().map(Vec::len).sum();
        assert!(closed > 0 && open > 0);
        assert_eq!(
            b.held_bytes(),
            closed + open,
            "held bytes are counted exactly"
        );
        let chunk = b.finish().expect("finish");
        for ((seg, n), want) in chunk.segments.iter().zip(&chunk.records).zip(&want) {
            assert_eq!(*n, want.len() as u64);
            assert!(seg.pieces().len() > 1, "a segment grows in pieces");
            let seg = &seg.to_vec();
            assert_eq!(segment_records(seg), Ok(*n), "headers count every frame");
            assert!(decode_segment(seg).expect("ok").len() > 1, "several frames");
            assert_eq!(&decode::<(u64, String)>(seg), want);
        }
    }

    #[test]
    fn empty_partitions_have_empty_segments_and_bad_partitions_are_errors() {
        let mut b = EncodingBuckets::new(4);
        b.push(2, &7u32).expect("push");
        let err = b.push(4, &1u32).expect_err("no partition 4");
        assert!(err.to_string().contains("reduce partition 4 of 4"), "{err}");
        let chunk = b.finish().expect("finish");
        assert_eq!(chunk.records, vec![0, 0, 1, 0]);
        assert!(chunk.segments[0].is_empty() && chunk.segments[3].is_empty());
        assert_eq!(decode::<u32>(&chunk.segments[2].to_vec()), vec![7]);
    }

    #[test]
    fn frames_are_smaller_with_many_partitions() {
        assert_eq!(EncodingBuckets::new(1).frame_bytes, FRAME_BYTES);
        assert_eq!(EncodingBuckets::new(10_000).frame_bytes, MIN_FRAME_BYTES);
    }

    #[test]
    fn corrupt_frames_are_named() {
        let mut seg = Vec::new();
        FrameWriter::default()
            .write(
                &mut seg,
                &crate::ship::codec::to_vec(&vec![1u8, 2, 3]).expect("enc"),
            )
            .expect("write");
        assert_eq!(decode::<u8>(&seg), vec![1, 2, 3]);
        let mut flipped = seg.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(
            decode_segment(&flipped)
                .expect_err("crc")
                .0
                .contains("checksum")
        );
        assert!(
            decode_segment(&seg[..seg.len() - 1])
                .expect_err("short")
                .0
                .contains("runs past")
        );
        assert!(
            decode_segment(&[1, 2])
                .expect_err("header")
                .0
                .contains("truncated")
        );
        // A frame too short to hold its record count: the checksum passes, the header not.
        let body = [7u8, 0, 0];
        let mut short = (body.len() as u32).to_le_bytes().to_vec();
        short.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        short.extend_from_slice(&body);
        assert!(
            segment_records(&short)
                .expect_err("count")
                .0
                .contains("record count")
        );
        assert!(
            decode_segment(&short)
                .expect_err("count")
                .0
                .contains("record count")
        );
        assert!(
            FrameWriter::default()
                .write(&mut Vec::new(), &[1, 2])
                .expect_err("no count")
                .to_string()
                .contains("record count")
        );
    }
}
