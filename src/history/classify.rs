//! One class for every encrypted event, and the per-room, per-session report built from them.
//!
//! The class names are a contract (they appear in `--json` output and in scripts):
//! `decrypted`, `in_backup`, `later_index`, `missing`, `before_join`, `damaged`,
//! `unsupported`. See [`Class`] for what each means and the order the rules apply in.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use crate::progress::Progress;
use crate::room::event::{EncryptedContent, EncryptedEvent};
use crate::room::megolm::{Decryption, SessionOrigin};

/// What became of one encrypted event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    /// Decrypted and authenticated with a held session, payload for this room.
    Decrypted,
    /// Not decryptable with the store, but a copy in the server backup starts at or before
    /// the event's index (known from the backup's metadata, without decrypting it).
    InBackup,
    /// A copy exists (store or backup) but the best one starts after the event's index.
    LaterIndex,
    /// No copy in the store, nor in the backup (when the backup was consulted).
    Missing,
    /// Undecryptable, and the account was not joined when it was sent (`unsigned.membership`
    /// other than `join`, MSC4115): expected, not a loss.
    BeforeJoin,
    /// Bad signature or MAC, malformed content or ciphertext, or a payload for another room.
    Damaged,
    /// Another algorithm than `m.megolm.v1.aes-sha2`.
    Unsupported,
}

impl Class {
    /// Every class, in report order.
    pub const ALL: [Class; 7] = [
        Class::Decrypted,
        Class::InBackup,
        Class::LaterIndex,
        Class::Missing,
        Class::BeforeJoin,
        Class::Damaged,
        Class::Unsupported,
    ];

    /// The contract name.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Decrypted => "decrypted",
            Class::InBackup => "in_backup",
            Class::LaterIndex => "later_index",
            Class::Missing => "missing",
            Class::BeforeJoin => "before_join",
            Class::Damaged => "damaged",
            Class::Unsupported => "unsupported",
        }
    }

    /// Is the event readable, or expectedly unreadable (nothing to fix)?
    pub fn is_fine(self) -> bool {
        matches!(self, Class::Decrypted | Class::BeforeJoin)
    }
}

impl std::fmt::Display for Class {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Class {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The first message index of each session in the server backup, from a saved
/// `GET /room_keys/keys` response's metadata (nothing is decrypted).
#[derive(Debug, Default, Clone)]
pub struct BackupIndex {
    first: HashMap<(String, String), u32>,
}

impl BackupIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Record that the backup holds `session_id` of `room_id` from `first_message_index`
    /// (the lowest index wins when a session is given twice).
    pub fn insert(&mut self, room_id: &str, session_id: &str, first_message_index: u32) {
        self.first
            .entry((room_id.to_owned(), session_id.to_owned()))
            .and_modify(|i| *i = (*i).min(first_message_index))
            .or_insert(first_message_index);
    }

    /// Read a saved `GET /room_keys/keys` response body.
    pub fn from_saved_response(
        reader: impl std::io::Read,
        progress: &dyn Progress,
    ) -> crate::Result<Self> {
        let mut b = BackupIndex::new();
        crate::client::Client::parse_saved_keys(reader, progress, &mut |k| {
            b.insert(&k.room_id, &k.session_id, k.data.first_message_index);
            Ok(())
        })?;
        Ok(b)
    }

    /// Where the backup's copy of a session starts, if it has one.
    pub fn first_index(&self, room_id: &str, session_id: &str) -> Option<u32> {
        self.first
            .get(&(room_id.to_owned(), session_id.to_owned()))
            .copied()
    }

    /// Number of sessions in the index.
    pub fn len(&self) -> usize {
        self.first.len()
    }

