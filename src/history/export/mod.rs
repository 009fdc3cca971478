//! History export: the decrypted history of rooms, as JSON lines ([`jsonl`]), plain text
//! ([`txt`]) or one self-contained HTML page ([`html`]).
//!
//! The model here is what every format shares:
//! - [`History`] takes every event the history check sees ([`Seen`]), encrypted or not, drops
//!   repeats of an `event_id` already taken (overlapping saved pages), and keeps the rest per
//!   room, ordered by (`origin_server_ts`, input order);
//! - an encrypted event that decrypted is shown *merged*: the payload's `type` and `content`
//!   over the original's `event_id`, `sender`, `origin_server_ts`, `room_id` and `unsigned`
//!   (and the clear-text `m.relates_to`, which the spec keeps outside the ciphertext); every
//!   encrypted event carries an `mxkeys` object with its class, and for one that did not
//!   decrypt, its session id and the reason, so that nothing vanishes;
//! - [`Timeline`] reads a room as a person does: edits (`m.replace`, the newest edit by the
//!   same sender wins), redactions, replies, and display names as the room's member events
//!   give them at each point.
//!
//! The output is plaintext history: the callers write it atomically with mode 0600.
//!
//! Memory: decryption runs in the check's bounded batches, but the export itself is gathered
//! whole before it is written (ordering by time, and edits that come after what they edit,
//! need the room complete): about the size of the decrypted JSON of the rooms exported.

pub mod html;
pub mod jsonl;
pub mod media;
pub mod txt;

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{Map, Value, json};

use crate::history::check::Seen;
use crate::history::classify::{Class, Counts};
use crate::room::event::{EncryptedContent, EncryptedEvent};
use crate::room::megolm::Decryption;

pub use media::{MediaNote, MediaRef};

/// One event of the export: its merged view and what mxkeys knows of it.
#[derive(Debug, Clone)]
pub struct Event {
    /// Position in the whole input (every file), from 0.
    pub seq: u64,
    /// The event as shown: for a decrypted event, the merged view.
    pub event: Map<String, Value>,
    /// For encrypted events, the class.
    pub class: Option<Class>,
    /// For undecryptable events: the session id named.
    pub session_id: Option<String>,
    /// For undecryptable events: why.
    pub reason: Option<String>,
    /// Media of the event and what became of it (filled by [`media`]).
    pub media: Vec<MediaNote>,
}

impl Event {
    /// `origin_server_ts`, 0 when missing.
    pub fn ts(&self) -> u64 {
        self.event
            .get("origin_server_ts")
            .and_then(Value::as_u64)
            .unwrap_or(0)
    }

    /// A string field of the event.
    pub fn str(&self, k: &str) -> Option<&str> {
        self.event.get(k).and_then(Value::as_str)
    }

    /// The `type`.
    pub fn ty(&self) -> &str {
        self.str("type").unwrap_or("")
    }

    /// The `content` object (empty when missing).
    pub fn content(&self) -> &Map<String, Value> {
        static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
        self.event
            .get("content")
            .and_then(Value::as_object)
            .unwrap_or_else(|| EMPTY.get_or_init(Map::new))
    }

    /// The event with its `mxkeys` annotation, as the JSON lines output writes it.
    pub fn annotated(&self) -> Map<String, Value> {
        let mut m = self.event.clone();
        let mut note = Map::new();
        note.insert("encrypted".into(), Value::Bool(self.class.is_some()));
        if let Some(c) = self.class {
            note.insert("class".into(), c.as_str().into());
        }
        if let Some(s) = &self.session_id {
            note.insert("session_id".into(), s.clone().into());
        }
        if let Some(r) = &self.reason {
            note.insert("reason".into(), r.clone().into());
        }
        if !self.media.is_empty() {
            note.insert(
                "media".into(),
                Value::Array(self.media.iter().map(MediaNote::to_json).collect()),
            );
        }
        m.insert("mxkeys".into(), Value::Object(note));
        m
    }
}

/// Why an encrypted event did not decrypt, in words.
pub fn reason(d: &Decryption) -> Option<String> {
    match d {
        Decryption::Decrypted { .. } => None,
        Decryption::NoSession { message_index } => Some(format!(
            "no key held for this session (message index {message_index})"
        )),
        Decryption::IndexTooLow {
            message_index,
            first_known_index,
        } => Some(format!(
            "the key held starts at message index {first_known_index}, the event is at {message_index}"
        )),
        Decryption::Damaged { reason, .. } => Some(reason.to_string()),
        Decryption::Unsupported { algorithm } => Some(format!(
            "algorithm {} is not Megolm",
            crate::session::sanitize(algorithm)
        )),
    }
}

