//! Keeping the server backup and local keys in step without ever making either worse.
//!
//! The spec orders two copies of one session by: verified beats unverified, then the lower
//! first message index, then the lower forwarded count. Synapse replaces a stored key when the
//! new one wins on any single field (synapse#13704), so a careless upload can overwrite a better
//! key. We read the server's metadata first (readable without any key) and send only copies
//! that are strictly better by the spec's order; each such copy also wins under Synapse's rule,
//! so the server never degrades.

use std::collections::{BTreeMap, HashMap};

use sha2::{Digest, Sha256};

use crate::backup::KeyBackupData;

/// Largest request body we send (Synapse drops the connection above 50 MiB, with no 413).
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Most rooms in one request (Synapse on SQLite fails above 996).
pub const MAX_BATCH_ROOMS: usize = 500;

/// What the server holds for one session, readable without the backup key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// First message index.
    pub first_message_index: u32,
    /// Forward count.
    pub forwarded_count: u32,
    /// Verified flag.
    pub is_verified: bool,
}

impl Meta {
    /// The metadata of a `KeyBackupData`.
    pub fn of(d: &KeyBackupData) -> Meta {
        Meta {
            first_message_index: d.first_message_index,
            forwarded_count: d.forwarded_count,
            is_verified: d.is_verified,
        }
    }

    /// Is `self` strictly better than `other` by the spec's order?
    pub fn better_than(&self, other: &Meta) -> bool {
        if self.is_verified != other.is_verified {
            return self.is_verified;
        }
        if self.first_message_index != other.first_message_index {
            return self.first_message_index < other.first_message_index;
        }
        self.forwarded_count < other.forwarded_count
    }

    /// Would Synapse 1.163 replace `stored` with `self`? (Its rule, for tests and reports.)
    pub fn synapse_replaces(&self, stored: &Meta) -> bool {
        (self.is_verified && !stored.is_verified)
            || self.first_message_index < stored.first_message_index
            || self.forwarded_count < stored.forwarded_count
    }
}

/// A compact key for a (room, session) pair.
pub fn pair_key(room_id: &str, session_id: &str) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(room_id.as_bytes());
    h.update([0]);
    h.update(session_id.as_bytes());
    let d = h.finalize();
    let mut k = [0u8; 16];
    k.copy_from_slice(&d[..16]);
    k
}

/// The server's metadata for every session of a backup version, in compact form.
#[derive(Debug, Default)]
pub struct ServerIndex {
    map: HashMap<[u8; 16], Meta>,
}

impl ServerIndex {
    /// An empty index with room for `n` entries: sized once from the backup's key count, so
    /// that filling it never holds the old and the grown table at once.
    pub fn with_capacity(n: usize) -> Self {
        ServerIndex {
            map: HashMap::with_capacity(n),
        }
    }

    /// Record a server entry.
    pub fn insert(&mut self, room_id: &str, session_id: &str, meta: Meta) {
        self.map.insert(pair_key(room_id, session_id), meta);
    }

    /// The server's copy, if any.
    pub fn get(&self, room_id: &str, session_id: &str) -> Option<Meta> {
        self.map.get(&pair_key(room_id, session_id)).copied()
    }

    /// Sessions on the server.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when the server holds nothing.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Why a session is or is not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// The server does not have it.
    New,
    /// Ours is strictly better.
    Better,
    /// The server's copy is as good or better.
    Skip,
}

impl ServerIndex {
    /// Decide for one of our sessions, and record what the server will hold afterwards so
    /// that a second copy in the same run is judged against the first.
    pub fn decide(&mut self, room_id: &str, session_id: &str, ours: Meta) -> Decision {
        let k = pair_key(room_id, session_id);
        let d = judge(self.map.get(&k), ours);
        if d != Decision::Skip {
            self.map.insert(k, ours);
        }
        d
    }

