//! Helpers for text jobs. [`words`] splits a line into [`Word`]s without a heap allocation
//! per word: a `Word` stores up to 16 bytes inline, which covers almost every word of
//! natural text, and it hashes, orders and serializes like the `&str` it holds.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest word stored inline.
const INLINE: usize = 16;

/// A short string stored inline (heap only beyond 16 bytes). It hashes, orders and
/// serializes like the `str` it holds (so maps keyed by `Word` can be queried with a
/// `&str`) and derefs to `str`.
///
/// Built for the hot loop of word counts: a short word is made from the line with one
/// 16-byte load and a mask (no `memcpy` call, whose byte-wise stores stall the loads that
/// follow), it is three aligned machine words (written, moved and compared whole: an
/// enum layout put the text at an odd offset, and every move of a fresh word stalled),
/// and two short words compare equal with three word compares.
#[repr(C)]
pub struct Word {
    /// Inline: the text's first 8 bytes (in memory order). Heap: the `Box<str>`'s pointer.
    lo: Lo,
    /// Inline: bytes 8..16 (zero after the text). Heap: the length.
    hi: u64,
    /// Inline: the length (0..=16). Heap: [`HEAP`].
    meta: u64,
}

/// Which field is live is said by `Word::meta`.
#[derive(Clone, Copy)]
#[repr(C)]
union Lo {
    bytes: u64,
    ptr: *mut u8,
}

/// `Word::meta` of a word on the heap.
const HEAP: u64 = u64::MAX;

// SAFETY: a Word owns its text like a `Box<str>` (which is Send and Sync) or holds it
// inline; nothing is shared between Words (the raw pointer is why this is not automatic).
unsafe impl Send for Word {}
// SAFETY: see above; `&Word` only reads.
unsafe impl Sync for Word {}

impl Word {
    /// A word holding `s`.
    #[inline]
    pub fn new(s: &str) -> Self {
        if s.len() <= INLINE {
            let mut bytes = [0u8; INLINE];
            bytes[..s.len()].copy_from_slice(s.as_bytes());
            Word::inline(bytes, s.len())
        } else {
            Word::heap(s.into())
        }
    }

    /// An inline word; `bytes[..len]` must be UTF-8 and the rest zero (every caller
    /// copies them from a `str` between char boundaries).
    #[inline(always)]
    fn inline(bytes: [u8; INLINE], len: usize) -> Self {
        let (lo, hi) = bytes.split_at(8);
        Word {
            lo: Lo {
                bytes: u64::from_ne_bytes(lo.try_into().unwrap_or([0; 8])),
            },
            hi: u64::from_ne_bytes(hi.try_into().unwrap_or([0; 8])),
            meta: len as u64,
        }
    }

    fn heap(s: Box<str>) -> Self {
        let len = s.len() as u64;
        Word {
            lo: Lo {
                ptr: Box::into_raw(s) as *mut u8,
            },
            hi: len,
            meta: HEAP,
        }
    }

    /// The word `line[start..end]`, for tokenizers: a short word is read from the line
    /// with one 16-byte load (the bytes around it are masked off). An invalid range (out
    /// of bounds or not on char boundaries) gives an empty word.
    #[inline(always)]
    pub fn from_line(line: &str, start: usize, end: usize) -> Self {
        let b = line.as_bytes();
        let len = end.wrapping_sub(start);
        if len > INLINE
            || end > b.len()
            || !line.is_char_boundary(start)
            || !line.is_char_boundary(end)
        {
            return Word::new(line.get(start..end).unwrap_or_default());
        }
        let load = |at: usize| {
            b.get(at..at + INLINE)
                .and_then(|c| <[u8; INLINE]>::try_from(c).ok())
                .map(u128::from_le_bytes)
        };
        let chunk = if let Some(c) = load(start) {
            // The word, then whatever follows it: keep the low `len` bytes.
            c & u128::MAX
                .checked_shr(8 * (INLINE - len) as u32)
                .unwrap_or(0)
        } else if let Some(c) = end.checked_sub(INLINE).and_then(load) {
            // Near the end of the line: the 16 bytes ending with the word, shifted down.
            c.checked_shr(8 * (INLINE - len) as u32).unwrap_or(0)
        } else {
            return Word::new(line.get(start..end).unwrap_or_default());
        };
        Word::inline(chunk.to_le_bytes(), len)
    }