/// The original of an encrypted event rebuilt from what [`EncryptedEvent`] keeps (when the
/// caller has not kept the event's JSON).
pub fn rebuild(ev: &EncryptedEvent) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("type".into(), crate::room::event::ENCRYPTED.into());
    if let Some(id) = &ev.event_id {
        m.insert("event_id".into(), id.clone().into());
    }
    if let Some(s) = &ev.sender {
        m.insert("sender".into(), s.clone().into());
    }
    if let Some(ts) = ev.origin_server_ts {
        m.insert("origin_server_ts".into(), ts.into());
    }
    m.insert("room_id".into(), ev.room_id.clone().into());
    let content = match &ev.content {
        EncryptedContent::Megolm(c) => {
            let mut o = json!({
                "algorithm": crate::session::MEGOLM_V1,
                "ciphertext": c.ciphertext,
                "session_id": c.session_id,
            });
            if let Some(k) = &c.claimed_sender_key {
                o["sender_key"] = k.clone().into();
            }
            if let Some(d) = &c.claimed_device_id {
                o["device_id"] = d.clone().into();
            }
            o
        }
        EncryptedContent::Unsupported { algorithm } => json!({"algorithm": algorithm}),
        EncryptedContent::Malformed { session_id, .. } => match session_id {
            Some(s) => json!({"session_id": s}),
            None => json!({}),
        },
    };
    m.insert("content".into(), content);
    if let Some(ms) = &ev.membership {
        m.insert("unsigned".into(), json!({"membership": ms}));
    }
    m
}

/// The merged view of a decrypted event: the payload's `type` and `content` over the
/// original's envelope. `None` when the payload is not an object with a string `type`.
pub fn merge(original: &Map<String, Value>, plaintext: &[u8]) -> Option<Map<String, Value>> {
    let Value::Object(payload) = serde_json::from_slice::<Value>(plaintext).ok()? else {
        return None;
    };
    let ty = payload.get("type")?.as_str()?.to_owned();
    let mut content = match payload.get("content") {
        Some(Value::Object(c)) => c.clone(),
        _ => Map::new(),
    };
    // The spec keeps m.relates_to in the clear so that servers can aggregate relations.
    if !content.contains_key("m.relates_to")
        && let Some(r) = original
            .get("content")
            .and_then(Value::as_object)
            .and_then(|c| c.get("m.relates_to"))
    {
        content.insert("m.relates_to".into(), r.clone());
    }
    let mut m = Map::new();
    for k in [
        "event_id",
        "sender",
        "origin_server_ts",
        "room_id",
        "unsigned",
    ] {
        if let Some(v) = original.get(k) {
            m.insert(k.into(), v.clone());
        }
    }
    m.insert("type".into(), ty.into());
    m.insert("content".into(), Value::Object(content));
    Some(m)
}

/// The events of one room, in order.
#[derive(Debug, Clone, Default)]
pub struct Room {
    /// The room id.
    pub room_id: String,
    /// Events by (`origin_server_ts`, input order).
    pub events: Vec<Event>,
}

/// Counts for the summary.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Encrypted events written, by class.
    pub counts: Counts,
    /// Unencrypted events written.
    pub unencrypted: u64,
    /// Events left out because their `event_id` was already taken.
    pub duplicates: u64,
    /// Events of rooms not asked for.
    pub other_rooms: u64,
    /// Events outside `--since`/`--until`.
    pub outside_dates: u64,
}

/// The whole export, gathered.
#[derive(Debug, Default)]
pub struct History {
    rooms: Vec<String>,
    default_room: Option<String>,
    by_room: BTreeMap<String, Vec<Event>>,
    seen: HashSet<String>,
    next_seq: u64,
    since_ms: Option<u64>,
    until_ms: Option<u64>,
    summary: Summary,
    /// Originals of encrypted events kept by the reader, in input order.
    originals: std::collections::VecDeque<Map<String, Value>>,
}

impl History {
    /// An export of `rooms` (every room when empty); events without a `room_id` belong to
    /// `default_room`.
    pub fn new(rooms: Vec<String>, default_room: Option<String>) -> History {
        History {
            rooms,
            default_room,
            ..History::default()
        }
    }

