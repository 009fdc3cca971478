//! Megolm decryption of room events with the sessions of a key store.
//!
//! One vodozemac [`InboundGroupSession`] is kept per session and reused for every event of
//! that session: vodozemac remembers the latest ratchet it reached, so events decrypted in
//! ascending message index only ever advance it. [`Decryptor::decrypt_batch`] therefore sorts
//! each batch by (session, index) before decrypting, and decrypts the sessions of a batch in
//! parallel. Results come back in the batch's own order.
//!
//! What a session says about its sender comes from the session (the store's copy: its
//! `sender_key` and claimed Ed25519 key), never from the event's `sender_key`/`device_id`.

use std::collections::HashMap;

use rayon::prelude::*;
use vodozemac::megolm::{
    DecryptionError, ExportedSessionKey, InboundGroupSession, MegolmMessage, SessionConfig,
};
use zeroize::Zeroizing;

use super::event::{EncryptedContent, EncryptedEvent};
use crate::session::ExportedSession;

/// Where sessions come from: the key store, or anything else that can look one up.
pub trait SessionSource {
    /// The session `session_id` of `room_id`, if held.
    fn session(
        &mut self,
        room_id: &str,
        session_id: &str,
    ) -> crate::Result<Option<ExportedSession>>;
}

impl SessionSource for crate::store::Store {
    fn session(
        &mut self,
        room_id: &str,
        session_id: &str,
    ) -> crate::Result<Option<ExportedSession>> {
        Ok(self.get(room_id, session_id)?)
    }
}

impl SessionSource for HashMap<(String, String), ExportedSession> {
    fn session(
        &mut self,
        room_id: &str,
        session_id: &str,
    ) -> crate::Result<Option<ExportedSession>> {
        Ok(self
            .get(&(room_id.to_owned(), session_id.to_owned()))
            .cloned())
    }
}

/// What the held copy of a session says about where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionOrigin {
    /// Curve25519 key of the device that created the session (from the session's data).
    pub sender_key: String,
    /// The Ed25519 key the creating device claimed, if the session records one.
    pub claimed_ed25519: Option<String>,
    /// First message index the held copy can decrypt.
    pub first_known_index: u32,
}

/// The result of trying to decrypt one event.
#[derive(Debug)]
pub enum Decryption {
    /// Decrypted and authenticated, and the payload is for the event's room.
    Decrypted {
        /// The Megolm message index.
        message_index: u32,
        /// The decrypted payload (JSON: `type`, `content`, `room_id`).
        plaintext: Zeroizing<Vec<u8>>,
    },
    /// The session is not held.
    NoSession {
        /// The Megolm message index, when the ciphertext is well formed.
        message_index: u32,
    },
    /// The held copy starts after the event's index.
    IndexTooLow {
        /// The Megolm message index.
        message_index: u32,
        /// Where the held copy starts.
        first_known_index: u32,
    },
    /// The event is damaged (or forged, or replayed from another room).
    Damaged {
        /// The Megolm message index, when the ciphertext is well formed.
        message_index: Option<u32>,
        /// What failed.
        reason: Damage,
    },
    /// Not Megolm.
    Unsupported {
        /// The algorithm.
        algorithm: String,
    },
}

/// How an event is damaged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Damage {
    /// The content lacks fields or has the wrong types.
    MalformedContent(String),
    /// The ciphertext is not a Megolm message.
    MalformedCiphertext(String),
    /// The message's Ed25519 signature does not verify with the session's key.
    BadSignature,
    /// The message's MAC does not verify.
    BadMac,
    /// The ciphertext decrypted but its padding is wrong.
    BadPadding,
    /// The payload is not a JSON object with a string `room_id`.
    BadPayload,
    /// The payload is for another room (a replay).
    WrongRoom,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Damage::MalformedContent(r) => write!(f, "malformed content: {r}"),
            Damage::MalformedCiphertext(r) => write!(f, "malformed ciphertext: {r}"),
            Damage::BadSignature => f.write_str("bad signature"),
            Damage::BadMac => f.write_str("bad MAC"),
            Damage::BadPadding => f.write_str("bad padding"),
            Damage::BadPayload => f.write_str("the decrypted payload is not a room event"),
            Damage::WrongRoom => f.write_str("the decrypted payload is for another room"),
        }
    }
}

/// The message index of a Megolm ciphertext, read without any key (the index is in the clear).
pub fn message_index(ciphertext: &str) -> Result<u32, Damage> {
    MegolmMessage::from_base64(ciphertext)
        .map(|m| m.message_index())
        .map_err(|e| Damage::MalformedCiphertext(e.to_string()))
}

