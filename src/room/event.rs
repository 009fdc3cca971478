//! Room events as saved from a homeserver, and the `m.room.encrypted` events among them.
//!
//! Three input shapes are read, detected from the data itself:
//! - saved `GET /rooms/{id}/messages` responses: objects with a `chunk` array (several may
//!   follow each other in one file, as `>>` appends them);
//! - a JSON array of events;
//! - JSON lines (or any concatenation) of event objects.
//!
//! The input is streamed: one event is in memory at a time, however long the `chunk`, and no
//! single event may be larger than [`ReadOptions::max_event_bytes`]. Nesting is bounded by
//! serde_json's recursion limit. Nothing here trusts an event: the `sender_key` and
//! `device_id` of an encrypted event are kept as *claims* only, for a report, never to pick or
//! vouch for a session.

use std::cell::Cell;
use std::fmt;
use std::io::{BufRead, Read};
use std::rc::Rc;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::session::MEGOLM_V1;

/// The event type of encrypted room events.
pub const ENCRYPTED: &str = "m.room.encrypted";

/// Default cap on the size of one event. The spec caps a PDU at 65,536 bytes; a client event
/// carries some `unsigned` data on top, so this leaves a wide margin.
pub const DEFAULT_MAX_EVENT_BYTES: u64 = 1 << 20;

/// Why an input of room events could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RoomEventError {
    /// The input is not JSON, or not of one of the accepted shapes.
    #[error("not JSON events or a saved /messages response: {0}")]
    Json(String),
    /// One element where an event belongs is not an event object.
    #[error("event {index}: {reason}")]
    NotAnEvent {
        /// Position of the event in the input, from 0.
        index: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// One event is larger than the cap.
    #[error("event {index} is larger than {max} bytes")]
    TooLarge {
        /// Position of the event in the input, from 0.
        index: u64,
        /// The cap.
        max: u64,
    },
    /// An encrypted event has no `room_id` and no default room was given.
    #[error("event {index} has no room_id")]
    NoRoomId {
        /// Position of the event in the input, from 0.
        index: u64,
    },
    /// Reading the input failed.
    #[error("reading: {0}")]
    Io(#[source] std::io::Error),
}

/// Why reading events stopped: the input, or the consumer of the events.
#[derive(Debug)]
pub enum ReadError<E> {
    /// The input is bad.
    Input(RoomEventError),
    /// The callback returned this error.
    Sink(E),
}

/// What an `m.room.encrypted` event's content says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncryptedContent {
    /// `m.megolm.v1.aes-sha2` with the fields it needs.
    Megolm(MegolmContent),
    /// Another algorithm (Olm is for to-device messages, never room events).
    Unsupported {
        /// The algorithm named.
        algorithm: String,
    },
    /// Megolm, but the content is not usable (missing or wrongly typed fields).
    Malformed {
        /// What is wrong.
        reason: String,
        /// The session id, when it is there.
        session_id: Option<String>,
    },
}

/// The content of a Megolm-encrypted room event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MegolmContent {
    /// Unpadded base64 of the Megolm message.
    pub ciphertext: String,
    /// The session the event claims (the session's Ed25519 key).
    pub session_id: String,
    /// The Curve25519 key the sender claims (deprecated in the spec): a claim, never trusted.
    pub claimed_sender_key: Option<String>,
    /// The device the sender claims (deprecated in the spec): a claim, never trusted.
    pub claimed_device_id: Option<String>,
}

/// An `m.room.encrypted` room event, with what the history check needs of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedEvent {
    /// Position in the input, from 0 (every event counts, encrypted or not).
    pub index: u64,
    /// `event_id`, when present.
    pub event_id: Option<String>,
    /// The room (the event's own `room_id`, else the reader's default room).
    pub room_id: String,
    /// `sender` (the user id, as the homeserver says).
    pub sender: Option<String>,
    /// `origin_server_ts` in milliseconds.
    pub origin_server_ts: Option<u64>,
    /// `unsigned.membership` (MSC4115): the account's membership when the event was sent.
    pub membership: Option<String>,
    /// The content.
    pub content: EncryptedContent,
}