    /// Decide for one of our sessions without recording anything: for a source that holds
    /// each session once (a store), where recording would only grow the index by one entry
    /// per key sent (60 MB at a million keys).
    pub fn judge(&self, room_id: &str, session_id: &str, ours: Meta) -> Decision {
        judge(self.map.get(&pair_key(room_id, session_id)), ours)
    }
}

fn judge(theirs: Option<&Meta>, ours: Meta) -> Decision {
    match theirs {
        None => Decision::New,
        Some(theirs) if ours.better_than(theirs) => Decision::Better,
        Some(_) => Decision::Skip,
    }
}

/// Builds `PUT /room_keys/keys` bodies within the byte and room limits.
#[derive(Debug, Default)]
pub struct BatchBuilder {
    rooms: BTreeMap<String, BTreeMap<String, KeyBackupData>>,
    bytes: usize,
    entries: usize,
    max_bytes: usize,
    max_rooms: usize,
}

/// Rough serialized size of one entry.
fn entry_size(room_id: &str, session_id: &str, d: &KeyBackupData) -> usize {
    room_id.len()
        + session_id.len()
        + d.session_data.ciphertext.len()
        + d.session_data.ephemeral.len()
        + d.session_data.mac.len()
        + 160
}

impl BatchBuilder {
    /// A builder with the default limits.
    pub fn new() -> Self {
        Self::with_limits(MAX_BATCH_BYTES, MAX_BATCH_ROOMS)
    }

    /// A builder with given limits.
    pub fn with_limits(max_bytes: usize, max_rooms: usize) -> Self {
        BatchBuilder {
            max_bytes,
            max_rooms,
            ..Default::default()
        }
    }

    /// Would adding this entry overflow the current batch?
    pub fn would_overflow(&self, room_id: &str, session_id: &str, d: &KeyBackupData) -> bool {
        if self.entries == 0 {
            return false;
        }
        let new_room = !self.rooms.contains_key(room_id);
        self.bytes + entry_size(room_id, session_id, d) > self.max_bytes
            || (new_room && self.rooms.len() >= self.max_rooms)
    }

    /// Add an entry (a later copy of the same session replaces the earlier one).
    pub fn push(&mut self, room_id: String, session_id: String, d: KeyBackupData) {
        self.bytes += entry_size(&room_id, &session_id, &d);
        let room = self.rooms.entry(room_id).or_default();
        if room.insert(session_id, d).is_none() {
            self.entries += 1;
        }
    }

    /// Entries in the batch.
    pub fn len(&self) -> usize {
        self.entries
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Rooms in the batch.
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Take the request body and start a new batch.
    pub fn take_body(&mut self) -> Vec<u8> {
        let rooms = std::mem::take(&mut self.rooms);
        let bytes = std::mem::take(&mut self.bytes);
        self.entries = 0;
        #[derive(serde::Serialize)]
        struct Room {
            sessions: BTreeMap<String, KeyBackupData>,
        }
        #[derive(serde::Serialize)]
        struct Body {
            rooms: BTreeMap<String, Room>,
        }
        let body = Body {
            rooms: rooms
                .into_iter()
                .map(|(r, sessions)| (r, Room { sessions }))
                .collect(),
        };
        // Sized from the estimate (which over-counts): no doubling, no copy of a 4 MiB body.
        let mut out = Vec::with_capacity(bytes);
        match serde_json::to_writer(&mut out, &body) {
            Ok(()) => out,
            Err(_) => Vec::new(),
        }
    }
}

/// How the local store and the server compare.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct StatusCounts {
    /// Same first index on both sides.
    pub same: u64,
    /// Only in the store.
    pub only_local: u64,
    /// Only on the server.
    pub only_server: u64,
    /// The store's copy decrypts more (lower first index).
    pub local_better: u64,
    /// The server's copy decrypts more.
    pub server_better: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(fmi: u32, fc: u32, v: bool) -> Meta {
        Meta {
            first_message_index: fmi,
            forwarded_count: fc,
            is_verified: v,
        }
    }