    /// Only events from `since_ms` to `until_ms` (inclusive, ms since the epoch); events
    /// without a time are kept.
    pub fn with_dates(mut self, since_ms: Option<u64>, until_ms: Option<u64>) -> History {
        self.since_ms = since_ms;
        self.until_ms = until_ms;
        self
    }

    /// Is `room` asked for?
    pub fn wants(&self, room: &str) -> bool {
        self.rooms.is_empty() || self.rooms.iter().any(|r| r == room)
    }

    /// Keep the JSON of an encrypted event about to be fed to the check (of a room asked
    /// for), so that its `unsigned` data and clear-text relation survive. Call it in input
    /// order; the event it belongs to comes back through [`History::add`] in the same order.
    pub fn keep_original(&mut self, original: Map<String, Value>) {
        self.originals.push_back(original);
    }

    fn take(&mut self, room: String, mut e: Event) {
        if let Some(ts) = e.event.get("origin_server_ts").and_then(Value::as_u64)
            && (self.since_ms.is_some_and(|s| ts < s) || self.until_ms.is_some_and(|u| ts > u))
        {
            self.summary.outside_dates += 1;
            return;
        }
        if let Some(id) = e.str("event_id").map(str::to_owned)
            && !self.seen.insert(id)
        {
            self.summary.duplicates += 1;
            return;
        }
        e.seq = self.next_seq;
        self.next_seq += 1;
        match e.class {
            Some(c) => self.summary.counts.add(c),
            None => self.summary.unencrypted += 1,
        }
        self.by_room.entry(room).or_default().push(e);
    }

    /// Take one event as the check hands it over.
    pub fn add(&mut self, seen: Seen<'_>) -> crate::Result<()> {
        match seen {
            Seen::Encrypted(ev, class, d) => {
                let original = match self.originals.pop_front() {
                    Some(o)
                        if o.get("event_id").and_then(Value::as_str) == ev.event_id.as_deref() =>
                    {
                        o
                    }
                    _ => rebuild(ev),
                };
                let merged = match d {
                    Decryption::Decrypted { plaintext, .. } => merge(&original, plaintext),
                    _ => None,
                };
                let e = match merged {
                    Some(m) => Event {
                        seq: 0,
                        event: m,
                        class: Some(class),
                        session_id: None,
                        reason: None,
                        media: Vec::new(),
                    },
                    None => Event {
                        seq: 0,
                        event: original,
                        class: Some(if class == Class::Decrypted {
                            Class::Damaged
                        } else {
                            class
                        }),
                        session_id: ev.session_id().map(str::to_owned),
                        reason: reason(d).or_else(|| {
                            Some("the decrypted payload is not a room event".to_owned())
                        }),
                        media: Vec::new(),
                    },
                };
                self.take(ev.room_id.clone(), e);
            }
            Seen::Other(_, mut event) => {
                let room = match event.get("room_id").and_then(Value::as_str) {
                    Some(r) => r.to_owned(),
                    None => match &self.default_room {
                        Some(r) => {
                            event.insert("room_id".into(), r.clone().into());
                            r.clone()
                        }
                        None => String::new(),
                    },
                };
                if !self.wants(&room) {
                    self.summary.other_rooms += 1;
                    return Ok(());
                }
                self.take(
                    room,
                    Event {
                        seq: 0,
                        event,
                        class: None,
                        session_id: None,
                        reason: None,
                        media: Vec::new(),
                    },
                );
            }
        }
        Ok(())
    }

    /// Every room, its events in order, and the counts.
    pub fn finish(self) -> (Vec<Room>, Summary) {
        let rooms = self
            .by_room
            .into_iter()
            .map(|(room_id, mut events)| {
                events.sort_by_key(|e| (e.ts(), e.seq));
                Room { room_id, events }
            })
            .collect();
        (rooms, self.summary)
    }
}

