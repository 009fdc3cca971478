//! A streaming splitter for a top-level JSON array.
//!
//! It is fed the decrypted plaintext in chunks of any size and hands over each element's
//! bytes as soon as the element ends, so a file of a million sessions never has to be held in
//! memory. It checks the array's own structure (brackets, commas, nesting depth); each
//! element's contents are then parsed by `serde_json`, which checks the rest.

use zeroize::Zeroize;

/// Elements deeper than this are refused outright (the session format needs 3 levels).
pub const MAX_DEPTH: u32 = 64;
/// Elements larger than this are reported as oversized instead of being buffered.
pub const MAX_ELEMENT: usize = 1024 * 1024;

/// Why the bytes are not a JSON array.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} at byte {offset}")]
pub struct SplitError {
    /// Offset in the plaintext.
    pub offset: u64,
    /// What was wrong.
    pub what: String,
}

/// One element of the array.
#[derive(Debug)]
pub enum Element<'a> {
    /// A complete element's bytes.
    Value {
        /// Position in the array, from 0.
        index: usize,
        /// The element's JSON text.
        bytes: &'a [u8],
    },
    /// An element larger than [`MAX_ELEMENT`]; its bytes were skipped.
    Oversized {
        /// Position in the array, from 0.
        index: usize,
        /// Its size in bytes.
        size: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    Start,
    FirstValueOrEnd,
    Value,
    CommaOrEnd,
    NextValue,
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Container,
    String,
    Scalar,
}

/// The splitter's state between chunks.
pub struct ArraySplitter {
    st: St,
    kind: Kind,
    depth: u32,
    /// One bit per open bracket: 1 for '[', 0 for '{' (depth is capped at 64).
    stack: u64,
    in_string: bool,
    escape: bool,
    buf: Vec<u8>,
    size: u64,
    index: usize,
    offset: u64,
    max_element: usize,
}

impl std::fmt::Debug for ArraySplitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArraySplitter")
            .field("index", &self.index)
            .field("offset", &self.offset)
            .finish_non_exhaustive()
    }
}

impl Drop for ArraySplitter {
    fn drop(&mut self) {
        self.buf.zeroize();
    }
}

impl Default for ArraySplitter {
    fn default() -> Self {
        Self::new()
    }
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\r' | b'\t')
}

impl ArraySplitter {
    /// A splitter expecting the start of an array.
    pub fn new() -> Self {
        Self::with_max_element(MAX_ELEMENT)
    }

    /// A splitter with a different element size cap.
    pub fn with_max_element(max_element: usize) -> Self {
        ArraySplitter {
            st: St::Start,
            kind: Kind::Scalar,
            depth: 0,
            stack: 0,
            in_string: false,
            escape: false,
            buf: Vec::with_capacity(4096),
            size: 0,
            index: 0,
            offset: 0,
            max_element,
        }
    }

    fn err(&self, at: usize, what: impl Into<String>) -> SplitError {
        SplitError {
            offset: self.offset + at as u64,
            what: what.into(),
        }
    }