impl EncryptedEvent {
    /// The session id the content names, if any.
    pub fn session_id(&self) -> Option<&str> {
        match &self.content {
            EncryptedContent::Megolm(m) => Some(&m.session_id),
            EncryptedContent::Malformed { session_id, .. } => session_id.as_deref(),
            EncryptedContent::Unsupported { .. } => None,
        }
    }
}

/// One event of the input.
#[derive(Debug, Clone, PartialEq)]
pub enum RoomEvent {
    /// An `m.room.encrypted` event.
    Encrypted(EncryptedEvent),
    /// Any other event, as it came.
    Other {
        /// Position in the input, from 0.
        index: u64,
        /// The event.
        event: Map<String, Value>,
    },
}

fn opt_string(m: &Map<String, Value>, k: &str) -> Option<String> {
    m.get(k).and_then(Value::as_str).map(str::to_owned)
}

fn megolm_content(c: &Map<String, Value>) -> EncryptedContent {
    let session_id = opt_string(c, "session_id");
    let malformed = |reason: &str| EncryptedContent::Malformed {
        reason: reason.to_string(),
        session_id: session_id.clone(),
    };
    let Some(ciphertext) = c.get("ciphertext") else {
        return malformed("no ciphertext");
    };
    let Some(ciphertext) = ciphertext.as_str() else {
        return malformed("ciphertext is not a string");
    };
    let Some(sid) = session_id.clone() else {
        return malformed(if c.contains_key("session_id") {
            "session_id is not a string"
        } else {
            "no session_id"
        });
    };
    EncryptedContent::Megolm(MegolmContent {
        ciphertext: ciphertext.to_owned(),
        session_id: sid,
        claimed_sender_key: opt_string(c, "sender_key"),
        claimed_device_id: opt_string(c, "device_id"),
    })
}

/// Turn one parsed event into a [`RoomEvent`]. `index` is its position in the input; the
/// default room is used for events without a `room_id` (as in `/sync` timelines).
pub fn parse_event(
    value: Value,
    index: u64,
    default_room: Option<&str>,
) -> Result<RoomEvent, RoomEventError> {
    let not_an_event = |reason: &str| RoomEventError::NotAnEvent {
        index,
        reason: reason.to_string(),
    };
    let Value::Object(event) = value else {
        return Err(not_an_event("not a JSON object"));
    };
    let Some(ty) = event.get("type") else {
        return Err(not_an_event("no \"type\""));
    };
    let Some(ty) = ty.as_str() else {
        return Err(not_an_event("\"type\" is not a string"));
    };
    // A redacted encrypted event keeps no ciphertext: nothing to decrypt, nothing damaged.
    let redacted = || {
        event
            .get("unsigned")
            .and_then(|u| u.get("redacted_because"))
            .is_some()
            && event
                .get("content")
                .and_then(Value::as_object)
                .is_some_and(Map::is_empty)
    };
    if ty != ENCRYPTED || redacted() {
        return Ok(RoomEvent::Other { index, event });
    }
    let room_id = match event.get("room_id") {
        Some(Value::String(r)) => r.clone(),
        Some(_) => return Err(not_an_event("\"room_id\" is not a string")),
        None => default_room
            .map(str::to_owned)
            .ok_or(RoomEventError::NoRoomId { index })?,
    };
    let content = match event.get("content") {
        Some(Value::Object(c)) => match c.get("algorithm") {
            Some(Value::String(a)) if a == MEGOLM_V1 => megolm_content(c),
            Some(Value::String(a)) => EncryptedContent::Unsupported {
                algorithm: a.clone(),
            },
            Some(_) => EncryptedContent::Malformed {
                reason: "algorithm is not a string".into(),
                session_id: opt_string(c, "session_id"),
            },
            None => EncryptedContent::Malformed {
                reason: "no algorithm".into(),
                session_id: opt_string(c, "session_id"),
            },
        },
        // A redacted encrypted event has an empty content; a missing one is damage too.
        Some(_) => EncryptedContent::Malformed {
            reason: "content is not an object".into(),
            session_id: None,
        },
        None => EncryptedContent::Malformed {
            reason: "no content".into(),
            session_id: None,
        },
    };
    let membership = event
        .get("unsigned")
        .and_then(Value::as_object)
        .and_then(|u| u.get("membership"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(RoomEvent::Encrypted(EncryptedEvent {
        index,
        event_id: opt_string(&event, "event_id"),
        sender: opt_string(&event, "sender"),
        origin_server_ts: event.get("origin_server_ts").and_then(Value::as_u64),
        membership,
        room_id,
        content,
    }))
}

/// How to read an input.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// Room of events that have no `room_id`; without one such events are an error.
    pub default_room: Option<String>,
    /// Largest accepted event, in bytes of JSON.
    pub max_event_bytes: u64,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            default_room: None,
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
        }
    }
}