    /// The ten cases measured against Synapse 1.163 (synapse notes, replacement table).
    #[test]
    fn spec_order_never_degrades_under_synapse_rule() {
        let cases = [
            (m(5, 1, false), m(5, 1, false), false, false),
            (m(5, 1, false), m(6, 2, false), false, false),
            (m(5, 1, false), m(10, 0, false), true, false),
            (m(5, 1, false), m(2, 3, false), true, true),
            (m(5, 1, true), m(1, 1, false), true, false),
            (m(5, 1, true), m(5, 0, false), true, false),
            (m(5, 1, true), m(5, 1, false), false, false),
            (m(1, 0, false), m(9, 9, true), true, true),
            (m(5, 1, true), m(2, 1, true), true, true),
            (m(5, 1, false), m(5, 0, false), true, true),
        ];
        for (stored, new, synapse, spec) in cases {
            assert_eq!(
                new.synapse_replaces(&stored),
                synapse,
                "{stored:?} <- {new:?}"
            );
            assert_eq!(new.better_than(&stored), spec, "{stored:?} <- {new:?}");
            // Whatever we choose to send, Synapse accepts: the server never ends up worse.
            if new.better_than(&stored) {
                assert!(new.synapse_replaces(&stored));
            }
        }
    }

    #[test]
    fn decide_tracks_what_was_sent() {
        let mut idx = ServerIndex::default();
        idx.insert("!r", "s", m(5, 0, false));
        assert_eq!(idx.decide("!r", "s", m(6, 0, false)), Decision::Skip);
        assert_eq!(idx.decide("!r", "s", m(2, 1, false)), Decision::Better);
        assert_eq!(idx.decide("!r", "s", m(3, 0, false)), Decision::Skip);
        assert_eq!(idx.decide("!r", "t", m(3, 0, false)), Decision::New);
        assert_eq!(idx.decide("!r", "t", m(3, 0, false)), Decision::Skip);
    }

    #[test]
    fn judge_decides_the_same_but_records_nothing() {
        let mut idx = ServerIndex::with_capacity(4);
        idx.insert("!r", "s", m(5, 0, false));
        assert_eq!(idx.judge("!r", "s", m(6, 0, false)), Decision::Skip);
        assert_eq!(idx.judge("!r", "s", m(2, 1, false)), Decision::Better);
        // Not recorded: the server's copy is still the one to beat.
        assert_eq!(idx.judge("!r", "s", m(3, 0, false)), Decision::Better);
        assert_eq!(idx.judge("!r", "t", m(3, 0, false)), Decision::New);
        assert_eq!(idx.judge("!r", "t", m(3, 0, false)), Decision::New);
        assert_eq!(idx.len(), 1);
    }

    #[test]
    fn batches_respect_limits() {
        let d = KeyBackupData {
            first_message_index: 0,
            forwarded_count: 0,
            is_verified: false,
            session_data: crate::backup::SessionData {
                ephemeral: "e".into(),
                ciphertext: "c".repeat(400),
                mac: "m".into(),
                extra: Default::default(),
            },
            extra: Default::default(),
        };
        let mut b = BatchBuilder::with_limits(10_000, 3);
        let mut bodies = Vec::new();
        for i in 0..50 {
            let room = format!("!room{}", i % 7);
            let sid = format!("s{i}");
            if b.would_overflow(&room, &sid, &d) {
                assert!(b.room_count() <= 3);
                bodies.push(b.take_body());
            }
            b.push(room, sid, d.clone());
        }
        bodies.push(b.take_body());
        let mut total = 0;
        for body in &bodies {
            assert!(body.len() <= 10_000 + 1000, "{}", body.len());
            let v: serde_json::Value = serde_json::from_slice(body).unwrap();
            let rooms = v["rooms"].as_object().unwrap();
            assert!(rooms.len() <= 3);
            total += rooms
                .values()
                .map(|r| r["sessions"].as_object().unwrap().len())
                .sum::<usize>();
        }
        assert_eq!(total, 50);
    }
}