    #[inline(always)]
    fn is_heap(&self) -> bool {
        self.meta == HEAP
    }

    /// The word as a `&str`.
    #[inline]
    pub fn as_str(&self) -> &str {
        if self.is_heap() {
            // SAFETY: `lo.ptr` and `hi` are the pointer and length of a `Box<str>` this
            // Word owns (made by `Word::heap`, freed only in `drop`).
            unsafe {
                std::str::from_utf8_unchecked(std::slice::from_raw_parts(
                    self.lo.ptr,
                    self.hi as usize,
                ))
            }
        } else {
            let len = (self.meta as usize).min(INLINE);
            // SAFETY: `repr(C)` puts `lo` (8 bytes) and `hi` next to each other, so the 16
            // bytes from `lo` on are the inline text; `[..len]` is UTF-8 by
            // `Word::inline`'s contract.
            unsafe {
                let bytes = std::ptr::addr_of!(self.lo) as *const u8;
                std::str::from_utf8_unchecked(std::slice::from_raw_parts(bytes, len))
            }
        }
    }
}

impl Clone for Word {
    #[inline]
    fn clone(&self) -> Self {
        if self.is_heap() {
            Word::heap(self.as_str().into())
        } else {
            Word {
                lo: self.lo,
                hi: self.hi,
                meta: self.meta,
            }
        }
    }
}

impl Drop for Word {
    #[inline]
    fn drop(&mut self) {
        if self.is_heap() {
            // SAFETY: made by `Box::into_raw` of a `Box<str>` in `Word::heap`; dropped once.
            unsafe {
                let text = std::ptr::slice_from_raw_parts_mut(self.lo.ptr, self.hi as usize);
                drop(Box::from_raw(text as *mut str));
            }
        }
    }
}

impl PartialEq for Word {
    #[inline]
    fn eq(&self, other: &Word) -> bool {
        // Inline words are canonical (zero after the text), and a text fits inline
        // exactly when it is short, so the three words decide, except for two heap words.
        if self.meta != other.meta {
            return false;
        }
        if self.is_heap() {
            return self.as_str() == other.as_str();
        }
        // SAFETY: both inline (same meta, not HEAP): `lo.bytes` is the live field.
        unsafe { self.lo.bytes == other.lo.bytes && self.hi == other.hi }
    }
}
impl Eq for Word {}

impl Default for Word {
    fn default() -> Self {
        Word::new("")
    }
}

