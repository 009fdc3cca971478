//! Splitting an input of room events into the bytes of single events, without parsing them.
//!
//! [`Scanner`] walks the structure around the events (top-level values, the `chunk` and
//! `state` arrays of `/messages` responses) byte by byte, and skips over each event by its
//! brackets and strings only. The events it finds are handed out as byte ranges, to be parsed
//! (and checked: the scanner does not validate what is inside an event) by serde_json, many
//! at a time and in parallel. Everything the scanner steps over without handing it out
//! (response keys other than `chunk`, room state) is checked here with serde_json.
//!
//! The scanner works on a buffer that grows at its end and is cut at its start; it can stop
//! wherever it runs out of bytes and go on when more arrive, restarting the unit it was in (an
//! event, a top-level object before its `chunk`, a key and its value after it). A unit is at
//! most `max_event_bytes` long, so restarts cost at most one unit each.

use serde::de::IgnoredAny;
use serde_json::Value;

use super::event::RoomEventError;

/// Nesting allowed by serde_json (its recursion limit of 128 fails the 128th level): the
/// streaming reader this replaced counted from the top-level value, and so does this.
const MAX_DEPTH: usize = 127;

/// What to do with the bytes of one value the scanner found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Take {
    /// An event: parse it as is.
    Event,
    /// A top-level object that turned out to be an event, whose room-`state` key the old
    /// reader dropped (it came before `type`): parse it, then remove `state`.
    EventWithoutState,
}

/// One event found: its position in the input (from 0) and its bytes in the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Found {
    pub index: u64,
    pub start: usize,
    pub end: usize,
    pub take: Take,
}

