//! Streaming parser for `GET /room_keys/keys[/{room}[/{session}]]` responses.
//!
//! The whole-backup response has no pagination and can be hundreds of megabytes; it is walked
//! with serde visitors so that one session at a time is in memory. A reader wrapper caps the
//! bytes of any single entry, so a hostile server cannot make one entry swallow all memory.

use std::cell::Cell;
use std::fmt;
use std::io::Read;
use std::rc::Rc;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};

use super::RoomKey;
use crate::backup::KeyBackupData;
use crate::progress::Progress;

/// Which endpoint's shape the body has.
#[derive(Debug, Clone)]
pub(crate) enum Shape {
    /// `{"rooms": {room: {"sessions": {session: data}}}}`
    All,
    /// `{"sessions": {session: data}}`
    Room { room_id: String },
    /// `data`
    One { room_id: String, session_id: String },
}

/// Why parsing stopped.
#[derive(Debug)]
pub(crate) enum StreamError {
    /// The connection broke: worth retrying.
    Io(String),
    /// The body is not what the API promises.
    Json(String),
    /// The sink returned an error (already stored by the caller).
    Sink,
}

const SINK_STOP: &str = "\u{0}mxkeys-sink-stop";

/// Counts bytes since the last completed entry and fails past the cap.
///
/// Errors are sticky: after one failed read every later read fails at once with the same
/// error. serde_json reads again while unwinding each nested object and array after an error
/// (to find its closing bracket), and each of those reads would otherwise wait for the
/// connection's read timeout again: a server stalling in the middle of a body would hold
/// mxkeys for the timeout times the nesting depth, on every attempt.
struct Capped<R> {
    inner: R,
    since_entry: Rc<Cell<u64>>,
    cap: u64,
    failed: Option<(std::io::ErrorKind, String)>,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some((kind, msg)) = &self.failed {
            return Err(std::io::Error::new(*kind, msg.clone()));
        }
        let n = match self.inner.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return Err(e),
            Err(e) => {
                self.failed = Some((e.kind(), e.to_string()));
                return Err(e);
            }
        };
        let since = self.since_entry.get() + n as u64;
        self.since_entry.set(since);
        if since > self.cap {
            let msg = format!("one entry is larger than {} bytes", self.cap);
            self.failed = Some((std::io::ErrorKind::InvalidData, msg.clone()));
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, msg));
        }
        Ok(n)
    }
}

struct Ctx<'a> {
    f: &'a mut dyn FnMut(RoomKey) -> Result<(), ()>,
    since_entry: Rc<Cell<u64>>,
    progress: &'a dyn Progress,
    entries: u64,
}

impl Ctx<'_> {
    fn emit<E: de::Error>(
        &mut self,
        room_id: &str,
        session_id: String,
        data: KeyBackupData,
    ) -> Result<(), E> {
        self.since_entry.set(0);
        self.entries += 1;
        self.progress.advance(1);
        if self.progress.cancelled() {
            return Err(E::custom(SINK_STOP));
        }
        (self.f)(RoomKey {
            room_id: room_id.to_string(),
            session_id,
            data,
        })
        .map_err(|()| E::custom(SINK_STOP))
    }
}

/// Top level of the whole-backup body.
struct Top<'c, 'a>(&'c mut Ctx<'a>);

impl<'de> Visitor<'de> for Top<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object with \"rooms\"")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
        let mut saw_rooms = false;
        while let Some(k) = m.next_key::<String>()? {
            if k == "rooms" {
                saw_rooms = true;
                m.next_value_seed(Rooms(&mut *self.0))?;
            } else {
                m.next_value::<IgnoredAny>()?;
            }
        }
        if !saw_rooms {
            return Err(de::Error::missing_field("rooms"));
        }
        Ok(())
    }
}

struct Rooms<'c, 'a>(&'c mut Ctx<'a>);