/// What an event means to a reader, once edits, redactions and names are applied.
#[derive(Debug, Clone)]
pub enum Item<'a> {
    /// A message (text, notice, emote, media...), possibly edited, possibly a reply.
    Message {
        /// The event.
        event: &'a Event,
        /// Display name of the sender at the time.
        who: String,
        /// The content shown (the newest edit's `m.new_content` when edited).
        content: &'a Map<String, Value>,
        /// Was it edited?
        edited: bool,
        /// What it replies to: the display name of that event's sender and a short text.
        reply_to: Option<(String, String)>,
    },
    /// A message that was deleted (redacted).
    Redacted {
        /// The event.
        event: &'a Event,
        /// Display name of the sender at the time.
        who: String,
        /// Who deleted it, when the redaction is in the history.
        by: Option<String>,
        /// The reason given.
        reason: Option<String>,
    },
    /// An encrypted event that could not be decrypted.
    Undecryptable {
        /// The event.
        event: &'a Event,
        /// Display name of the sender at the time.
        who: String,
    },
    /// Membership, room name or topic changes, in words.
    Notice {
        /// The event.
        event: &'a Event,
        /// What happened, as a sentence without the time.
        text: String,
    },
    /// Anything else (shown by type, so that nothing is hidden).
    Other {
        /// The event.
        event: &'a Event,
        /// Display name of the sender at the time.
        who: String,
    },
}

/// A room read as a person reads it.
#[derive(Debug)]
pub struct Timeline<'a> {
    /// The items, in order (edits and redactions are applied, not shown separately).
    pub items: Vec<Item<'a>>,
    /// The room's name, as the last `m.room.name` in the history says (or as given).
    pub name: Option<String>,
}

fn relates_to(c: &Map<String, Value>) -> Option<&Map<String, Value>> {
    c.get("m.relates_to").and_then(Value::as_object)
}

/// The event an `m.replace` edit replaces, if `e` is one.
pub fn replaces(e: &Event) -> Option<&str> {
    let r = relates_to(e.content())?;
    (r.get("rel_type")?.as_str()? == "m.replace")
        .then(|| r.get("event_id")?.as_str())
        .flatten()
}

/// The event that the edit `e` changes, when it applies: both it and the event it edits are
/// readable, it comes from the same sender and it carries new content. An edit that does not
/// apply is shown as a message itself.
fn applies<'e>(e: &'e Event, by_id: &HashMap<&str, &Event>) -> Option<&'e str> {
    let readable = |e: &Event| e.class.is_none_or(|c| c == Class::Decrypted);
    let target = replaces(e)?;
    let orig = by_id.get(target)?;
    (readable(e)
        && readable(orig)
        && orig.str("sender") == e.str("sender")
        && e.content()
            .get("m.new_content")
            .is_some_and(Value::is_object))
    .then_some(target)
}

/// The event a reply replies to.
fn in_reply_to(c: &Map<String, Value>) -> Option<&str> {
    relates_to(c)?
        .get("m.in_reply_to")?
        .as_object()?
        .get("event_id")?
        .as_str()
}

/// The event a redaction removes (`redacts` at the top, or in the content since room v11).
fn redacts(e: &Event) -> Option<&str> {
    e.str("redacts")
        .or_else(|| e.content().get("redacts").and_then(Value::as_str))
}

/// The body of a reply without its fallback quote (`> ` lines and the blank line after).
pub fn strip_reply_fallback(body: &str) -> &str {
    if !body.starts_with("> ") {
        return body;
    }
    let mut rest = body;
    while let Some(line_end) = rest.find('\n') {
        if !rest.starts_with('>') {
            break;
        }
        rest = &rest[line_end + 1..];
    }
    if rest.starts_with('>') {
        return body;
    }
    rest.strip_prefix('\n').unwrap_or(rest)
}

/// A short, one-line form of a body (for "in reply to").
fn short(s: &str) -> String {
    let line = s.lines().next().unwrap_or("");
    let mut out: String = line.chars().take(60).collect();
    if line.chars().count() > 60 || s.lines().nth(1).is_some() {
        out.push('…');
    }
    out
}

/// A member's display name from an `m.room.member` content, if it sets one.
fn displayname(c: &Map<String, Value>) -> Option<String> {
    c.get("displayname")
        .and_then(Value::as_str)
        .filter(|d| !d.trim().is_empty())
        .map(str::to_owned)
}