/// What [`Scanner::scan`] stopped at.
#[derive(Debug)]
pub(crate) enum Stop {
    /// More bytes are needed; bytes before `keep_from` are no longer needed.
    More { keep_from: usize },
    /// The input is complete.
    Done,
    /// The input is bad here (after the events already found).
    Bad(RoomEventError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Where {
    /// Between top-level values.
    Top,
    /// In an array of events (`keep`: hand them out; else room state, checked and dropped),
    /// before its first element (`first`) or after an element; `page`: inside a response.
    Array { keep: bool, first: bool, page: bool },
    /// In a `/messages` response after its `chunk` (or its `state` after `chunk`).
    Page,
}

/// The scanner's state between calls: where it is in the structure, at which offset.
#[derive(Debug)]
pub(crate) struct Scanner {
    at: Where,
    /// Offset of the next byte to look at.
    pos: usize,
    /// Where the current size count began (the old reader's per-event byte count).
    since: usize,
    /// Events handed out so far (the next event's index).
    pub next_index: u64,
    cap: usize,
    /// Nothing follows the buffer of the current scan.
    eof: bool,
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn json_err(what: impl std::fmt::Display) -> RoomEventError {
    RoomEventError::Json(what.to_string())
}

/// The end (exclusive) of the JSON value starting at `buf[at]`, found by its brackets and
/// strings only; `None` when `buf` ends first (unless `eof`: nothing follows `buf`, so a
/// number or literal ends with it). Brackets must match and nesting stay within
/// `depth_left`; everything else is left for serde_json to check.
fn skip_value(
    buf: &[u8],
    at: usize,
    depth_left: usize,
    eof: bool,
) -> Result<Option<usize>, RoomEventError> {
    let mut i = at;
    let mut stack: Vec<u8> = Vec::new();
    loop {
        let Some(&b) = buf.get(i) else {
            return Ok(None);
        };
        match b {
            b'"' => {
                // A string: to the next quote not escaped.
                let mut j = i + 1;
                loop {
                    match memchr::memchr2(b'"', b'\\', &buf[j.min(buf.len())..]) {
                        None => return Ok(None),
                        Some(k) => {
                            let p = j + k;
                            if buf[p] == b'"' {
                                i = p + 1;
                                break;
                            }
                            if p + 1 >= buf.len() {
                                return Ok(None);
                            }
                            j = p + 2;
                        }
                    }
                }
                if stack.is_empty() {
                    return Ok(Some(i));
                }
                continue;
            }
            b'{' | b'[' => {
                if stack.len() >= depth_left {
                    return Err(json_err("recursion limit exceeded"));
                }
                stack.push(if b == b'{' { b'}' } else { b']' });
            }
            b'}' | b']' => match stack.pop() {
                Some(want) if want == b => {
                    if stack.is_empty() {
                        return Ok(Some(i + 1));
                    }
                }
                _ => {
                    return Err(json_err(format_args!(
                        "unexpected '{}' at byte {i}",
                        b as char
                    )));
                }
            },
            _ if stack.is_empty() => return Ok(scalar_end(buf, i, eof)),
            _ => {}
        }
        i += 1;
    }
}

/// The end of the number or literal at `buf[i]`, where serde_json stops reading it: a literal
/// is its exact word, a number its run of number bytes; anything else is one byte (serde_json
/// refuses it). `None` when `buf` may end before the token does.
fn scalar_end(buf: &[u8], i: usize, eof: bool) -> Option<usize> {
    let rest = &buf[i..];
    for word in [&b"true"[..], b"false", b"null"] {
        if rest.first() == word.first() {
            if rest.starts_with(word) {
                return Some(i + word.len());
            }
            // A word cut by the end of the buffer may still be complete later.
            if !eof && word.starts_with(rest) {
                return None;
            }
            return Some(i + 1);
        }
    }
    let n = rest
        .iter()
        .position(|c| !matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'));
    match n {
        Some(n) => Some(i + n.max(1)),
        None if eof => Some(buf.len()),
        None => None,
    }
}

/// The key of an object member (`buf[at]` is its opening quote) and the end of its string.
fn read_key(buf: &[u8], at: usize) -> Result<Option<(String, usize)>, RoomEventError> {
    let Some(end) = skip_value(buf, at, 0, false)? else {
        return Ok(None);
    };
    let raw = &buf[at..end];
    let key = if raw.contains(&b'\\') || !raw.is_ascii() {
        serde_json::from_slice::<String>(raw).map_err(json_err)?
    } else {
        // Plain ASCII without escapes: the bytes are the key (control bytes are refused
        // as serde_json would).
        if raw.iter().any(|&c| c < 0x20) {
            return Err(json_err("control character in a key"));
        }
        String::from_utf8_lossy(&raw[1..raw.len() - 1]).into_owned()
    };
    Ok(Some((key, end)))
}

/// Steps of a scan; `Err(None)` means "out of bytes".
type Step<T> = Result<T, Option<RoomEventError>>;

impl Scanner {
    /// A scanner at the start of an input, with the per-event byte cap.
    pub(crate) fn new(max_event_bytes: u64) -> Self {
        Scanner {
            at: Where::Top,
            pos: 0,
            since: 0,
            next_index: 0,
            cap: usize::try_from(max_event_bytes).unwrap_or(usize::MAX),
            eof: false,
        }
    }

    /// The buffer lost its first `n` bytes.
    pub(crate) fn rebase(&mut self, n: usize) {
        self.pos -= n;
        self.since = self.since.saturating_sub(n);
    }

    fn too_large(&self) -> RoomEventError {
        RoomEventError::TooLarge {
            index: self.next_index,
            max: self.cap as u64,
        }
    }

    /// Is a unit running from `since` to `end` (exclusive) over the cap?
    fn over(&self, end: usize) -> bool {
        end.saturating_sub(self.since) > self.cap
    }

    /// The offset of the next non-whitespace byte from `i`.
    fn skip_ws(&self, buf: &[u8], mut i: usize) -> Step<usize> {
        while let Some(&b) = buf.get(i) {
            if !is_ws(b) {
                return Ok(i);
            }
            i += 1;
            if self.over(i) {
                return Err(Some(self.too_large()));
            }
        }
        if self.over(i) {
            return Err(Some(self.too_large()));
        }
        Err(None)
    }

    /// The end of the value at `i`, within the cap.
    fn value_end(&self, buf: &[u8], i: usize, depth_left: usize) -> Step<usize> {
        // Never look further than the cap allows.
        let cap_end = self.since.saturating_add(self.cap);
        let limit = cap_end.min(buf.len());
        match skip_value(&buf[..limit], i, depth_left, self.eof && limit == buf.len()) {
            Ok(Some(end)) => Ok(end),
            Ok(None) if limit == cap_end => Err(Some(self.too_large())),
            Ok(None) => Err(None),
            Err(e) => Err(Some(e)),
        }
    }

    /// A unit from `from` passed the cap: the error the old reader gave, which parsed up to
    /// the cap and so failed first on bad JSON before it (as a `Value` when `value`).
    fn refine(
        &self,
        buf: &[u8],
        from: usize,
        value: bool,
        e: Option<RoomEventError>,
    ) -> Option<RoomEventError> {
        if !matches!(e, Some(RoomEventError::TooLarge { .. })) {
            return e;
        }
        let upto = &buf[from.min(buf.len())..self.since.saturating_add(self.cap).min(buf.len())];
        let r = if value {
            serde_json::from_slice::<Value>(upto).map(drop)
        } else {
            serde_json::from_slice::<IgnoredAny>(upto).map(drop)
        };
        match r {
            Err(err) if !err.is_eof() => Some(json_err(err)),
            _ => e,
        }
    }

    /// Find events in `buf` (everything from the input's current start, `eof` when nothing
    /// follows), pushing them to `out`.
    pub(crate) fn scan(&mut self, buf: &[u8], eof: bool, out: &mut Vec<Found>) -> Stop {
        self.eof = eof;
        loop {
            let unit = self.pos;
            let since = self.since;
            let r = match self.at {
                Where::Top => self.top(buf, eof, out),
                Where::Array { keep, first, page } => self.element(buf, keep, first, page, out),
                Where::Page => self.page(buf),
            };
            match r {
                Ok(true) => {}
                Ok(false) => return Stop::Done,
                Err(Some(e)) => return Stop::Bad(e),
                Err(None) if eof => {
                    return Stop::Bad(if self.over(buf.len()) {
                        self.too_large()
                    } else {
                        json_err("the input ends in the middle of a value")
                    });
                }
                Err(None) => {
                    // Start this unit again when more bytes are in.
                    self.pos = unit;
                    self.since = since;
                    return Stop::More {
                        keep_from: unit.min(since),
                    };
                }
            }
        }
    }

    /// Between top-level values: an array of events, a response, an event, or the end.
    fn top(&mut self, buf: &[u8], eof: bool, out: &mut Vec<Found>) -> Step<bool> {
        self.since = self.pos;
        let i = match self.skip_ws(buf, self.pos) {
            Ok(i) => i,
            // Only whitespace left: the end, if nothing follows.
            Err(None) if eof => {
                self.pos = buf.len();
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        match buf[i] {
            b'[' => {
                self.pos = i + 1;
                self.since = self.pos;
                self.at = Where::Array {
                    keep: true,
                    first: true,
                    page: false,
                };
                Ok(true)
            }
            b'{' => self
                .object(buf, i, out)
                .map_err(|e| self.refine(buf, i, true, e)),
            _ => Err(Some(json_err(format_args!(
                "expected a /messages response, an array of events or an event at byte {i}"
            )))),
        }
    }

    /// A top-level object from its `{` at `start`: up to its `chunk` (a response), or whole
    /// (an event).
    fn object(&mut self, buf: &[u8], start: usize, out: &mut Vec<Found>) -> Step<bool> {
        let mut i = start + 1;
        let mut saw_type = false;
        let (mut dropped_state, mut kept_state) = (false, false);
        let mut first = true;
        loop {
            i = self.skip_ws(buf, i)?;
            match buf[i] {
                b'}' if first => break,
                b'"' if first => {}
                b',' if !first => {
                    i = self.skip_ws(buf, i + 1)?;
                    if buf[i] != b'"' {
                        return Err(Some(json_err(format_args!("expected a key at byte {i}"))));
                    }
                }
                b'}' => break,
                _ => return Err(Some(json_err(format_args!("expected a key at byte {i}")))),
            }
            first = false;
            let (key, end) = self.key(buf, i)?;
            i = self.skip_ws(buf, end)?;
            if buf[i] != b':' {
                return Err(Some(json_err(format_args!("expected ':' at byte {i}"))));
            }
            i = self.skip_ws(buf, i + 1)?;
            match key.as_str() {
                "chunk" => {
                    if buf[i] != b'[' {
                        return Err(Some(json_err("\"chunk\" is not an array of events")));
                    }
                    self.pos = i + 1;
                    self.since = self.pos;
                    self.at = Where::Array {
                        keep: true,
                        first: true,
                        page: true,
                    };
                    return Ok(true);
                }
                "state" if !saw_type => {
                    if buf[i] != b'[' {
                        return Err(Some(json_err("\"state\" is not an array of events")));
                    }
                    let end = self.value_end(buf, i, MAX_DEPTH - 1)?;
                    serde_json::from_slice::<IgnoredAny>(&buf[i..end])
                        .map_err(|e| Some(json_err(e)))?;
                    dropped_state = true;
                    i = end;
                }
                k => {
                    let end = self.value_end(buf, i, MAX_DEPTH - 1)?;
                    serde_json::from_slice::<Value>(&buf[i..end]).map_err(|e| Some(json_err(e)))?;
                    saw_type |= k == "type";
                    kept_state |= k == "state";
                    i = end;
                }
            }
        }
        // No `chunk`: the object is an event.
        let end = i + 1;
        if self.over(end) {
            return Err(Some(self.too_large()));
        }
        out.push(Found {
            index: self.next_index,
            start,
            end,
            take: if dropped_state && !kept_state {
                Take::EventWithoutState
            } else {
                Take::Event
            },
        });
        self.next_index += 1;
        self.pos = end;
        self.at = Where::Top;
        Ok(true)
    }

    /// The key whose opening quote is at `i`, and the end of its string, within the cap.
    fn key(&self, buf: &[u8], i: usize) -> Step<(String, usize)> {
        let cap_end = self.since.saturating_add(self.cap);
        let limit = cap_end.min(buf.len());
        match read_key(&buf[..limit], i) {
            Ok(Some(k)) => Ok(k),
            Ok(None) if limit == cap_end => Err(Some(self.too_large())),
            Ok(None) => Err(None),
            Err(e) => Err(Some(e)),
        }
    }

    /// In an array of events: the next element, or the array's end.
    fn element(
        &mut self,
        buf: &[u8],
        keep: bool,
        first: bool,
        page: bool,
        out: &mut Vec<Found>,
    ) -> Step<bool> {
        let mut i = self.skip_ws(buf, self.pos)?;
        let after = |s: &mut Self, end: usize| {
            s.pos = end;
            s.at = if page { Where::Page } else { Where::Top };
            Ok(true)
        };
        match buf[i] {
            b']' => return after(self, i + 1),
            b',' if !first => i = self.skip_ws(buf, i + 1)?,
            _ if first => {}
            _ => {
                return Err(Some(json_err(format_args!(
                    "expected ',' or ']' at byte {i}"
                ))));
            }
        }
        let depth = if page { MAX_DEPTH - 2 } else { MAX_DEPTH - 1 };
        let end = self
            .value_end(buf, i, depth)
            .map_err(|e| self.refine(buf, i, keep, e))?;
        if keep {
            out.push(Found {
                index: self.next_index,
                start: i,
                end,
                take: Take::Event,
            });
            self.next_index += 1;
        } else {
            serde_json::from_slice::<IgnoredAny>(&buf[i..end]).map_err(|e| Some(json_err(e)))?;
        }
        self.pos = end;
        self.since = end;
        self.at = Where::Array {
            keep,
            first: false,
            page,
        };
        Ok(true)
    }

    /// In a response after `chunk`: the next key and its value, or the response's end.
    fn page(&mut self, buf: &[u8]) -> Step<bool> {
        let i = self.skip_ws(buf, self.pos)?;
        match buf[i] {
            b'}' => {
                self.pos = i + 1;
                self.at = Where::Top;
                return Ok(true);
            }
            b',' => {}
            _ => {
                return Err(Some(json_err(format_args!(
                    "expected ',' or '}}' at byte {i}"
                ))));
            }
        }
        let i = self.skip_ws(buf, i + 1)?;
        if buf[i] != b'"' {
            return Err(Some(json_err(format_args!("expected a key at byte {i}"))));
        }
        let (key, end) = self.key(buf, i)?;
        let i = self.skip_ws(buf, end)?;
        if buf[i] != b':' {
            return Err(Some(json_err(format_args!("expected ':' at byte {i}"))));
        }
        let i = self.skip_ws(buf, i + 1)?;
        if key == "state" {
            if buf[i] != b'[' {
                return Err(Some(json_err("\"state\" is not an array of events")));
            }
            self.pos = i + 1;
            self.since = self.pos;
            self.at = Where::Array {
                keep: false,
                first: true,
                page: true,
            };
            return Ok(true);
        }
        let end = self
            .value_end(buf, i, MAX_DEPTH - 1)
            .map_err(|e| self.refine(buf, i, false, e))?;
        serde_json::from_slice::<IgnoredAny>(&buf[i..end]).map_err(|e| Some(json_err(e)))?;
        self.pos = end;
        Ok(true)
    }
}