    /// Feed the next chunk; `emit` is called for every element that ends inside it.
    pub fn feed<E>(
        &mut self,
        chunk: &[u8],
        emit: &mut dyn FnMut(Element<'_>) -> Result<(), E>,
    ) -> Result<(), FeedError<E>> {
        let mut i = 0;
        while i < chunk.len() {
            let b = chunk[i];
            match self.st {
                St::Start => {
                    if b == b'[' {
                        self.st = St::FirstValueOrEnd;
                    } else if !is_ws(b) {
                        return Err(FeedError::Split(self.err(i, "expected '[' (a JSON array)")));
                    }
                    i += 1;
                }
                St::FirstValueOrEnd | St::NextValue => {
                    if is_ws(b) {
                        i += 1;
                    } else if b == b']' && self.st == St::FirstValueOrEnd {
                        self.st = St::End;
                        i += 1;
                    } else if b == b']' || b == b',' {
                        return Err(FeedError::Split(self.err(i, "expected a value")));
                    } else {
                        self.begin_value(b);
                        self.st = St::Value;
                        // the first byte is consumed by the value scanner below
                    }
                }
                St::Value => {
                    let (used, done) = self
                        .scan_value(&chunk[i..])
                        .map_err(|w| FeedError::Split(self.err(i, w)))?;
                    self.take(&chunk[i..i + used]);
                    i += used;
                    if done {
                        self.finish_value(emit)?;
                        self.st = St::CommaOrEnd;
                    }
                }
                St::CommaOrEnd => {
                    if b == b',' {
                        self.st = St::NextValue;
                    } else if b == b']' {
                        self.st = St::End;
                    } else if !is_ws(b) {
                        return Err(FeedError::Split(self.err(i, "expected ',' or ']'")));
                    }
                    i += 1;
                }
                St::End => {
                    if !is_ws(b) {
                        return Err(FeedError::Split(
                            self.err(i, "data after the end of the array"),
                        ));
                    }
                    i += 1;
                }
            }
        }
        self.offset += chunk.len() as u64;
        Ok(())
    }

    /// Declare the end of input; fails if the array is not closed.
    pub fn finish(&self) -> Result<usize, SplitError> {
        match self.st {
            St::End => Ok(self.index),
            St::Start => Err(self.err(0, "empty input, expected a JSON array")),
            _ => Err(self.err(0, "the JSON array is not closed (truncated?)")),
        }
    }

    fn begin_value(&mut self, b: u8) {
        self.kind = match b {
            b'{' | b'[' => Kind::Container,
            b'"' => Kind::String,
            _ => Kind::Scalar,
        };
        self.depth = 0;
        self.stack = 0;
        self.in_string = false;
        self.escape = false;
        self.size = 0;
        self.buf[..].zeroize();
        self.buf.clear();
    }

    fn take(&mut self, bytes: &[u8]) {
        self.size += bytes.len() as u64;
        if self.buf.len() + bytes.len() <= self.max_element {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// Scan value bytes; returns (bytes belonging to the value, value complete).
    fn scan_value(&mut self, s: &[u8]) -> Result<(usize, bool), String> {
        match self.kind {
            Kind::Scalar => {
                let end = s
                    .iter()
                    .position(|&b| {
                        is_ws(b) || b == b',' || b == b']' || b == b'[' || b == b'{' || b == b'"'
                    })
                    .unwrap_or(s.len());
                if end < s.len() && matches!(s[end], b'[' | b'{' | b'"') {
                    return Err("unexpected character after a value".into());
                }
                if self.size + end as u64 > 64 {
                    return Err("a scalar value is implausibly long".into());
                }
                Ok((end, end < s.len()))
            }
            Kind::String | Kind::Container => {
                let mut i = 0;
                while i < s.len() {
                    if self.in_string {
                        if self.escape {
                            self.escape = false;
                            i += 1;
                            continue;
                        }
                        // Jump over the string's ordinary bytes.
                        match memchr::memchr2(b'"', b'\\', &s[i..]) {
                            None => return Ok((s.len(), false)),
                            Some(k) => i += k,
                        }
                        if s[i] == b'\\' {
                            self.escape = true;
                        } else {
                            self.in_string = false;
                            if self.kind == Kind::String {
                                return Ok((i + 1, true));
                            }
                        }
                        i += 1;
                        continue;
                    }
                    let b = s[i];
                    match b {
                        b'"' => self.in_string = true,
                        b'{' | b'[' => {
                            if self.depth >= MAX_DEPTH {
                                return Err(format!("nested deeper than {MAX_DEPTH} levels"));
                            }
                            self.stack = (self.stack << 1) | u64::from(b == b'[');
                            self.depth += 1;
                        }
                        b'}' | b']' => {
                            if self.depth == 0 || (self.stack & 1 == 1) != (b == b']') {
                                return Err("mismatched brackets".into());
                            }
                            self.stack >>= 1;
                            self.depth -= 1;
                            if self.depth == 0 {
                                return Ok((i + 1, true));
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
                Ok((s.len(), false))
            }
        }
    }

    fn finish_value<E>(
        &mut self,
        emit: &mut dyn FnMut(Element<'_>) -> Result<(), E>,
    ) -> Result<(), FeedError<E>> {
        let index = self.index;
        self.index += 1;
        let r = if self.size as usize > self.max_element || self.buf.len() as u64 != self.size {
            emit(Element::Oversized {
                index,
                size: self.size,
            })
        } else {
            emit(Element::Value {
                index,
                bytes: &self.buf,
            })
        };
        self.buf[..].zeroize();
        self.buf.clear();
        r.map_err(FeedError::Sink)
    }
}

/// An error from [`ArraySplitter::feed`]: the array's structure, or the element sink.
#[derive(Debug)]
pub enum FeedError<E> {
    /// The bytes are not a JSON array.
    Split(SplitError),
    /// The sink failed.
    Sink(E),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(data: &[u8], chunk: usize) -> Result<Vec<String>, SplitError> {
        let mut s = ArraySplitter::with_max_element(100);
        let mut out = Vec::new();
        for c in data.chunks(chunk.max(1)) {
            s.feed::<()>(c, &mut |e| {
                out.push(match e {
                    Element::Value { bytes, .. } => String::from_utf8(bytes.to_vec()).unwrap(),
                    Element::Oversized { size, .. } => format!("<{size}>"),
                });
                Ok(())
            })
            .map_err(|e| match e {
                FeedError::Split(e) => e,
                FeedError::Sink(()) => panic!("the sink never fails"),
            })?;
        }
        s.finish()?;
        Ok(out)
    }

    #[test]
    fn splits_at_any_chunk_size() {
        let data = br#" [ {"a":"x]}\"y","b":[1,{"c":2}]} , 12 ,"s\\",true,null, [] ,{}]  "#;
        let want = vec![
            r#"{"a":"x]}\"y","b":[1,{"c":2}]}"#,
            "12",
            r#""s\\""#,
            "true",
            "null",
            "[]",
            "{}",
        ];
        for chunk in 1..data.len() {
            assert_eq!(split(data, chunk).unwrap(), want, "chunk {chunk}");
        }
    }

    #[test]
    fn oversized_elements_are_skipped_not_buffered() {
        let big = format!("[\"{}\",1]", "x".repeat(500));
        assert_eq!(split(big.as_bytes(), 7).unwrap(), vec!["<502>", "1"]);
    }

    #[test]
    fn structural_errors() {
        for bad in [
            &b""[..],
            b"{}",
            b"[1,]",
            b"[,1]",
            b"[1 2]",
            b"[1",
            b"[{\"a\":1}",
            b"[] x",
            b"[{]]",
        ] {
            assert!(split(bad, 3).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let deep = format!("[{}{}]", "[".repeat(100_000), "]".repeat(100_000));
        let e = split(deep.as_bytes(), 4096).unwrap_err();
        assert!(e.what.contains("nested"), "{e}");
        assert_eq!(split(b"[]", 1).unwrap(), Vec::<String>::new());
    }
}