impl<'a> Timeline<'a> {
    /// Read `room`; `names` are display names known beforehand (the room's current state).
    pub fn new(room: &'a Room, names: &HashMap<String, String>, name: Option<String>) -> Self {
        let by_id: HashMap<&str, &Event> = room
            .events
            .iter()
            .filter_map(|e| Some((e.str("event_id")?, e)))
            .collect();
        // The newest edit of each event.
        let mut edits: HashMap<&str, &Event> = HashMap::new();
        // Redactions: the event removed, and the redaction.
        let mut redactions: HashMap<&str, &Event> = HashMap::new();
        for e in &room.events {
            if let Some(target) = applies(e, &by_id) {
                edits.insert(target, e);
            }
            if e.ty() == "m.room.redaction"
                && let Some(target) = redacts(e)
            {
                redactions.entry(target).or_insert(e);
            }
        }
        // Names as they were at each point; member events before any message of the same
        // sender do not exist for history that starts in the middle, so the state given
        // fills in.
        let mut current: HashMap<String, String> = names.clone();
        let who = |current: &HashMap<String, String>, user: Option<&str>| -> String {
            match user {
                Some(u) => current.get(u).cloned().unwrap_or_else(|| u.to_owned()),
                None => "(unknown sender)".into(),
            }
        };
        let mut room_name = name;
        let mut items = Vec::with_capacity(room.events.len());
        for e in &room.events {
            let sender = e.str("sender");
            let id = e.str("event_id");
            if applies(e, &by_id).is_some() {
                // Shown through the event it edits.
                continue;
            }
            if e.ty() == "m.room.redaction" && redacts(e).is_some_and(|t| by_id.contains_key(t)) {
                continue;
            }
            let redacted_because = e
                .event
                .get("unsigned")
                .and_then(|u| u.get("redacted_because"))
                .and_then(Value::as_object);
            if let Some(r) = id.and_then(|i| redactions.get(i)) {
                items.push(Item::Redacted {
                    event: e,
                    who: who(&current, sender),
                    by: Some(who(&current, r.str("sender"))),
                    reason: r
                        .content()
                        .get("reason")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                });
                continue;
            }
            if let Some(rb) = redacted_because {
                items.push(Item::Redacted {
                    event: e,
                    who: who(&current, sender),
                    by: Some(who(&current, rb.get("sender").and_then(Value::as_str))),
                    reason: rb
                        .get("content")
                        .and_then(|c| c.get("reason"))
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                });
                continue;
            }
            if e.class.is_some_and(|c| c != Class::Decrypted) {
                items.push(Item::Undecryptable {
                    event: e,
                    who: who(&current, sender),
                });
                continue;
            }
            let c = e.content();
            match e.ty() {
                "m.room.message" | "m.sticker" => {
                    let edit = id.and_then(|i| edits.get(i));
                    let content = edit
                        .and_then(|ed| ed.content().get("m.new_content"))
                        .and_then(Value::as_object)
                        .unwrap_or(c);
                    let reply_to = in_reply_to(c).map(|target| match by_id.get(target) {
                        Some(t) => {
                            let tc = edits
                                .get(target)
                                .and_then(|ed| ed.content().get("m.new_content"))
                                .and_then(Value::as_object)
                                .unwrap_or(t.content());
                            let body = tc.get("body").and_then(Value::as_str).unwrap_or("");
                            let text = if t.class.is_some_and(|c| c != Class::Decrypted) {
                                "(undecryptable message)".to_owned()
                            } else if redactions.contains_key(target) {
                                "(deleted message)".to_owned()
                            } else {
                                short(strip_reply_fallback(body))
                            };
                            (who(&current, t.str("sender")), text)
                        }
                        None => (
                            "(a message not in this export)".to_owned(),
                            target.to_owned(),
                        ),
                    });
                    items.push(Item::Message {
                        event: e,
                        who: who(&current, sender),
                        content,
                        edited: edit.is_some(),
                        reply_to,
                    });
                }
                "m.room.member" => {
                    let target = e.str("state_key").unwrap_or("");
                    let before = who(&current, Some(target));
                    let prev = e
                        .event
                        .get("unsigned")
                        .and_then(|u| u.get("prev_content"))
                        .and_then(Value::as_object);
                    let prev_ms = prev
                        .and_then(|p| p.get("membership"))
                        .and_then(Value::as_str);
                    let ms = c.get("membership").and_then(Value::as_str).unwrap_or("");
                    let new_name = displayname(c);
                    let actor = who(&current, sender);
                    let by_other = sender != Some(target);
                    let text = match ms {
                        "join" if prev_ms == Some("join") => {
                            match (&new_name, prev.and_then(displayname)) {
                                (Some(n), Some(p)) if *n != p => {
                                    format!("{p} changed their display name to {n}")
                                }
                                (Some(n), None) => {
                                    format!("{before} set their display name to {n}")
                                }
                                (None, Some(p)) => format!("{p} removed their display name"),
                                _ => match &new_name {
                                    Some(n) if *n != before => {
                                        format!("{before} changed their display name to {n}")
                                    }
                                    _ => format!("{before} updated their profile"),
                                },
                            }
                        }
                        "join" => format!(
                            "{} joined",
                            new_name.clone().unwrap_or_else(|| before.clone())
                        ),
                        "invite" => format!(
                            "{actor} invited {}",
                            new_name.clone().unwrap_or(before.clone())
                        ),
                        "leave" if by_other && prev_ms == Some("ban") => {
                            format!("{actor} unbanned {before}")
                        }
                        "leave" if by_other => format!("{actor} removed {before}"),
                        "leave" if prev_ms == Some("invite") => {
                            format!("{before} rejected the invitation")
                        }
                        "leave" => format!("{before} left"),
                        "ban" => format!("{actor} banned {before}"),
                        "knock" => format!("{before} asked to join"),
                        other => format!(
                            "{before}'s membership became {}",
                            crate::session::sanitize(other)
                        ),
                    };
                    let text = match c.get("reason").and_then(Value::as_str) {
                        Some(r) if !r.is_empty() => format!("{text}: {r}"),
                        _ => text,
                    };
                    match (ms, new_name) {
                        ("join" | "invite", Some(n)) => {
                            current.insert(target.to_owned(), n);
                        }
                        ("join" | "invite", None) => {
                            current.remove(target);
                        }
                        _ => {}
                    }
                    items.push(Item::Notice { event: e, text });
                }
                "m.room.name" => {
                    let n = c.get("name").and_then(Value::as_str).unwrap_or("");
                    let text = if n.is_empty() {
                        format!("{} removed the room name", who(&current, sender))
                    } else {
                        format!("{} changed the room name to {n}", who(&current, sender))
                    };
                    room_name = (!n.is_empty()).then(|| n.to_owned());
                    items.push(Item::Notice { event: e, text });
                }
                "m.room.topic" => {
                    let t = c.get("topic").and_then(Value::as_str).unwrap_or("");
                    items.push(Item::Notice {
                        event: e,
                        text: format!("{} changed the topic to {t}", who(&current, sender)),
                    });
                }
                "m.reaction" => {
                    let r = relates_to(c);
                    let key = r
                        .and_then(|r| r.get("key"))
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    let what = r
                        .and_then(|r| r.get("event_id"))
                        .and_then(Value::as_str)
                        .and_then(|t| by_id.get(t))
                        .map(|t| {
                            let body = t
                                .content()
                                .get("body")
                                .and_then(Value::as_str)
                                .unwrap_or("");
                            format!(
                                "{}'s message \"{}\"",
                                who(&current, t.str("sender")),
                                short(strip_reply_fallback(body))
                            )
                        })
                        .unwrap_or_else(|| "a message not in this export".into());
                    items.push(Item::Notice {
                        event: e,
                        text: format!("{} reacted {key} to {what}", who(&current, sender)),
                    });
                }
                "m.room.create" => items.push(Item::Notice {
                    event: e,
                    text: format!("{} created the room", who(&current, sender)),
                }),
                "m.room.encryption" => items.push(Item::Notice {
                    event: e,
                    text: format!("{} turned on end-to-end encryption", who(&current, sender)),
                }),
                ty => {
                    let field = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("");
                    let w = who(&current, sender);
                    let text = match ty {
                        "m.room.power_levels" => Some(format!("{w} changed the permissions")),
                        "m.room.join_rules" => {
                            Some(format!("{w} set who can join to {}", field("join_rule")))
                        }
                        "m.room.history_visibility" => Some(format!(
                            "{w} set the history visibility to {}",
                            field("history_visibility")
                        )),
                        "m.room.guest_access" => {
                            Some(format!("{w} set guest access to {}", field("guest_access")))
                        }
                        "m.room.canonical_alias" => {
                            Some(format!("{w} set the room address to {}", field("alias")))
                        }
                        "m.room.avatar" => Some(format!("{w} changed the room avatar")),
                        "m.room.redaction" => {
                            Some(format!("{w} deleted a message that is not in this export"))
                        }
                        "m.room.pinned_events" => Some(format!("{w} changed the pinned messages")),
                        "m.room.tombstone" => Some(format!(
                            "{w} replaced this room with {}",
                            field("replacement_room")
                        )),
                        _ if e.event.contains_key("state_key") => {
                            Some(format!("{w} changed the room state ({ty})"))
                        }
                        _ => None,
                    };
                    items.push(match text {
                        Some(text) => Item::Notice { event: e, text },
                        None => Item::Other { event: e, who: w },
                    });
                }
            }
        }
        Timeline {
            items,
            name: room_name,
        }
    }
}