impl<'de> DeserializeSeed<'de> for Rooms<'_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Rooms<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of rooms")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
        while let Some(room) = m.next_key::<String>()? {
            m.next_value_seed(RoomObj {
                ctx: &mut *self.0,
                room_id: room,
            })?;
        }
        Ok(())
    }
}

struct RoomObj<'c, 'a> {
    ctx: &'c mut Ctx<'a>,
    room_id: String,
}

impl<'de> DeserializeSeed<'de> for RoomObj<'_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RoomObj<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object with \"sessions\"")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
        while let Some(k) = m.next_key::<String>()? {
            if k == "sessions" {
                m.next_value_seed(Sessions {
                    ctx: &mut *self.ctx,
                    room_id: &self.room_id,
                })?;
            } else {
                m.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

struct Sessions<'c, 'a, 'r> {
    ctx: &'c mut Ctx<'a>,
    room_id: &'r str,
}

impl<'de> DeserializeSeed<'de> for Sessions<'_, '_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Sessions<'_, '_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of sessions")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
        while let Some(sid) = m.next_key::<String>()? {
            let data: KeyBackupData = m.next_value()?;
            self.ctx.emit(self.room_id, sid, data)?;
        }
        Ok(())
    }
}

/// Parse a keys response of `shape` from `reader`, calling `f` per session.
pub(crate) fn parse(
    reader: impl Read,
    shape: &Shape,
    entry_cap: u64,
    progress: &dyn Progress,
    f: &mut dyn FnMut(RoomKey) -> Result<(), ()>,
) -> Result<(), StreamError> {
    let since = Rc::new(Cell::new(0));
    let capped = Capped {
        inner: reader,
        since_entry: since.clone(),
        cap: entry_cap,
        failed: None,
    };
    let mut ctx = Ctx {
        f,
        since_entry: since,
        progress,
        entries: 0,
    };
    let mut de = serde_json::Deserializer::from_reader(std::io::BufReader::with_capacity(
        256 * 1024,
        capped,
    ));
    let r = match shape {
        Shape::All => de::Deserializer::deserialize_map(&mut de, Top(&mut ctx)),
        Shape::Room { room_id } => {
            struct RoomTop<'c, 'a, 'r>(&'c mut Ctx<'a>, &'r str);
            impl<'de> Visitor<'de> for RoomTop<'_, '_, '_> {
                type Value = ();
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("an object with \"sessions\"")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
                    let mut saw = false;
                    while let Some(k) = m.next_key::<String>()? {
                        if k == "sessions" {
                            saw = true;
                            m.next_value_seed(Sessions {
                                ctx: &mut *self.0,
                                room_id: self.1,
                            })?;
                        } else {
                            m.next_value::<IgnoredAny>()?;
                        }
                    }
                    if !saw {
                        return Err(de::Error::missing_field("sessions"));
                    }
                    Ok(())
                }
            }
            de::Deserializer::deserialize_map(&mut de, RoomTop(&mut ctx, room_id))
        }
        Shape::One {
            room_id,
            session_id,
        } => match <KeyBackupData as serde::Deserialize>::deserialize(&mut de) {
            Ok(data) => ctx.emit(room_id, session_id.clone(), data),
            Err(e) => Err(e),
        },
    };
    let r = r.and_then(|()| de.end());
    match r {
        Ok(()) => Ok(()),
        Err(e) if e.to_string().starts_with(SINK_STOP) => Err(StreamError::Sink),
        Err(e) if e.is_io() => {
            let msg = e.to_string();
            if msg.contains("larger than") {
                Err(StreamError::Json(msg))
            } else {
                Err(StreamError::Io(format!(
                    "the connection broke while reading: {msg}"
                )))
            }
        }
        Err(e) => Err(StreamError::Json(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::NoProgress;

    const KB: &str = r#"{"first_message_index":1,"forwarded_count":0,"is_verified":false,"session_data":{"ephemeral":"e","ciphertext":"c","mac":"m"}}"#;

    fn run(body: &str, shape: Shape) -> Result<Vec<(String, String, u32)>, StreamError> {
        let mut got = Vec::new();
        parse(body.as_bytes(), &shape, 4096, &NoProgress, &mut |k| {
            got.push((k.room_id, k.session_id, k.data.first_message_index));
            Ok(())
        })?;
        Ok(got)
    }

    #[test]
    fn parses_all_shapes() {
        let all = format!(
            r#"{{"rooms":{{"!a:x":{{"sessions":{{"s1":{KB},"s2":{KB}}}}},"!b:x":{{"sessions":{{}}}}}},"extra":[1]}}"#
        );
        assert_eq!(run(&all, Shape::All).unwrap().len(), 2);
        let room = format!(r#"{{"sessions":{{"s1":{KB}}}}}"#);
        let got = run(
            &room,
            Shape::Room {
                room_id: "!a:x".into(),
            },
        )
        .unwrap();
        assert_eq!(got, vec![("!a:x".into(), "s1".into(), 1)]);
        let one = run(
            KB,
            Shape::One {
                room_id: "!a:x".into(),
                session_id: "s".into(),
            },
        )
        .unwrap();
        assert_eq!(one.len(), 1);
    }

    #[test]
    fn rejects_wrong_shapes_and_huge_entries() {
        assert!(matches!(run("[]", Shape::All), Err(StreamError::Json(_))));
        assert!(matches!(run("{}", Shape::All), Err(StreamError::Json(_))));
        assert!(matches!(
            run(r#"{"rooms":{"!a":{"sessions":{"s":1}}}}"#, Shape::All),
            Err(StreamError::Json(_))
        ));
        assert!(matches!(
            run(r#"{"rooms":{}} trailing"#, Shape::All),
            Err(StreamError::Json(_))
        ));
        let huge = format!(
            r#"{{"rooms":{{"!a:x":{{"sessions":{{"s":"{}"}}}}}}}}"#,
            "x".repeat(10_000)
        );
        assert!(
            matches!(run(&huge, Shape::All), Err(StreamError::Json(m)) if m.contains("larger than"))
        );
        // truncated: the connection broke
        let all = format!(r#"{{"rooms":{{"!a:x":{{"sessions":{{"s1":{KB}"#);
        assert!(run(&all, Shape::All).is_err());
    }

    /// A reader that yields `data`, then fails; it counts the reads after the first failure.
    struct FailsAfter {
        data: Vec<u8>,
        failures: std::rc::Rc<Cell<u32>>,
    }

    impl Read for FailsAfter {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.data.is_empty() {
                self.failures.set(self.failures.get() + 1);
                return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "timeout"));
            }
            let n = buf.len().min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data.drain(..n);
            Ok(n)
        }
    }

    /// Regression: a read error deep inside the nesting is not read again at every level on
    /// the way out (each retry would wait for the read timeout once more).
    #[test]
    fn a_read_error_is_not_retried_while_unwinding() {
        let failures = std::rc::Rc::new(Cell::new(0));
        let body = format!(r#"{{"rooms":{{"!a:x":{{"sessions":{{"s1":{KB},"s2":{{"first_mes"#);
        let r = parse(
            FailsAfter {
                data: body.into_bytes(),
                failures: failures.clone(),
            },
            &Shape::All,
            4096,
            &NoProgress,
            &mut |_| Ok(()),
        );
        assert!(matches!(r, Err(StreamError::Io(_))), "{r:?}");
        assert_eq!(failures.get(), 1, "the failed read was repeated");
    }

    #[test]
    fn sink_error_stops() {
        let all = format!(r#"{{"rooms":{{"!a:x":{{"sessions":{{"s1":{KB},"s2":{KB}}}}}}}}}"#);
        let mut n = 0;
        let r = parse(all.as_bytes(), &Shape::All, 4096, &NoProgress, &mut |_| {
            n += 1;
            Err(())
        });
        assert!(matches!(r, Err(StreamError::Sink)));
        assert_eq!(n, 1);
    }
}