/// The `room_id` of a decrypted payload, when the payload is a valid JSON object. The whole
/// payload is parsed (not just `room_id` picked out): skipping a field does not validate it,
/// and a payload called decrypted must be JSON a consumer can read.
fn payload_room(plaintext: &[u8]) -> Option<String> {
    match serde_json::from_slice::<serde_json::Value>(plaintext).ok()? {
        serde_json::Value::Object(mut m) => match m.remove("room_id")? {
            serde_json::Value::String(r) => Some(r),
            _ => None,
        },
        _ => None,
    }
}

/// A held session, ready to decrypt.
struct Held {
    inbound: InboundGroupSession,
    origin: SessionOrigin,
}

impl Held {
    fn new(s: &ExportedSession) -> Option<Held> {
        let key = ExportedSessionKey::from_base64(s.expose_session_key()).ok()?;
        Some(Held {
            inbound: InboundGroupSession::import(&key, SessionConfig::version_1()),
            origin: SessionOrigin {
                sender_key: s.sender_key.clone(),
                claimed_ed25519: s
                    .sender_claimed_keys
                    .get("ed25519")
                    .and_then(|v| v.as_str())
                    .map(str::to_owned),
                first_known_index: s.first_known_index(),
            },
        })
    }

    fn decrypt(&mut self, room_id: &str, msg: &MegolmMessage) -> Decryption {
        let index = msg.message_index();
        let damaged = |reason| Decryption::Damaged {
            message_index: Some(index),
            reason,
        };
        match self.inbound.decrypt(msg) {
            Ok(d) => {
                let plaintext = Zeroizing::new(d.plaintext);
                match payload_room(&plaintext) {
                    Some(r) if r == room_id => Decryption::Decrypted {
                        message_index: index,
                        plaintext,
                    },
                    Some(_) => damaged(Damage::WrongRoom),
                    None => damaged(Damage::BadPayload),
                }
            }
            Err(DecryptionError::UnknownMessageIndex(first, _)) => Decryption::IndexTooLow {
                message_index: index,
                first_known_index: first,
            },
            Err(DecryptionError::Signature(_)) => damaged(Damage::BadSignature),
            Err(DecryptionError::InvalidMAC(_) | DecryptionError::InvalidMACLength(..)) => {
                damaged(Damage::BadMac)
            }
            Err(DecryptionError::InvalidPadding(_)) => damaged(Damage::BadPadding),
        }
    }
}

/// Decrypts events, keeping one inbound session per Megolm session.
pub struct Decryptor {
    /// (room, session) → the held session, or `None` once known not to be held.
    cache: HashMap<(String, String), Option<Held>>,
}

impl std::fmt::Debug for Decryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decryptor")
            .field("sessions", &self.cache.len())
            .finish_non_exhaustive()
    }
}

impl Default for Decryptor {
    fn default() -> Self {
        Self::new()
    }
}

/// The events of one session in a batch: (room, session), its held copy, their positions.
type Group = ((String, String), Option<Held>, Vec<usize>);

/// One event of a batch, prepared for decryption.
enum Prepared {
    Done(Decryption),
    Message(MegolmMessage),
}

impl Decryptor {
    /// An empty cache.
    pub fn new() -> Self {
        Decryptor {
            cache: HashMap::new(),
        }
    }

    /// What the held copy of a session says about its origin (after it was looked up by a
    /// batch), `None` when the session is not held.
    pub fn origin(&self, room_id: &str, session_id: &str) -> Option<&SessionOrigin> {
        self.cache
            .get(&(room_id.to_owned(), session_id.to_owned()))
            .and_then(|h| h.as_ref())
            .map(|h| &h.origin)
    }

    /// Sessions looked up so far (held or not).
    pub fn sessions_seen(&self) -> usize {
        self.cache.len()
    }