/// Counts the bytes read since the current event began, failing past the cap. It sits above
/// the buffer (serde_json reads one byte at a time), so the count is exact.
struct Counted<R> {
    inner: R,
    since: Rc<Cell<u64>>,
    cap: u64,
    tripped: Rc<Cell<bool>>,
}

impl<R> Counted<R> {
    fn count(&self, n: usize) -> std::io::Result<()> {
        let since = self.since.get() + n as u64;
        self.since.set(since);
        if since > self.cap {
            self.tripped.set(true);
        }
        self.check()
    }

    fn check(&self) -> std::io::Result<()> {
        if self.tripped.get() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "event too large",
            ));
        }
        Ok(())
    }
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.check()?;
        let n = self.inner.read(buf)?;
        self.count(n)?;
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Counted<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.check()?;
        self.inner.fill_buf()
    }
    fn consume(&mut self, n: usize) {
        self.inner.consume(n);
        // Only whitespace between values is consumed this way; a cap hit shows on next read.
        let _ = self.count(n);
    }
}

/// Marker in a serde error that the sink (not the input) stopped the parse.
const SINK_STOP: &str = "\u{0}mxkeys-sink-stop";

/// What each element of the input goes to: its position and its JSON.
type ValueSink<'a, E> = dyn FnMut(u64, Value) -> Result<(), ReadError<E>> + 'a;

struct Ctx<'a, E> {
    f: &'a mut ValueSink<'a, E>,
    since: Rc<Cell<u64>>,
    next_index: u64,
    failure: Option<ReadError<E>>,
}

impl<E> Ctx<'_, E> {
    /// Hand one parsed element to the sink.
    fn emit<D: de::Error>(&mut self, value: Value) -> Result<(), D> {
        let index = self.next_index;
        self.next_index += 1;
        (self.f)(index, value).map_err(|e| {
            self.failure = Some(e);
            D::custom(SINK_STOP)
        })?;
        // The next event starts here.
        self.since.set(0);
        Ok(())
    }
}

/// One top-level JSON value: an array of events, a `/messages` response, or one event.
struct Top<'c, 'a, E>(&'c mut Ctx<'a, E>);

impl<'de, E> Visitor<'de> for Top<'_, '_, E> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a /messages response, an array of events or an event")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        Events {
            ctx: self.0,
            keep: true,
        }
        .visit_seq(seq)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
        let mut saw_chunk = false;
        let mut rest = Map::new();
        while let Some(k) = m.next_key::<String>()? {
            match k.as_str() {
                "chunk" if !saw_chunk => {
                    saw_chunk = true;
                    m.next_value_seed(Events {
                        ctx: &mut *self.0,
                        keep: true,
                    })?;
                }
                // Room state sent with the page: not part of the timeline.
                "state" if saw_chunk || !rest.contains_key("type") => {
                    m.next_value_seed(Events {
                        ctx: &mut *self.0,
                        keep: false,
                    })?;
                }
                _ if saw_chunk => {
                    m.next_value::<IgnoredAny>()?;
                }
                _ => {
                    let v: Value = m.next_value()?;
                    rest.insert(k, v);
                }
            }
        }
        if saw_chunk {
            return Ok(());
        }
        // No `chunk`: the object is an event itself (JSON lines).
        self.0.emit(Value::Object(rest))
    }
}

