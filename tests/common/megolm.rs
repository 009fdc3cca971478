//! Megolm sessions made in the tests with vodozemac: plain export entries for a group session
//! ([`entry`]), and [`GenSession`], a session with its own sender keys that can be exported at
//! any index, as an `ExportedSession` or as backup data.

use serde_json::{Value, json};
use vodozemac::megolm::{GroupSession, InboundGroupSession, SessionConfig};

use super::backup_cipher::{b64d, b64e};

/// A sender key and claimed key (not checked against anything by mxkeys).
pub const SENDER_KEY: &str = "DeHIg4gwhClxzFYcmNntPNF9YtsdZbmMy8+3kzCMXHA";
/// The claimed Ed25519 key of [`entry`].
const CLAIMED_ED25519: &str = "FoFzeER5D16p2zgy6vMD9jttW+1BWvgAKt840xmMP3Q";

/// A fresh outbound session.
pub fn new_group() -> GroupSession {
    GroupSession::new(SessionConfig::version_1())
}

/// The inbound side of `group`, from its current ratchet.
fn inbound_of(group: &GroupSession) -> InboundGroupSession {
    InboundGroupSession::new(&group.session_key(), SessionConfig::version_1())
}

/// The export-format key of `group` at `index`.
pub fn key_at(group: &GroupSession, index: u32) -> String {
    inbound_of(group).export_at(index).unwrap().to_base64()
}

/// One entry of an export file's JSON array.
fn export_json(
    room: &str,
    session_id: &str,
    sender_key: &str,
    session_key: &str,
    ed25519: &str,
    chain: &[&str],
) -> Value {
    json!({
        "algorithm": "m.megolm.v1.aes-sha2",
        "room_id": room,
        "sender_key": sender_key,
        "session_id": session_id,
        "session_key": session_key,
        "sender_claimed_keys": {"ed25519": ed25519},
        "forwarding_curve25519_key_chain": chain,
    })
}

/// An export entry for `group` at `index` in `room`.
pub fn entry(group: &GroupSession, room: &str, index: u32) -> Value {
    export_json(
        room,
        &group.session_id(),
        SENDER_KEY,
        &key_at(group, index),
        CLAIMED_ED25519,
        &[],
    )
}

/// The first known index encoded in an export-format key.
pub fn index_of(key: &str) -> u32 {
    let b = b64d(key);
    u32::from_be_bytes([b[1], b[2], b[3], b[4]])
}

/// The same session id with a ratchet that does not connect to `key`'s.
pub fn forged(key: &str) -> String {
    let mut b = b64d(key);
    for x in &mut b[5..37] {
        *x ^= 0x5a;
    }
    b64e(&b)
}

/// A Megolm session made here, with its own sender keys, exportable at any index.
pub struct GenSession {
    /// Room.
    pub room_id: String,
    /// Session id.
    pub session_id: String,
    /// Curve25519 key of the "sender".
    pub sender_key: String,
    /// Ed25519 key the "sender" claims.
    pub ed25519: String,
    outbound: GroupSession,
    inbound: InboundGroupSession,
}

impl GenSession {
    /// A fresh session in `room_id`.
    pub fn new(room_id: &str) -> GenSession {
        let outbound = new_group();
        let inbound = inbound_of(&outbound);
        GenSession {
            room_id: room_id.to_string(),
            session_id: outbound.session_id(),
            sender_key:
                vodozemac::Curve25519PublicKey::from(&vodozemac::Curve25519SecretKey::new())
                    .to_base64(),
            ed25519: vodozemac::Ed25519SecretKey::new().public_key().to_base64(),
            outbound,
            inbound,
        }
    }

    /// The session key exported at `index` (unpadded base64).
    pub fn key_at(&mut self, index: u32) -> String {
        let k = self.inbound.export_at(index).expect("exportable index");
        k.to_base64()
    }