    /// Decrypt a batch of events; the results are in the batch's order.
    pub fn decrypt_batch(
        &mut self,
        source: &mut dyn SessionSource,
        events: &[EncryptedEvent],
    ) -> crate::Result<Vec<Decryption>> {
        let mut prepared: Vec<Prepared> = events
            .par_iter()
            .map(|e| match &e.content {
                EncryptedContent::Unsupported { algorithm } => {
                    Prepared::Done(Decryption::Unsupported {
                        algorithm: algorithm.clone(),
                    })
                }
                EncryptedContent::Malformed { reason, .. } => Prepared::Done(Decryption::Damaged {
                    message_index: None,
                    reason: Damage::MalformedContent(reason.clone()),
                }),
                EncryptedContent::Megolm(m) => match MegolmMessage::from_base64(&m.ciphertext) {
                    Ok(msg) => Prepared::Message(msg),
                    Err(e) => Prepared::Done(Decryption::Damaged {
                        message_index: None,
                        reason: Damage::MalformedCiphertext(e.to_string()),
                    }),
                },
            })
            .collect();

        // Group the decryptable events by session, in ascending message index.
        let mut groups: HashMap<(String, String), Vec<usize>> = HashMap::new();
        for (i, (e, p)) in events.iter().zip(&prepared).enumerate() {
            if let (Prepared::Message(_), EncryptedContent::Megolm(m)) = (p, &e.content) {
                groups
                    .entry((e.room_id.clone(), m.session_id.clone()))
                    .or_default()
                    .push(i);
            }
        }
        // Look each session up once (the store is not shared between threads), then take the
        // held sessions out of the cache so that each group owns its own.
        let mut work: Vec<Group> = Vec::with_capacity(groups.len());
        for (key, mut idx) in groups {
            if !self.cache.contains_key(&key) {
                let held = source.session(&key.0, &key.1)?.as_ref().and_then(Held::new);
                self.cache.insert(key.clone(), held);
            }
            let held = self.cache.get_mut(&key).and_then(Option::take);
            idx.sort_by_key(|&i| match &prepared[i] {
                Prepared::Message(m) => m.message_index(),
                Prepared::Done(_) => 0,
            });
            work.push((key, held, idx));
        }
        let results: Vec<(usize, Decryption)> = work
            .par_iter_mut()
            .flat_map_iter(|(key, held, idx)| {
                let room = key.0.as_str();
                let prepared = &prepared;
                let mut out = Vec::with_capacity(idx.len());
                for &i in idx.iter() {
                    let Prepared::Message(msg) = &prepared[i] else {
                        continue;
                    };
                    let d = match held {
                        Some(h) => h.decrypt(room, msg),
                        None => Decryption::NoSession {
                            message_index: msg.message_index(),
                        },
                    };
                    out.push((i, d));
                }
                out
            })
            .collect();
        for (key, held, _) in work {
            if held.is_some() {
                self.cache.insert(key, held);
            }
        }
        for (i, d) in results {
            prepared[i] = Prepared::Done(d);
        }
        Ok(prepared
            .into_iter()
            .map(|p| match p {
                Prepared::Done(d) => d,
                // Every message was handed to its group above.
                Prepared::Message(m) => Decryption::NoSession {
                    message_index: m.message_index(),
                },
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::room::event::MegolmContent;
    use serde_json::json;
    use vodozemac::megolm::{GroupSession, SessionKey};

    const ROOM: &str = "!room:example.org";
    const SENDER_KEY: &str = "avEwy4DMU3fNx6CSfa/yRXF0b+bddyuLl3FIao0PxXw";

    /// The session held from index `from`; `start` is the session key taken before any
    /// message was encrypted.
    fn session_json(g: &GroupSession, start: &SessionKey, from: u32) -> ExportedSession {
        let mut inbound = InboundGroupSession::new(start, SessionConfig::version_1());
        let key = inbound.export_at(from).unwrap();
        let v = json!({
            "algorithm": "m.megolm.v1.aes-sha2",
            "room_id": ROOM,
            "sender_key": SENDER_KEY,
            "session_id": g.session_id(),
            "session_key": key.to_base64(),
            "sender_claimed_keys": {"ed25519": "2xzwVVMnRIybtJe6B4/MOSbLOMI9K4b7wySWXLNaqjg"},
            "forwarding_curve25519_key_chain": [],
        });
        ExportedSession::from_json(&serde_json::to_vec(&v).unwrap()).unwrap()
    }

    fn event(g: &mut GroupSession, room_in_payload: &str, body: &str) -> EncryptedEvent {
        let payload = json!({"type": "m.room.message", "content": {"body": body}, "room_id": room_in_payload});
        let msg = g.encrypt(serde_json::to_vec(&payload).unwrap());
        EncryptedEvent {
            index: 0,
            event_id: None,
            room_id: ROOM.into(),
            sender: Some("@bob:example.org".into()),
            origin_server_ts: None,
            membership: None,
            content: EncryptedContent::Megolm(MegolmContent {
                ciphertext: msg.to_base64(),
                session_id: g.session_id(),
                claimed_sender_key: Some("forged".into()),
                claimed_device_id: None,
            }),
        }
    }

    fn body(d: &Decryption) -> String {
        match d {
            Decryption::Decrypted { plaintext, .. } => {
                let v: serde_json::Value = serde_json::from_slice(plaintext).unwrap();
                v["content"]["body"].as_str().unwrap().to_owned()
            }
            other => panic!("not decrypted: {other:?}"),
        }
    }

    /// A new session, its key before any message, and `n` events "m0".. of it.
    fn group_with_events(n: u32) -> (GroupSession, SessionKey, Vec<EncryptedEvent>) {
        let mut g = GroupSession::new(SessionConfig::version_1());
        let start = g.session_key();
        let evs = (0..n)
            .map(|i| event(&mut g, ROOM, &format!("m{i}")))
            .collect();
        (g, start, evs)
    }

    #[test]
    fn decrypts_in_any_order_and_reports_the_session_origin() {
        let (g, start, evs) = group_with_events(20);
        let mut src = HashMap::new();
        src.insert(
            (ROOM.to_owned(), g.session_id()),
            session_json(&g, &start, 0),
        );
        let mut d = Decryptor::new();
        // Descending order (as /messages with dir=b gives), in two batches.
        let rev: Vec<EncryptedEvent> = evs.iter().rev().cloned().collect();
        let mut out = d.decrypt_batch(&mut src, &rev[..10]).unwrap();
        out.extend(d.decrypt_batch(&mut src, &rev[10..]).unwrap());
        let bodies: Vec<String> = out.iter().map(body).collect();
        let want: Vec<String> = (0..20).rev().map(|i| format!("m{i}")).collect();
        assert_eq!(bodies, want);
        let origin = d.origin(ROOM, &g.session_id()).unwrap();
        assert_eq!(origin.sender_key, SENDER_KEY);
        assert_eq!(origin.first_known_index, 0);
    }

    #[test]
    fn each_failure_has_its_reason() {
        let (mut g, start, evs) = group_with_events(6);
        let wrong_room = event(&mut g, "!other:example.org", "replayed");
        let mut tampered = event(&mut g, ROOM, "x");
        if let EncryptedContent::Megolm(m) = &mut tampered.content {
            let mut b = MegolmMessage::from_base64(&m.ciphertext)
                .unwrap()
                .to_bytes();
            b[10] ^= 1;
            m.ciphertext =
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD_NO_PAD, b);
        }
        let mut garbage = evs[0].clone();
        if let EncryptedContent::Megolm(m) = &mut garbage.content {
            m.ciphertext = "not base64!".into();
        }
        let mut src = HashMap::new();
        src.insert(
            (ROOM.to_owned(), g.session_id()),
            session_json(&g, &start, 5),
        );
        let batch = vec![
            evs[2].clone(),
            evs[5].clone(),
            wrong_room,
            tampered,
            garbage,
        ];
        let out = Decryptor::new().decrypt_batch(&mut src, &batch).unwrap();
        assert!(matches!(
            out[0],
            Decryption::IndexTooLow {
                message_index: 2,
                first_known_index: 5
            }
        ));
        assert_eq!(body(&out[1]), "m5");
        assert!(matches!(
            out[2],
            Decryption::Damaged {
                reason: Damage::WrongRoom,
                message_index: Some(6)
            }
        ));
        assert!(matches!(
            out[3],
            Decryption::Damaged {
                reason: Damage::BadSignature,
                ..
            }
        ));
        assert!(matches!(
            out[4],
            Decryption::Damaged {
                reason: Damage::MalformedCiphertext(_),
                message_index: None
            }
        ));

        // A payload that is not valid JSON (a lone surrogate outside room_id) is damaged.
        let mut bad_json = evs[0].clone();
        let (mut g2, start2, _) = group_with_events(0);
        let msg = g2.encrypt(r#"{"room_id":"!room:example.org","content":{"body":"\ud800"}}"#);
        bad_json.content = EncryptedContent::Megolm(MegolmContent {
            ciphertext: msg.to_base64(),
            session_id: g2.session_id(),
            claimed_sender_key: None,
            claimed_device_id: None,
        });
        let mut src2 = HashMap::new();
        src2.insert(
            (ROOM.to_owned(), g2.session_id()),
            session_json(&g2, &start2, 0),
        );
        let out = Decryptor::new()
            .decrypt_batch(&mut src2, &[bad_json])
            .unwrap();
        assert!(matches!(
            out[0],
            Decryption::Damaged {
                reason: Damage::BadPayload,
                ..
            }
        ));

        let out = Decryptor::new()
            .decrypt_batch(&mut HashMap::new(), &evs[..1])
            .unwrap();
        assert!(matches!(out[0], Decryption::NoSession { message_index: 0 }));
    }
}