impl PartialOrd for Word {
    fn partial_cmp(&self, other: &Word) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Word {
    fn cmp(&self, other: &Word) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Hash for Word {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl Deref for Word {
    type Target = str;
    #[inline]
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for Word {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Word {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for Word {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

impl fmt::Debug for Word {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl From<&str> for Word {
    fn from(s: &str) -> Self {
        Word::new(s)
    }
}

impl From<String> for Word {
    fn from(s: String) -> Self {
        if s.len() <= INLINE {
            Word::new(&s)
        } else {
            Word::heap(s.into_boxed_str())
        }
    }
}

impl From<Word> for String {
    fn from(w: Word) -> String {
        w.as_str().to_owned()
    }
}

impl PartialEq<str> for Word {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Word {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Word {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl Serialize for Word {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Word {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = Word;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Word, E> {
                Ok(Word::new(s))
            }
            fn visit_string<E: serde::de::Error>(self, s: String) -> Result<Word, E> {
                Ok(Word::from(s))
            }
        }
        d.deserialize_str(Visit)
    }
}

/// Bit `i` set: byte `at + i` of `bytes` is ASCII whitespace (C `isspace`: space, `\t`,
/// `\n`, `\v`, `\f`, `\r`) or lies past the end. Scanning a line 64 bytes at a time
/// turns finding a word's ends into two bit scans instead of a loop per byte.
#[inline(always)]
fn space_mask(bytes: &[u8], at: usize) -> u64 {
    match bytes.get(at..at + 64) {
        Some(block) => space_mask_64(block.try_into().unwrap_or(&[b' '; 64])),
        None => {
            // The line's last block: pad with spaces, so a word ends at the end of the line.
            let mut block = [b' '; 64];
            let tail = bytes.get(at..).unwrap_or_default();
            block[..tail.len()].copy_from_slice(tail);
            space_mask_64(&block)
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn space_mask_64(block: &[u8; 64]) -> u64 {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8, _mm_sub_epi8,
    };
    let mut mask = 0u64;
    for (i, chunk) in block.chunks_exact(16).enumerate() {
        // SAFETY: SSE2 is part of the x86_64 baseline; the load reads exactly the 16 bytes
        // of `chunk` (unaligned load).
        let bits = unsafe {
            let x = _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>());
            let space = _mm_cmpeq_epi8(x, _mm_set1_epi8(b' ' as i8));
            // \t..=\r are 9..=13: x - 9 <= 4 as an unsigned byte.
            let shifted = _mm_sub_epi8(x, _mm_set1_epi8(9));
            let control = _mm_cmpeq_epi8(_mm_min_epu8(shifted, _mm_set1_epi8(4)), shifted);
            _mm_movemask_epi8(_mm_or_si128(space, control)) as u16
        };
        mask |= u64::from(bits) << (16 * i);
    }
    mask
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn space_mask_64(block: &[u8; 64]) -> u64 {
    block
        .iter()
        .enumerate()
        .fold(0u64, |m, (i, &b)| m | (u64::from(is_space(b)) << i))
}

#[cfg(any(test, not(target_arch = "x86_64")))]
#[inline(always)]
fn is_space(b: u8) -> bool {
    b == b' ' || b.wrapping_sub(9) <= 4
}

/// The words of `line`, split on ASCII whitespace (as C's `isspace`). Takes the line by
/// value so it can be used directly with `flat_map`:
///
/// ```
/// # let ctx = spate::Context::builder().master("local[2]").build()?;
/// use spate::text::words;
/// let w = ctx.parallelize(vec!["to be  or\tnot".to_string()], 1).flat_map(words).collect()?;
/// assert_eq!(w, vec!["to", "be", "or", "not"]);
/// # Ok::<(), spate::Error>(())
/// ```
///
/// The line is scanned 64 bytes at a time (SIMD on x86_64) and each word is copied into an
/// inline [`Word`]; no allocation per word.
pub fn words(line: String) -> Words {
    let spaces = space_mask(line.as_bytes(), 0);
    Words {
        line,
        pos: 0,
        block: 0,
        spaces,
    }
}

/// Iterator returned by [`words`].
pub struct Words {
    line: String,
    /// Where the search for the next word starts (inside the current block, or at its end).
    pos: usize,
    /// Start of the 64-byte block `spaces` describes.
    block: usize,
    /// Whitespace bits of the current block (see [`space_mask`]).
    spaces: u64,
}

impl Words {
    /// Move to the next 64-byte block; false past the end of the line.
    #[inline(always)]
    fn advance(&mut self) -> bool {
        self.block += 64;
        if self.block >= self.line.len() {
            return false;
        }
        self.spaces = space_mask(self.line.as_bytes(), self.block);
        true
    }
}

impl Iterator for Words {
    type Item = Word;

    #[inline]
    fn next(&mut self) -> Option<Word> {
        if self.pos >= self.line.len() {
            return None;
        }
        // The first non-space byte at or after `pos`.
        let start = loop {
            let off = self.pos - self.block;
            let words = if off < 64 {
                !self.spaces >> off << off
            } else {
                0
            };
            if words != 0 {
                break self.block + words.trailing_zeros() as usize;
            }
            if !self.advance() {
                self.pos = self.line.len();
                return None;
            }
            self.pos = self.block;
        };
        // The first space after it (bytes past the end count as spaces, so this ends).
        let end = loop {
            let off = start.max(self.block) - self.block;
            let ends = self.spaces >> off << off;
            if ends != 0 {
                break self.block + ends.trailing_zeros() as usize;
            }
            if !self.advance() {
                break self.line.len();
            }
        };
        self.pos = end;
        // Both ends sit next to ASCII bytes (or the ends of the string), so they are char
        // boundaries.
        Some(Word::from_line(&self.line, start, end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The obvious byte-at-a-time splitter, to check the block scanner against.
    fn oracle(line: &str) -> Vec<&str> {
        line.split(|c: char| c.is_ascii() && is_space(c as u8))
            .filter(|w| !w.is_empty())
            .collect()
    }

    #[test]
    fn block_scanner_matches_byte_scanner() {
        // Words and runs of whitespace of every length around the 64-byte block edges.
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let alphabet = [
            " ", "\t", "\n", "\x0b", "\x0c", "\r", "a", "b", "é", "\x08", "\x0e", "!", "~",
        ];
        for _ in 0..3000 {
            let len = next(300) as usize;
            let mut line = String::new();
            while line.len() < len {
                let long = next(4) == 0;
                let run = 1 + next(if long { 80 } else { 6 }) as usize;
                let c = alphabet[next(alphabet.len() as u64) as usize];
                line.push_str(&c.repeat(run));
            }
            let got: Vec<Word> = words(line.clone()).collect();
            assert_eq!(got, oracle(&line), "{line:?}");
        }
        for n in [63, 64, 65, 127, 128, 129] {
            let line = "x".repeat(n);
            assert_eq!(words(line.clone()).collect::<Vec<_>>(), vec![line.as_str()]);
            let spaced = format!("{} y", " ".repeat(n));
            assert_eq!(words(spaced).collect::<Vec<_>>(), vec!["y"]);
        }
    }

    #[test]
    fn from_line_takes_exactly_the_range() {
        let line = "héllo wörld, a bcdefghijklmnopqrstu 0123456789abcdef!";
        for start in 0..=line.len() {
            for end in start..=line.len() {
                let want = line.get(start..end).unwrap_or_default();
                let got = Word::from_line(line, start, end);
                assert_eq!(got, Word::new(want), "{start}..{end}");
                assert_eq!(got.as_str(), want, "{start}..{end}");
            }
        }
        assert_eq!(Word::from_line("abc", 2, 9), "");
        assert_eq!(Word::from_line("abc", 3, 1), "");
    }

    #[test]
    fn splits_like_isspace() {
        let w: Vec<Word> = words(" a\x0bb\x0c\r\ncé  d ".to_string()).collect();
        assert_eq!(w, vec!["a", "b", "cé", "d"]);
        assert_eq!(words(String::new()).count(), 0);
        assert_eq!(words("   ".to_string()).count(), 0);
    }

    #[test]
    fn words_compare_hash_and_order_like_their_text() {
        use std::collections::HashMap;
        let texts = [
            "",
            "a",
            "ab",
            "abc",
            "abcd",
            "abcdefg",
            "abcdefgh",
            "abcdefghijklmno",
            "abcdefghijklmnop",
            "abcdefghijklmnopq",
            "\0",
            "a\0",
            &"x".repeat(40),
        ];
        for a in texts {
            for b in texts {
                let (wa, wb) = (Word::new(a), Word::new(b));
                assert_eq!(wa == wb, a == b, "{a:?} {b:?}");
                assert_eq!(wa.cmp(&wb), a.cmp(b), "{a:?} {b:?}");
            }
            // same length, one byte differs, at every position
            for i in 0..a.len() {
                let mut other = a.as_bytes().to_vec();
                other[i] ^= 1;
                let other = String::from_utf8(other).expect("ascii");
                assert_ne!(Word::new(a), Word::new(&other), "{a:?} vs {other:?}");
            }
        }
        for t in texts {
            let w = Word::new(t);
            assert_eq!(Word::from(t.to_string()), w);
            assert_eq!(String::from(w.clone()), t);
            let bytes = crate::ship::codec::to_vec(&w).expect("encode");
            let back: Word = crate::ship::codec::from_slice(&bytes).expect("decode");
            assert_eq!(back, w);
        }
        assert_eq!(std::mem::size_of::<Word>(), 24);
        let mut m = HashMap::new();
        m.insert(Word::new("key"), 1);
        assert_eq!(m.get("key"), Some(&1));
        let bytes = crate::ship::codec::to_vec(&Word::new("héllo")).expect("encode");
        assert_eq!(bytes, crate::ship::codec::to_vec(&"héllo").expect("encode"));
        assert_eq!(words("   ".to_string()).count(), 0);
    }
}