    /// Is the index empty?
    pub fn is_empty(&self) -> bool {
        self.first.is_empty()
    }
}

/// The class of one event, given what decrypting it gave and, when known, the backup's index.
///
/// The rules, in order: decrypted, damaged and unsupported come from decryption itself; an
/// event the store cannot decrypt is `in_backup` when the backup's copy reaches it (even if
/// the account had not joined: the backup would make it readable), else `before_join` when
/// `unsigned.membership` says the account was not joined, else `later_index` when some copy
/// exists, else `missing`. Without a backup index, `in_backup` never occurs.
pub fn classify(ev: &EncryptedEvent, d: &Decryption, backup: Option<&BackupIndex>) -> Class {
    let (index, store_first) = match d {
        Decryption::Decrypted { .. } => return Class::Decrypted,
        Decryption::Damaged { .. } => return Class::Damaged,
        Decryption::Unsupported { .. } => return Class::Unsupported,
        Decryption::NoSession { message_index } => (*message_index, None),
        Decryption::IndexTooLow {
            message_index,
            first_known_index,
        } => (*message_index, Some(*first_known_index)),
    };
    let backup_first = backup
        .zip(ev.session_id())
        .and_then(|(b, sid)| b.first_index(&ev.room_id, sid));
    if backup_first.is_some_and(|b| b <= index) {
        return Class::InBackup;
    }
    if ev.membership.as_deref().is_some_and(|m| m != "join") {
        return Class::BeforeJoin;
    }
    if backup_first.is_some() || store_first.is_some() {
        Class::LaterIndex
    } else {
        Class::Missing
    }
}

/// A count per class; serialises as `{class: n}` with every class present.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts([u64; 7]);

impl Counts {
    /// Count one more event of `c`.
    pub fn add(&mut self, c: Class) {
        self.0[c as usize] += 1;
    }

    /// Events of `c`.
    pub fn get(&self, c: Class) -> u64 {
        self.0[c as usize]
    }

    /// Every event counted.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Events that are neither decrypted nor `before_join`.
    pub fn not_fine(&self) -> u64 {
        Class::ALL
            .iter()
            .filter(|c| !c.is_fine())
            .map(|&c| self.get(c))
            .sum()
    }
}

impl Serialize for Counts {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(Class::ALL.len()))?;
        for c in Class::ALL {
            m.serialize_entry(c.as_str(), &self.get(c))?;
        }
        m.end()
    }
}

/// The events of one session (or, for damaged and unsupported events without a usable
/// session id, of none) in one class.
#[derive(Debug, Clone, Serialize)]
pub struct SessionReport {
    /// The session id the events name (`null` when the content has none).
    pub session_id: Option<String>,
    /// Their class.
    pub class: Class,
    /// How many events.
    pub events: u64,
    /// The `sender` (user id) of the first such event, as the homeserver gave it.
    pub sender: Option<String>,
    /// Earliest `origin_server_ts` (ms since the epoch).
    pub first_ts: Option<u64>,
    /// Latest `origin_server_ts` (ms since the epoch).
    pub last_ts: Option<u64>,
    /// Lowest Megolm message index among the events.
    pub min_index: Option<u32>,
    /// Highest Megolm message index among the events.
    pub max_index: Option<u32>,
    /// The creating device's Curve25519 key, from the held session (never from the event).
    pub sender_key: Option<String>,
    /// The Ed25519 key the creating device claimed, from the held session.
    pub sender_claimed_ed25519: Option<String>,
    /// Where the store's copy starts, if the store has one.
    pub store_first_index: Option<u32>,
    /// Where the backup's copy starts, if the backup was given and has one.
    pub backup_first_index: Option<u32>,
    /// The `sender_key` the first event claims: a claim, unverified.
    pub claimed_sender_key: Option<String>,
    /// The `device_id` the first event claims: a claim, unverified.
    pub claimed_device_id: Option<String>,
    /// For `damaged`: what failed first; for `unsupported`: the algorithm.
    pub reason: Option<String>,
}

/// One room of the report.
#[derive(Debug, Clone, Default)]
pub struct RoomReport {
    /// Encrypted events seen in the room.
    pub events: u64,
    /// Their classes.
    pub counts: Counts,
    /// Sessions not fully readable, by (session id, class).
    pub sessions: BTreeMap<(Option<String>, Class), SessionReport>,
}

