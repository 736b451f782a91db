//! Helpers for text jobs. [`words`] splits a line into [`Word`]s without a heap allocation
//! per word: a `Word` stores up to 24 bytes inline, which covers almost every word of
//! natural text, and it hashes and compares like the `&str` it holds.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

use compact_str::CompactString;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A short string stored inline (heap only beyond 24 bytes). It hashes, orders and
/// serializes like the `str` it holds (so maps keyed by `Word` can be queried with a
/// `&str`), derefs to `str`, and compares equal words without a call to `memcmp`: word
/// counts compare a key on nearly every record, and for words of a few bytes the call
/// cost more than the comparison.
#[derive(Clone, Default, PartialOrd, Ord)]
pub struct Word(CompactString);

impl Word {
    /// A word holding `s`.
    #[inline]
    pub fn new(s: &str) -> Self {
        Word(CompactString::new(s))
    }

    /// The word as a `&str`.
    #[inline]
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

/// `a == b` for short byte strings with a few word-sized loads instead of a call.
#[inline(always)]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let load8 = |s: &[u8], i: usize| u64::from_le_bytes(s[i..i + 8].try_into().unwrap_or([0; 8]));
    let load4 = |s: &[u8], i: usize| u32::from_le_bytes(s[i..i + 4].try_into().unwrap_or([0; 4]));
    match n {
        0 => true,
        1..=3 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        4..=7 => load4(a, 0) == load4(b, 0) && load4(a, n - 4) == load4(b, n - 4),
        8..=16 => load8(a, 0) == load8(b, 0) && load8(a, n - 8) == load8(b, n - 8),
        _ => a == b,
    }
}

impl PartialEq for Word {
    #[inline]
    fn eq(&self, other: &Word) -> bool {
        same_bytes(self.as_bytes(), other.as_bytes())
    }
}
impl Eq for Word {}

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
        Word(CompactString::from(s))
    }
}

impl From<Word> for String {
    fn from(w: Word) -> String {
        w.0.into_string()
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
        CompactString::deserialize(d).map(Word)
    }
}

static SPACE: [bool; 256] = {
    let mut t = [false; 256];
    t[b' ' as usize] = true;
    t[b'\t' as usize] = true;
    t[b'\n' as usize] = true;
    t[0x0b] = true;
    t[0x0c] = true;
    t[b'\r' as usize] = true;
    t
};
#[inline(always)]
fn is_space(b: u8) -> bool {
    SPACE[b as usize]
}

/// The words of `line`, split on ASCII whitespace. Takes the line by value so it can be
/// used directly with `flat_map`:
///
/// ```
/// # let ctx = spate::Context::builder().master("local[2]").build()?;
/// use spate::text::words;
/// let w = ctx.parallelize(vec!["to be  or\tnot".to_string()], 1).flat_map(words).collect()?;
/// assert_eq!(w, vec!["to", "be", "or", "not"]);
/// # Ok::<(), spate::Error>(())
/// ```
pub fn words(line: String) -> Words {
    Words { line, pos: 0 }
}

/// Iterator returned by [`words`].
pub struct Words {
    line: String,
    pos: usize,
}

impl Iterator for Words {
    type Item = Word;

    #[inline]
    fn next(&mut self) -> Option<Word> {
        let bytes = self.line.as_bytes();
        let mut i = self.pos;
        while i < bytes.len() && is_space(bytes[i]) {
            i += 1;
        }
        if i >= bytes.len() {
            self.pos = i;
            return None;
        }
        let start = i;
        while i < bytes.len() && !is_space(bytes[i]) {
            i += 1;
        }
        self.pos = i;
        // Both ends sit next to ASCII bytes (or the ends of the string), so they are
        // char boundaries.
        Some(Word::new(&self.line[start..i]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            "abcdefghijklmnop",
            "abcdefghijklmnopq",
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
        let mut m = HashMap::new();
        m.insert(Word::new("key"), 1);
        assert_eq!(m.get("key"), Some(&1));
        let bytes = crate::ship::codec::to_vec(&Word::new("héllo")).expect("encode");
        assert_eq!(bytes, crate::ship::codec::to_vec(&"héllo").expect("encode"));
        assert_eq!(words("   ".to_string()).count(), 0);
    }
}