    /// The export-file entry of this session at `index`, with this forwarding chain.
    pub fn export_entry(&mut self, index: u32, chain: &[&str]) -> Value {
        let key = self.key_at(index);
        export_json(
            &self.room_id,
            &self.session_id,
            &self.sender_key,
            &key,
            &self.ed25519,
            chain,
        )
    }

    /// The session as `mxkeys::session::ExportedSession` at `index`.
    pub fn exported(&mut self, index: u32, chain: &[&str]) -> mxkeys::session::ExportedSession {
        let e = self.export_entry(index, chain);
        mxkeys::session::ExportedSession::from_json(&serde_json::to_vec(&e).unwrap())
            .unwrap_or_else(|e| panic!("generated session does not parse: {e:?}"))
    }

    /// Encrypt a message (advances the outbound ratchet).
    pub fn encrypt(&mut self, plaintext: &str) -> String {
        self.outbound.encrypt(plaintext).to_base64()
    }

    /// Decrypt a Megolm message (base64) of this session: the plaintext and its index, or
    /// vodozemac's reason for refusing it.
    pub fn decrypt(&mut self, ciphertext: &str) -> Result<(String, u32), String> {
        let msg =
            vodozemac::megolm::MegolmMessage::from_base64(ciphertext).map_err(|e| e.to_string())?;
        let d = self.inbound.decrypt(&msg).map_err(|e| e.to_string())?;
        Ok((
            String::from_utf8(d.plaintext).map_err(|e| e.to_string())?,
            d.message_index,
        ))
    }

    /// The index the next [`GenSession::encrypt`] encrypts at.
    pub fn next_index(&self) -> u32 {
        self.outbound.message_index()
    }

    /// The content of an `m.room.encrypted` event holding a text message `body` for this
    /// session's room, at the next index, as `device_id` of the sender sends it.
    pub fn room_message(&mut self, body: &str, device_id: &str) -> Value {
        let payload = json!({
            "type": "m.room.message",
            "content": {"msgtype": "m.text", "body": body},
            "room_id": self.room_id,
        });
        json!({
            "algorithm": "m.megolm.v1.aes-sha2",
            "ciphertext": self.encrypt(&payload.to_string()),
            "session_id": self.session_id,
            "sender_key": self.sender_key,
            "device_id": device_id,
        })
    }

    /// `KeyBackupData` (JSON) for this session at `index`, encrypted to `public_key` with
    /// `mxkeys::backup::encrypt_session`, with this `forwarded_count`.
    pub fn backup_data(
        &mut self,
        public_key: &mxkeys::backup::BackupPublicKey,
        index: u32,
        forwarded_count: u32,
    ) -> Value {
        let s = self.exported(index, &[]);
        let d = mxkeys::backup::encrypt_session(public_key, &s, forwarded_count, false).unwrap();
        assert_eq!(d.first_message_index, index);
        serde_json::to_value(&d).unwrap()
    }
}

/// An `m.room.encrypted` room event of `group` at its next index: `ty` and `content`
/// encrypted for `payload_room` (normally `room`), sent by `sender` in `room` at `ts`.
pub fn encrypted_event(
    group: &mut GroupSession,
    room: &str,
    payload_room: &str,
    (ty, content): (&str, Value),
    (event_id, sender, ts): (&str, &str, u64),
) -> Value {
    let payload = json!({"type": ty, "content": content, "room_id": payload_room});
    let msg = group.encrypt(serde_json::to_vec(&payload).unwrap());
    json!({
        "type": "m.room.encrypted",
        "event_id": event_id,
        "sender": sender,
        "origin_server_ts": ts,
        "room_id": room,
        "content": {
            "algorithm": "m.megolm.v1.aes-sha2",
            "ciphertext": msg.to_base64(),
            "session_id": group.session_id(),
            "sender_key": SENDER_KEY,
            "device_id": "DEVICE",
        },
        "unsigned": {"membership": "join"},
    })
}
