//! RecordIO: `LENGTH "\n" BYTES`, repeated, where LENGTH is ASCII decimal. HTTP chunk
//! boundaries have nothing to do with record boundaries, so the decoder buffers and hands
//! out records as they complete.

use bytes::{Buf, Bytes, BytesMut};

/// Default cap on one record (Mesos events are far smaller; a bigger one means a broken
/// stream).
pub const DEFAULT_MAX_RECORD: usize = 64 << 20;

/// The stream is corrupt: drop the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordIoError {
    /// A length that is not a decimal number.
    #[error("corrupt RecordIO stream: record length {0:?} is not a decimal number")]
    BadLength(String),
    /// A length over the cap.
    #[error("corrupt RecordIO stream: record of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Announced length.
        len: u64,
        /// The cap.
        max: usize,
    },
}

/// Streaming decoder.
pub struct Decoder {
    buf: BytesMut,
    max: usize,
    /// Length of the record whose header was read, waiting for its bytes.
    pending: Option<usize>,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(DEFAULT_MAX_RECORD)
    }
}

impl Decoder {
    /// A decoder refusing records over `max` bytes.
    pub fn new(max: usize) -> Self {
        Decoder {
            buf: BytesMut::new(),
            max,
            pending: None,
        }
    }

    /// Add bytes as they arrive.
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The next complete record, `Ok(None)` until one is complete.
    pub fn next_record(&mut self) -> Result<Option<Bytes>, RecordIoError> {
        if self.pending.is_none() {
            // A u64 has at most 20 digits: a longer header without a newline is garbage.
            let Some(nl) = self.buf.iter().position(|&b| b == b'\n') else {
                if self.buf.len() > 20 || !self.buf.iter().all(u8::is_ascii_digit) {
                    return Err(RecordIoError::BadLength(
                        String::from_utf8_lossy(&self.buf[..self.buf.len().min(24)]).into_owned(),
                    ));
                }
                return Ok(None);
            };
            let digits = &self.buf[..nl];
            if digits.is_empty() || digits.len() > 20 || !digits.iter().all(u8::is_ascii_digit) {
                return Err(RecordIoError::BadLength(
                    String::from_utf8_lossy(&digits[..digits.len().min(24)]).into_owned(),
                ));
            }
            let len: u64 = std::str::from_utf8(digits)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| {
                    RecordIoError::BadLength(String::from_utf8_lossy(digits).into_owned())
                })?;
            if len > self.max as u64 {
                return Err(RecordIoError::TooLarge { len, max: self.max });
            }
            self.buf.advance(nl + 1);
            self.pending = Some(len as usize);
        }
        match self.pending {
            Some(len) if self.buf.len() >= len => {
                self.pending = None;
                Ok(Some(self.buf.split_to(len).freeze()))
            }
            _ => Ok(None),
        }
    }
}

/// Frame one record.
pub fn encode(record: &[u8]) -> Vec<u8> {
    let mut out = format!("{}\n", record.len()).into_bytes();
    out.extend_from_slice(record);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(records: &[&[u8]]) -> Vec<u8> {
        records.iter().flat_map(|r| encode(r)).collect()
    }

    #[test]
    fn records_survive_any_chunking_including_empty_ones() {
        let records: Vec<&[u8]> = vec![
            b"{\"type\":\"HEARTBEAT\"}",
            b"",
            b"x",
            &[0u8; 300],
            b"\n\n12\n",
        ];
        let bytes = stream(&records);
        assert!(bytes.starts_with(b"20\n{\"type\""), "exact framing");
        for chunk in [1, 2, 3, 5, 17, 64, bytes.len()] {
            let mut d = Decoder::default();
            let mut got: Vec<Vec<u8>> = Vec::new();
            for c in bytes.chunks(chunk) {
                d.push(c);
                while let Some(r) = d.next_record().expect("valid stream") {
                    got.push(r.to_vec());
                }
            }
            assert_eq!(
                got,
                records.iter().map(|r| r.to_vec()).collect::<Vec<_>>(),
                "chunk size {chunk}"
            );
        }
    }

    #[test]
    fn garbage_lengths_are_errors() {
        for bad in [
            &b"x\nabc"[..],
            b"-1\n",
            b" 3\nabc",
            b"\nabc",
            b"3\r\nabc",
            b"123456789012345678901234\n",
        ] {
            let mut d = Decoder::default();
            d.push(bad);
            assert!(
                matches!(d.next_record(), Err(RecordIoError::BadLength(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut d = Decoder::default();
        d.push(b"99999999999999999999999");
        assert!(
            d.next_record().is_err(),
            "over-long header without a newline"
        );
    }

    #[test]
    fn the_cap_is_enforced_before_buffering() {
        let mut d = Decoder::new(10);
        d.push(b"11\n");
        assert_eq!(
            d.next_record(),
            Err(RecordIoError::TooLarge { len: 11, max: 10 })
        );
        let mut d = Decoder::new(10);
        d.push(b"10\n0123456789");
        assert_eq!(
            d.next_record().expect("ok").as_deref(),
            Some(&b"0123456789"[..])
        );
    }

    #[test]
    fn incomplete_is_not_an_error() {
        let mut d = Decoder::default();
        d.push(b"12");
        assert_eq!(d.next_record(), Ok(None));
        d.push(b"\nhello");
        assert_eq!(d.next_record(), Ok(None));
        d.push(b" world!");
        assert_eq!(
            d.next_record().expect("ok").as_deref(),
            Some(&b"hello world!"[..])
        );
    }
}