impl<'de, E> DeserializeSeed<'de> for Top<'_, '_, E> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

/// An array of events; `keep: false` reads and drops them (room state).
struct Events<'c, 'a, E> {
    ctx: &'c mut Ctx<'a, E>,
    keep: bool,
}

impl<'de, E> DeserializeSeed<'de> for Events<'_, '_, E> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, E> Visitor<'de> for Events<'_, '_, E> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of events")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.ctx.since.set(0);
        if self.keep {
            while let Some(v) = seq.next_element::<Value>()? {
                self.ctx.emit(v)?;
            }
        } else {
            while seq.next_element::<IgnoredAny>()?.is_some() {
                self.ctx.since.set(0);
            }
        }
        Ok(())
    }
}

/// Skip whitespace; false at the end of the input.
fn more_input(r: &mut impl BufRead) -> std::io::Result<bool> {
    loop {
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(false);
        }
        let ws = buf
            .iter()
            .take_while(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
            .count();
        let all = ws == buf.len();
        r.consume(ws);
        if !all {
            return Ok(true);
        }
    }
}

/// Read every event of `input` (any of the three shapes), in order, handing each to `f`.
/// Returns the number of events read (encrypted or not; room state is not counted).
pub fn read_events<E>(
    input: impl BufRead,
    opts: &ReadOptions,
    f: &mut dyn FnMut(RoomEvent) -> Result<(), E>,
) -> Result<u64, ReadError<E>> {
    let default_room = opts.default_room.clone();
    read_values(input, opts, &mut |index, value| {
        let event = parse_event(value, index, default_room.as_deref()).map_err(ReadError::Input)?;
        f(event).map_err(ReadError::Sink)
    })
}

/// [`read_events`] before [`parse_event`]: every event of `input` as the JSON it is, with its
/// position, for callers that need more of an event than [`RoomEvent`] keeps (history export
/// keeps the `unsigned` data and clear-text relation of encrypted events). `f` parses it.
pub fn read_values<E>(
    input: impl BufRead,
    opts: &ReadOptions,
    f: &mut dyn FnMut(u64, Value) -> Result<(), ReadError<E>>,
) -> Result<u64, ReadError<E>> {
    let since = Rc::new(Cell::new(0u64));
    let tripped = Rc::new(Cell::new(false));
    let mut reader = Counted {
        inner: input,
        since: since.clone(),
        cap: opts.max_event_bytes,
        tripped: tripped.clone(),
    };
    let mut ctx = Ctx {
        f,
        since: since.clone(),
        next_index: 0,
        failure: None,
    };
    loop {
        since.set(0);
        match more_input(&mut reader) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) if tripped.get() => {
                drop(e);
                return Err(ReadError::Input(RoomEventError::TooLarge {
                    index: ctx.next_index,
                    max: opts.max_event_bytes,
                }));
            }
            Err(e) => return Err(ReadError::Input(RoomEventError::Io(e))),
        }
        let mut de = serde_json::Deserializer::from_reader(&mut reader);
        if let Err(e) = Top(&mut ctx).deserialize(&mut de) {
            if let Some(f) = ctx.failure.take() {
                return Err(f);
            }
            if tripped.get() {
                return Err(ReadError::Input(RoomEventError::TooLarge {
                    index: ctx.next_index,
                    max: opts.max_event_bytes,
                }));
            }
            if e.is_io() {
                return Err(ReadError::Input(RoomEventError::Io(std::io::Error::other(
                    e.to_string(),
                ))));
            }
            return Err(ReadError::Input(RoomEventError::Json(e.to_string())));
        }
    }
    Ok(ctx.next_index)
}