/// The whole report.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// All rooms' counts together.
    pub counts: Counts,
    /// Rooms by id.
    pub rooms: BTreeMap<String, RoomReport>,
    /// Events read that are not encrypted (not classified).
    pub unencrypted: u64,
    /// Encrypted events skipped because their room was not asked for.
    pub other_rooms: u64,
    /// Was a backup index given (else `in_backup` cannot occur)?
    pub backup_checked: bool,
}

impl Report {
    /// Does every event read as `decrypted` or `before_join`?
    pub fn all_fine(&self) -> bool {
        self.counts.not_fine() == 0
    }

    /// The (room, session) pairs with events of `class`, in room then session order.
    pub fn sessions_of(&self, class: Class) -> Vec<(String, String)> {
        let mut v = Vec::new();
        for (room_id, room) in &self.rooms {
            for (sid, c) in room.sessions.keys() {
                if let (Some(sid), true) = (sid, *c == class) {
                    v.push((room_id.clone(), sid.clone()));
                }
            }
        }
        v
    }

    /// Replace the rooms that `newer` checked again with its view of them, and recount.
    /// The unencrypted and other-room counts are kept (the same events were read again).
    pub fn replace_rooms(&mut self, newer: Report) {
        for (room_id, room) in newer.rooms {
            self.rooms.insert(room_id, room);
        }
        let mut counts = Counts::default();
        for room in self.rooms.values() {
            for c in Class::ALL {
                counts.0[c as usize] += room.counts.get(c);
            }
        }
        self.counts = counts;
        self.backup_checked |= newer.backup_checked;
    }