/// `YYYY-MM-DD HH:MM` (UTC) of a Matrix timestamp in milliseconds.
pub fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let (h, m) = ((secs % 86_400) / 3600, (secs % 3600) / 60);
    // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{m:02}")
}

/// What a message says in one line of text, without the sender: the body for text, a
/// description for media (the caller adds where the media went).
pub fn message_text(content: &Map<String, Value>) -> String {
    let body = content.get("body").and_then(Value::as_str).unwrap_or("");
    match content.get("msgtype").and_then(Value::as_str) {
        Some("m.image") => format!("sent an image: {body}"),
        Some("m.file") => format!("sent a file: {body}"),
        Some("m.video") => format!("sent a video: {body}"),
        Some("m.audio") => format!("sent an audio file: {body}"),
        Some("m.location") => format!(
            "shared a location: {body} ({})",
            content.get("geo_uri").and_then(Value::as_str).unwrap_or("")
        ),
        _ => body.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: u64, v: Value) -> Event {
        Event {
            seq,
            event: v.as_object().cloned().unwrap_or_default(),
            class: None,
            session_id: None,
            reason: None,
            media: Vec::new(),
        }
    }

    #[test]
    fn merge_keeps_the_envelope_and_the_clear_relation() {
        let original = json!({
            "type": "m.room.encrypted", "event_id": "$e", "sender": "@a:x", "origin_server_ts": 5,
            "room_id": "!r", "unsigned": {"age": 3},
            "content": {"algorithm": "m.megolm.v1.aes-sha2", "m.relates_to": {"rel_type": "m.replace", "event_id": "$o"}},
        });
        let payload = br#"{"type":"m.room.message","room_id":"!r","content":{"body":"hi","sender":"forged"}}"#;
        let m = merge(original.as_object().unwrap(), payload).unwrap();
        assert_eq!(m["type"], "m.room.message");
        assert_eq!(m["sender"], "@a:x");
        assert_eq!(m["unsigned"]["age"], 3);
        assert_eq!(m["content"]["body"], "hi");
        assert_eq!(m["content"]["m.relates_to"]["event_id"], "$o");
        assert!(merge(original.as_object().unwrap(), b"[1]").is_none());
        assert!(merge(original.as_object().unwrap(), br#"{"content":{}}"#).is_none());
    }

    #[test]
    fn reply_fallbacks_are_stripped() {
        assert_eq!(
            strip_reply_fallback("> <@a:x> hi\n> there\n\nanswer"),
            "answer"
        );
        assert_eq!(strip_reply_fallback("plain"), "plain");
        assert_eq!(strip_reply_fallback("> only a quote"), "> only a quote");
    }

    #[test]
    fn timeline_applies_edits_names_and_redactions() {
        let room = Room {
            room_id: "!r".into(),
            events: vec![
                ev(
                    0,
                    json!({"type": "m.room.member", "state_key": "@a:x", "sender": "@a:x", "event_id": "$m", "content": {"membership": "join", "displayname": "Alice"}}),
                ),
                ev(
                    1,
                    json!({"type": "m.room.message", "sender": "@a:x", "event_id": "$1", "content": {"msgtype": "m.text", "body": "helo"}}),
                ),
                ev(
                    2,
                    json!({"type": "m.room.message", "sender": "@a:x", "event_id": "$2", "content": {"msgtype": "m.text", "body": "* hello", "m.new_content": {"msgtype": "m.text", "body": "hello"}, "m.relates_to": {"rel_type": "m.replace", "event_id": "$1"}}}),
                ),
                // An edit by someone else is not applied.
                ev(
                    3,
                    json!({"type": "m.room.message", "sender": "@b:x", "event_id": "$3", "content": {"msgtype": "m.text", "body": "* pwned", "m.new_content": {"msgtype": "m.text", "body": "pwned"}, "m.relates_to": {"rel_type": "m.replace", "event_id": "$1"}}}),
                ),
                ev(
                    4,
                    json!({"type": "m.room.message", "sender": "@b:x", "event_id": "$4", "content": {"msgtype": "m.text", "body": "> <@a:x> hello\n\nhi Alice", "m.relates_to": {"m.in_reply_to": {"event_id": "$1"}}}}),
                ),
                ev(
                    5,
                    json!({"type": "m.room.message", "sender": "@b:x", "event_id": "$5", "content": {"msgtype": "m.text", "body": "oops"}}),
                ),
                ev(
                    6,
                    json!({"type": "m.room.redaction", "sender": "@b:x", "event_id": "$6", "redacts": "$5", "content": {"reason": "typo"}}),
                ),
                // An edit of a message that did not decrypt: shown itself.
                Event {
                    class: Some(Class::Missing),
                    ..ev(
                        7,
                        json!({"type": "m.room.encrypted", "sender": "@b:x", "event_id": "$7", "content": {}}),
                    )
                },
                ev(
                    8,
                    json!({"type": "m.room.message", "sender": "@b:x", "event_id": "$8", "content": {"msgtype": "m.text", "body": "* fixed", "m.new_content": {"msgtype": "m.text", "body": "fixed"}, "m.relates_to": {"rel_type": "m.replace", "event_id": "$7"}}}),
                ),
            ],
        };
        let t = Timeline::new(&room, &HashMap::new(), None);
        let kinds: Vec<String> = t
            .items
            .iter()
            .map(|i| match i {
                Item::Message {
                    content,
                    edited,
                    who,
                    reply_to,
                    ..
                } => format!(
                    "{who}: {}{}{}",
                    content["body"].as_str().unwrap_or(""),
                    if *edited { " (edited)" } else { "" },
                    reply_to
                        .as_ref()
                        .map(|(w, s)| format!(" re {w}: {s}"))
                        .unwrap_or_default()
                ),
                Item::Redacted {
                    who, by, reason, ..
                } => format!("{who}: deleted by {by:?} {reason:?}"),
                Item::Notice { text, .. } => text.clone(),
                Item::Undecryptable { .. } => "undecryptable".into(),
                Item::Other { .. } => "other".into(),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "Alice joined",
                "Alice: hello (edited)",
                "@b:x: * pwned",
                "@b:x: > <@a:x> hello\n\nhi Alice re Alice: hello",
                "@b:x: deleted by Some(\"@b:x\") Some(\"typo\")",
                "undecryptable",
                "@b:x: * fixed",
            ]
        );
    }

    #[test]
    fn dates_bound_the_export() {
        let mut h = History::new(vec![], Some("!d".into())).with_dates(Some(10), Some(20));
        for (i, ts) in [5u64, 10, 20, 21].iter().enumerate() {
            h.add(Seen::Other(
                i as u64,
                json!({"type": "m.room.message", "event_id": format!("${ts}"), "origin_server_ts": ts, "content": {}})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            ))
            .unwrap_or_default();
        }
        let (rooms, s) = h.finish();
        assert_eq!(s.outside_dates, 2);
        let ids: Vec<&str> = rooms[0]
            .events
            .iter()
            .filter_map(|e| e.str("event_id"))
            .collect();
        assert_eq!(ids, ["$10", "$20"]);
    }

    #[test]
    fn history_dedupes_and_orders() {
        let mut h = History::new(vec![], Some("!d".into()));
        for (i, (id, ts)) in [("$a", 20u64), ("$b", 10), ("$a", 20), ("$c", 10)]
            .iter()
            .enumerate()
        {
            h.add(Seen::Other(
                i as u64,
                json!({"type": "m.room.message", "event_id": id, "origin_server_ts": ts, "content": {}})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            ))
            .unwrap();
        }
        let (rooms, s) = h.finish();
        assert_eq!(s.outside_dates, 0);
        assert_eq!(s.duplicates, 1);
        assert_eq!(s.unencrypted, 3);
        assert_eq!(rooms.len(), 1);
        assert_eq!(rooms[0].room_id, "!d");
        let ids: Vec<&str> = rooms[0]
            .events
            .iter()
            .filter_map(|e| e.str("event_id"))
            .collect();
        assert_eq!(ids, ["$b", "$c", "$a"]);
    }
}