/// [`read_events`] over a byte slice (tests, fuzzing).
pub fn read_events_from_slice<E>(
    input: &[u8],
    opts: &ReadOptions,
    f: &mut dyn FnMut(RoomEvent) -> Result<(), E>,
) -> Result<u64, ReadError<E>> {
    read_events(input, opts, f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn enc(room: Option<&str>, i: u32) -> Value {
        let mut e = json!({
            "type": "m.room.encrypted",
            "event_id": format!("$e{i}"),
            "sender": "@bob:example.org",
            "origin_server_ts": 1_700_000_000_000u64 + u64::from(i),
            "content": {
                "algorithm": "m.megolm.v1.aes-sha2",
                "ciphertext": "AwgA",
                "session_id": "S",
                "sender_key": "K",
                "device_id": "D",
            },
        });
        if let Some(r) = room {
            e["room_id"] = r.into();
        }
        e
    }

    fn read_all(input: &[u8], opts: &ReadOptions) -> Result<Vec<RoomEvent>, RoomEventError> {
        let mut v = Vec::new();
        read_events_from_slice::<()>(input, opts, &mut |e| {
            v.push(e);
            Ok(())
        })
        .map_err(|e| match e {
            ReadError::Input(e) => e,
            ReadError::Sink(()) => RoomEventError::Json("sink".into()),
        })?;
        Ok(v)
    }

    fn ids(v: &[RoomEvent]) -> Vec<String> {
        v.iter()
            .map(|e| match e {
                RoomEvent::Encrypted(e) => e.event_id.clone().unwrap_or_default(),
                RoomEvent::Other { event, .. } => opt_string(event, "event_id").unwrap_or_default(),
            })
            .collect()
    }

    #[test]
    fn three_shapes_give_the_same_events() {
        let events: Vec<Value> = (0..3).map(|i| enc(Some("!r"), i)).collect();
        let array = serde_json::to_vec(&events).unwrap();
        let lines: Vec<u8> = events
            .iter()
            .flat_map(|e| {
                let mut l = serde_json::to_vec(e).unwrap();
                l.push(b'\n');
                l
            })
            .collect();
        let page = serde_json::to_vec(&json!({
            "start": "t1", "end": "t2",
            "state": [{"type": "m.room.member", "state_key": "@a", "content": {}}],
            "chunk": events,
        }))
        .unwrap();
        // Two pages appended to one file.
        let two_pages = [page.clone(), b"\n".to_vec(), page.clone()].concat();
        let o = ReadOptions::default();
        for input in [&array, &lines, &page] {
            let got = read_all(input, &o).unwrap();
            assert_eq!(ids(&got), ["$e0", "$e1", "$e2"]);
        }
        assert_eq!(read_all(&two_pages, &o).unwrap().len(), 6);
        let RoomEvent::Encrypted(e) = &read_all(&page, &o).unwrap()[1] else {
            panic!("not encrypted");
        };
        assert_eq!(e.index, 1);
        assert_eq!(e.room_id, "!r");
        assert_eq!(e.origin_server_ts, Some(1_700_000_000_001));
        let EncryptedContent::Megolm(m) = &e.content else {
            panic!("not megolm");
        };
        assert_eq!(m.claimed_sender_key.as_deref(), Some("K"));
        assert_eq!(m.claimed_device_id.as_deref(), Some("D"));
    }

    #[test]
    fn default_room_and_missing_room() {
        let input = serde_json::to_vec(&json!([enc(None, 0)])).unwrap();
        assert!(matches!(
            read_all(&input, &ReadOptions::default()),
            Err(RoomEventError::NoRoomId { index: 0 })
        ));
        let o = ReadOptions {
            default_room: Some("!d".into()),
            ..Default::default()
        };
        let RoomEvent::Encrypted(e) = &read_all(&input, &o).unwrap()[0] else {
            panic!("not encrypted");
        };
        assert_eq!(e.room_id, "!d");
    }

    #[test]
    fn content_variants() {
        let mut olm = enc(Some("!r"), 0);
        olm["content"]["algorithm"] = "m.olm.v1.curve25519-aes-sha2".into();
        let mut bad = enc(Some("!r"), 1);
        bad["content"]["ciphertext"] = 5.into();
        let mut redacted = enc(Some("!r"), 2);
        redacted["content"] = json!({});
        let mut left = enc(Some("!r"), 3);
        left["unsigned"] = json!({"membership": "leave"});
        let input = serde_json::to_vec(&json!([olm, bad, redacted, left])).unwrap();
        let got = read_all(&input, &ReadOptions::default()).unwrap();
        let contents: Vec<_> = got
            .iter()
            .map(|e| match e {
                RoomEvent::Encrypted(e) => e.clone(),
                RoomEvent::Other { .. } => panic!("other"),
            })
            .collect();
        assert_eq!(
            contents[0].content,
            EncryptedContent::Unsupported {
                algorithm: "m.olm.v1.curve25519-aes-sha2".into()
            }
        );
        assert_eq!(
            contents[1].content,
            EncryptedContent::Malformed {
                reason: "ciphertext is not a string".into(),
                session_id: Some("S".into())
            }
        );
        assert!(matches!(
            contents[2].content,
            EncryptedContent::Malformed { .. }
        ));
        assert_eq!(contents[3].membership.as_deref(), Some("leave"));
    }

    #[test]
    fn hostile_inputs_are_clean_errors() {
        let o = ReadOptions::default();
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(matches!(
            read_all(deep.as_bytes(), &o),
            Err(RoomEventError::Json(_))
        ));
        let deep_event = format!(
            r#"[{{"type":"m.room.message","content":{}1{}}}]"#,
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        assert!(matches!(
            read_all(deep_event.as_bytes(), &o),
            Err(RoomEventError::Json(_))
        ));
        assert!(matches!(
            read_all(b"[1]", &o),
            Err(RoomEventError::NotAnEvent { index: 0, .. })
        ));
        assert!(matches!(
            read_all(br#"{"chunk": 5}"#, &o),
            Err(RoomEventError::Json(_))
        ));
        assert!(matches!(
            read_all(br#"[{"type": 7}]"#, &o),
            Err(RoomEventError::NotAnEvent { .. })
        ));
        assert!(matches!(
            read_all(b"\"x\"", &o),
            Err(RoomEventError::Json(_))
        ));
        assert!(matches!(read_all(b"[{", &o), Err(RoomEventError::Json(_))));
        let huge = format!(
            r#"{{"chunk":[{{"type":"m.room.message","content":{{"body":"{}"}}}}]}}"#,
            "a".repeat(3 << 20)
        );
        assert!(matches!(
            read_all(huge.as_bytes(), &o),
            Err(RoomEventError::TooLarge { index: 0, .. })
        ));
        // Many small events add up to far more than the cap: fine.
        let small = ReadOptions {
            max_event_bytes: 400,
            ..Default::default()
        };
        let many: Vec<Value> = (0..200).map(|i| enc(Some("!r"), i)).collect();
        let input = serde_json::to_vec(&json!({ "chunk": many })).unwrap();
        assert_eq!(read_all(&input, &small).unwrap().len(), 200);
        assert!(read_all(b"", &o).unwrap().is_empty());
        assert!(read_all(b" \n ", &o).unwrap().is_empty());
    }

    #[test]
    fn the_sink_error_comes_back() {
        let input = serde_json::to_vec(&json!([enc(Some("!r"), 0), enc(Some("!r"), 1)])).unwrap();
        let mut n = 0;
        let r = read_events_from_slice(&input, &ReadOptions::default(), &mut |_| {
            n += 1;
            Err("stop")
        });
        assert!(matches!(r, Err(ReadError::Sink("stop"))));
        assert_eq!(n, 1);
    }
}
