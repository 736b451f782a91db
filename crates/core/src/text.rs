//! Helpers for text jobs. [`words`] splits a line into [`Word`]s without a heap allocation
//! per word: a `Word` stores up to 24 bytes inline, which covers almost every word of
//! natural text, and it hashes and compares like the `&str` it holds.

/// A short string stored inline (heap only beyond 24 bytes). Serializes as a string.
pub type Word = compact_str::CompactString;

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
}