    /// Count one classified event. `origin` is the held session's data, if any.
    pub fn add(
        &mut self,
        ev: &EncryptedEvent,
        class: Class,
        d: &Decryption,
        origin: Option<&SessionOrigin>,
        backup: Option<&BackupIndex>,
    ) {
        self.counts.add(class);
        let room = self.rooms.entry(ev.room_id.clone()).or_default();
        room.events += 1;
        room.counts.add(class);
        if class.is_fine() {
            return;
        }
        let sid = ev.session_id().map(str::to_owned);
        let index = match d {
            Decryption::Decrypted { message_index, .. }
            | Decryption::NoSession { message_index }
            | Decryption::IndexTooLow { message_index, .. } => Some(*message_index),
            Decryption::Damaged { message_index, .. } => *message_index,
            Decryption::Unsupported { .. } => None,
        };
        let s = room
            .sessions
            .entry((sid.clone(), class))
            .or_insert_with(|| {
                let (claimed_sender_key, claimed_device_id) = match &ev.content {
                    EncryptedContent::Megolm(m) => {
                        (m.claimed_sender_key.clone(), m.claimed_device_id.clone())
                    }
                    _ => (None, None),
                };
                SessionReport {
                    session_id: sid.clone(),
                    class,
                    events: 0,
                    sender: ev.sender.clone(),
                    first_ts: None,
                    last_ts: None,
                    min_index: None,
                    max_index: None,
                    sender_key: origin.map(|o| o.sender_key.clone()),
                    sender_claimed_ed25519: origin.and_then(|o| o.claimed_ed25519.clone()),
                    store_first_index: origin.map(|o| o.first_known_index),
                    backup_first_index: backup
                        .zip(sid.as_deref())
                        .and_then(|(b, sid)| b.first_index(&ev.room_id, sid)),
                    claimed_sender_key,
                    claimed_device_id,
                    reason: match d {
                        Decryption::Damaged { reason, .. } => Some(reason.to_string()),
                        Decryption::Unsupported { algorithm } => Some(algorithm.clone()),
                        _ => None,
                    },
                }
            });
        s.events += 1;
        if let Some(ts) = ev.origin_server_ts {
            s.first_ts = Some(s.first_ts.map_or(ts, |f| f.min(ts)));
            s.last_ts = Some(s.last_ts.map_or(ts, |l| l.max(ts)));
        }
        if let Some(i) = index {
            s.min_index = Some(s.min_index.map_or(i, |m| m.min(i)));
            s.max_index = Some(s.max_index.map_or(i, |m| m.max(i)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::room::event::MegolmContent;
    use crate::room::megolm::Damage;

    fn ev(membership: Option<&str>) -> EncryptedEvent {
        EncryptedEvent {
            index: 0,
            event_id: None,
            room_id: "!r".into(),
            sender: Some("@bob:example.org".into()),
            origin_server_ts: Some(5),
            membership: membership.map(str::to_owned),
            content: EncryptedContent::Megolm(MegolmContent {
                ciphertext: String::new(),
                session_id: "S".into(),
                claimed_sender_key: Some("claimed".into()),
                claimed_device_id: Some("DEV".into()),
            }),
        }
    }

    #[test]
    fn the_rules_in_order() {
        let none = Decryption::NoSession { message_index: 3 };
        let low = Decryption::IndexTooLow {
            message_index: 3,
            first_known_index: 5,
        };
        let mut b = BackupIndex::new();
        assert_eq!(classify(&ev(None), &none, None), Class::Missing);
        assert_eq!(classify(&ev(None), &none, Some(&b)), Class::Missing);
        assert_eq!(classify(&ev(None), &low, Some(&b)), Class::LaterIndex);
        assert_eq!(classify(&ev(Some("join")), &none, None), Class::Missing);
        assert_eq!(classify(&ev(Some("leave")), &none, None), Class::BeforeJoin);
        assert_eq!(classify(&ev(Some("invite")), &low, None), Class::BeforeJoin);
        b.insert("!r", "S", 4);
        assert_eq!(classify(&ev(None), &none, Some(&b)), Class::LaterIndex);
        b.insert("!r", "S", 9);
        assert_eq!(b.first_index("!r", "S"), Some(4));
        b.insert("!r", "S", 3);
        assert_eq!(classify(&ev(None), &none, Some(&b)), Class::InBackup);
        assert_eq!(
            classify(&ev(Some("leave")), &low, Some(&b)),
            Class::InBackup
        );
        let damaged = Decryption::Damaged {
            message_index: Some(3),
            reason: Damage::BadMac,
        };
        assert_eq!(
            classify(&ev(Some("leave")), &damaged, Some(&b)),
            Class::Damaged
        );
    }

    #[test]
    fn report_aggregates_per_session_and_class() {
        let mut r = Report::default();
        let none = Decryption::NoSession { message_index: 3 };
        let mut e = ev(None);
        r.add(&e, Class::Missing, &none, None, None);
        e.origin_server_ts = Some(2);
        r.add(
            &e,
            Class::Missing,
            &Decryption::NoSession { message_index: 7 },
            None,
            None,
        );
        r.add(&ev(Some("leave")), Class::BeforeJoin, &none, None, None);
        assert_eq!(r.counts.get(Class::Missing), 2);
        assert_eq!(r.counts.get(Class::BeforeJoin), 1);
        assert_eq!(r.counts.total(), 3);
        assert!(!r.all_fine());
        let room = &r.rooms["!r"];
        assert_eq!(room.events, 3);
        assert_eq!(room.sessions.len(), 1);
        let s = &room.sessions[&(Some("S".to_owned()), Class::Missing)];
        assert_eq!((s.events, s.first_ts, s.last_ts), (2, Some(2), Some(5)));
        assert_eq!((s.min_index, s.max_index), (Some(3), Some(7)));
        assert_eq!(s.claimed_device_id.as_deref(), Some("DEV"));
        assert_eq!(s.sender_key, None);
        let json = serde_json::to_value(r.counts).unwrap();
        assert_eq!(json.as_object().unwrap().len(), 7);
        assert_eq!(json["missing"], 2);
    }
}
