//! The exported Megolm session: the JSON model shared by export files and backups, its
//! validation, and the rule for merging two copies of one session.
//!
//! Fields this tool does not know survive import, storage and export unchanged. The
//! shared-history flag is read from any of its three spellings and written as both
//! `shared_history` (the spec's) and `m.shared_history` (matrix-rust-sdk's).

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};
use vodozemac::megolm::{
    ExportedSessionKey, InboundGroupSession, SessionConfig, SessionKey, SessionOrdering,
};
use zeroize::Zeroizing;

mod point_check;

/// The Megolm v1 algorithm name.
pub const MEGOLM_V1: &str = "m.megolm.v1.aes-sha2";
/// Every spelling of the shared-history flag, newest first.
pub const SHARED_HISTORY_KEYS: [&str; 3] = [
    "shared_history",
    "m.shared_history",
    "org.matrix.msc3061.shared_history",
];
/// Length of a v1 (export format) session key.
pub const EXPORTED_KEY_LEN: usize = 165;
/// Length of a v2 (sharing format, signed) session key.
pub const SHARED_KEY_LEN: usize = 229;

/// Padding-indifferent decoder for fields that real clients write either way.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why one session entry was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The entry is not a JSON object.
    #[error("not a JSON object")]
    NotAnObject,
    /// A required field is missing.
    #[error("missing field \"{0}\"")]
    Missing(&'static str),
    /// A field has the wrong JSON type.
    #[error("field \"{0}\" is not {1}")]
    WrongType(&'static str, &'static str),
    /// Algorithm other than Megolm.
    #[error("unsupported algorithm {0:?}")]
    UnknownAlgorithm(String),
    /// `session_key` is not base64.
    #[error("session_key is not base64")]
    KeyBase64,
    /// `session_key` has the wrong length.
    #[error("session_key is {0} bytes long, expected 165 (export format) or 229 (sharing format)")]
    KeyLength(usize),
    /// `session_key` has a version byte that does not match its length.
    #[error("session_key has version byte {0}, expected 1 (export format) or 2 (sharing format)")]
    KeyVersion(u8),
    /// `session_key` does not decode (bad Ed25519 key).
    #[error("session_key is not a valid Megolm key: {0}")]
    KeyInvalid(String),
    /// `session_id` does not match the key.
    #[error("session_id {claimed} does not match the id of its session_key ({actual})")]
    IdMismatch {
        /// What the entry says.
        claimed: String,
        /// What the key says.
        actual: String,
    },
    /// `room_id` is not a room id.
    #[error("room_id {0} is not a Matrix room id")]
    BadRoomId(String),
    /// `sender_key` is not a Curve25519 key.
    #[error("sender_key is not an unpadded base64 Curve25519 key")]
    BadSenderKey,
    /// The entry is implausibly large.
    #[error("the entry is {0} bytes long, far larger than any session")]
    TooLarge(u64),
}

/// Why an entry could not be turned into a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryError {
    /// The entry is not valid JSON: the whole payload is unusable.
    Syntax(String),
    /// The entry is JSON but not a valid session: only this entry is rejected.
    Invalid(SessionError),
}

/// Printable, bounded form of a string that came from a file or a server.
pub fn sanitize(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i >= 100 {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A validated Megolm session as it appears in a key export.
#[derive(Clone)]
pub struct ExportedSession {
    /// `m.megolm.v1.aes-sha2`.
    pub algorithm: String,
    /// Room the session belongs to.
    pub room_id: String,
    /// Curve25519 identity key of the creating device (unpadded base64).
    pub sender_key: String,
    /// The session's Ed25519 key, unpadded base64.
    pub session_id: String,
    session_key: Zeroizing<String>,
    /// Keys the sender claimed (usually `{"ed25519": ...}`).
    pub sender_claimed_keys: Map<String, Value>,
    /// Curve25519 keys of devices that forwarded the session.
    pub forwarding_curve25519_key_chain: Vec<Value>,
    /// MSC3061 shared history.
    pub shared_history: bool,
    /// Fields this tool does not know, kept as they came.
    pub extra: Map<String, Value>,
    first_known_index: u32,
}

impl std::fmt::Debug for ExportedSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportedSession")
            .field("room_id", &self.room_id)
            .field("session_id", &self.session_id)
            .field("first_known_index", &self.first_known_index)
            .field("session_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl PartialEq for ExportedSession {
    fn eq(&self, o: &Self) -> bool {
        use subtle::ConstantTimeEq;
        self.algorithm == o.algorithm
            && self.room_id == o.room_id
            && self.sender_key == o.sender_key
            && self.session_id == o.session_id
            && bool::from(self.session_key.as_bytes().ct_eq(o.session_key.as_bytes()))
            && self.sender_claimed_keys == o.sender_claimed_keys
            && self.forwarding_curve25519_key_chain == o.forwarding_curve25519_key_chain
            && self.shared_history == o.shared_history
            && self.extra == o.extra
    }
}

/// How an incoming copy of a session relates to the copy already held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ordering {
    /// Same ratchet, lower first known index: it decrypts more.
    Better,
    /// Same ratchet, same index.
    Equal,
    /// Same ratchet, higher first known index.
    Worse,
    /// The ratchets do not connect (or sender, room or algorithm differ).
    Unconnected,
}

fn take_string(v: Option<Value>, k: &'static str) -> Result<String, SessionError> {
    match v {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(SessionError::WrongType(k, "a string")),
        None => Err(SessionError::Missing(k)),
    }
}

/// The fields of one session entry, picked out of the JSON object as it is parsed (no
/// intermediate map for the known fields; unknown fields are kept in `extra`).
#[derive(Default)]
struct Fields {
    algorithm: Option<Value>,
    room_id: Option<Value>,
    sender_key: Option<Value>,
    session_id: Option<Value>,
    session_key: Option<Value>,
    sender_claimed_keys: Option<Value>,
    forwarding_chain: Option<Value>,
    shared_history: bool,
    extra: Map<String, Value>,
}

impl Fields {
    fn slot(&mut self, key: &str) -> Option<&mut Option<Value>> {
        Some(match key {
            "algorithm" => &mut self.algorithm,
            "room_id" => &mut self.room_id,
            "sender_key" => &mut self.sender_key,
            "session_id" => &mut self.session_id,
            "session_key" => &mut self.session_key,
            "sender_claimed_keys" => &mut self.sender_claimed_keys,
            "forwarding_curve25519_key_chain" => &mut self.forwarding_chain,
            _ => return None,
        })
    }

    fn put(&mut self, key: std::borrow::Cow<'_, str>, value: Value) {
        if SHARED_HISTORY_KEYS.contains(&key.as_ref()) {
            self.shared_history |= value == Value::Bool(true);
        } else if let Some(slot) = self.slot(&key) {
            *slot = Some(value);
        } else {
            self.extra.insert(key.into_owned(), value);
        }
    }

    fn from_map(m: Map<String, Value>) -> Fields {
        let mut f = Fields::default();
        for (k, v) in m {
            f.put(k.into(), v);
        }
        f
    }
}

/// Reads an object key, borrowing it from the input when it has no escapes.
struct KeySeed;

impl<'de> serde::de::DeserializeSeed<'de> for KeySeed {
    type Value = std::borrow::Cow<'de, str>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = std::borrow::Cow<'de, str>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(std::borrow::Cow::Borrowed(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(std::borrow::Cow::Owned(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(std::borrow::Cow::Owned(v))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> serde::Deserialize<'de> for Fields {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Fields;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Fields, A::Error> {
                let mut f = Fields::default();
                while let Some(k) = m.next_key_seed(KeySeed)? {
                    let v: Value = m.next_value()?;
                    f.put(k, v);
                }
                Ok(f)
            }
        }
        d.deserialize_map(V)
    }
}

/// Validate a room id: `!` then an opaque part (room version 12 ids have no `:server`).
pub fn valid_room_id(r: &str) -> bool {
    r.len() >= 2
        && r.len() <= 255
        && r.starts_with('!')
        && !r.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// A 32-byte key in unpadded base64: the text itself when already canonical (or stored),
/// re-encoded when padded, `None` when it is not 32 bytes of base64.
fn canonical_key32(text: String, check: Check) -> Option<String> {
    if check == Check::Stored && text.len() == 43 {
        return Some(text);
    }
    let mut b = [0u8; 33];
    let n = LENIENT
        .decode_slice(text.trim_end_matches('=').as_bytes(), &mut b)
        .ok()?;
    if n != 32 {
        return None;
    }
    if text.len() == 43 {
        Some(text)
    } else {
        Some(STANDARD_NO_PAD.encode(&b[..32]))
    }
}

/// What a decoded session key turned out to be.
struct DecodedKey {
    v1_b64: Zeroizing<String>,
    session_id: String,
    index: u32,
}

/// How much to check a session key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Everything, including that the Ed25519 key is a valid point (untrusted input).
    Full,
    /// Everything but the point check, which the caller makes for a whole batch at once
    /// ([`point_check::non_points`]): the elements of an input array.
    Batched,
    /// Only its shape: for rows read back from the store, which were fully checked on the way
    /// in and are authenticated by the store's seal.
    Stored,
}

/// Characters of a canonical (unpadded) v1 session key.
const EXPORTED_KEY_CHARS: usize = 220;

fn decode_session_key(text: Zeroizing<String>, check: Check) -> Result<DecodedKey, SessionError> {
    let canonical = text.len() == EXPORTED_KEY_CHARS && !text.ends_with('=');
    if check == Check::Stored && canonical {
        // A row this tool wrote: only the header is needed (version and first index).
        let mut head = [0u8; 6];
        LENIENT
            .decode_slice(&text.as_bytes()[..8], &mut head)
            .map_err(|_| SessionError::KeyBase64)?;
        if head[0] != 1 {
            return Err(SessionError::KeyVersion(head[0]));
        }
        return Ok(DecodedKey {
            index: u32::from_be_bytes([head[1], head[2], head[3], head[4]]),
            v1_b64: text,
            session_id: String::new(),
        });
    }
    let bytes = Zeroizing::new(
        LENIENT
            .decode(text.trim_end_matches('='))
            .map_err(|_| SessionError::KeyBase64)?,
    );
    let version = bytes.first().copied().unwrap_or(0);
    match (bytes.len(), version) {
        (EXPORTED_KEY_LEN, 1) => {
            // The Ed25519 signing key, the last 32 bytes, is also the session's id.
            let ed25519 = bytes.last_chunk::<32>().ok_or(SessionError::KeyLength(0))?;
            if check == Check::Full && !point_check::is_ed25519_point(ed25519) {
                return Err(point_error(&bytes));
            }
            Ok(DecodedKey {
                v1_b64: if canonical {
                    text
                } else {
                    Zeroizing::new(STANDARD_NO_PAD.encode(&bytes[..]))
                },
                session_id: STANDARD_NO_PAD.encode(ed25519),
                index: u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]),
            })
        }
        (SHARED_KEY_LEN, 2) => {
            // A sharing-format key: verify its signature, then keep it in export format.
            let key = SessionKey::from_bytes(&bytes)
                .map_err(|e| SessionError::KeyInvalid(e.to_string()))?;
            let session = InboundGroupSession::new(&key, SessionConfig::version_1());
            let exported = session.export_at_first_known_index();
            Ok(DecodedKey {
                v1_b64: Zeroizing::new(exported.to_base64()),
                session_id: session.session_id(),
                index: session.first_known_index(),
            })
        }
        (EXPORTED_KEY_LEN | SHARED_KEY_LEN, v) => Err(SessionError::KeyVersion(v)),
        (n, _) => Err(SessionError::KeyLength(n)),
    }
}

/// The checks of an entry that come after its key is decoded: the claimed session id against
/// the key's, and the types of the optional fields, which it returns.
fn checks_after_key(
    key: &mut DecodedKey,
    claimed_id: String,
    sender_claimed_keys: Option<Value>,
    forwarding_chain: Option<Value>,
    check: Check,
) -> Result<(Map<String, Value>, Vec<Value>), SessionError> {
    if check == Check::Stored && key.session_id.is_empty() {
        // Stored rows are bound to their session id by the seal's associated data.
        key.session_id = claimed_id;
    } else if canonical_key32(claimed_id.clone(), Check::Full).as_deref()
        != Some(key.session_id.as_str())
    {
        return Err(SessionError::IdMismatch {
            claimed: sanitize(&claimed_id),
            actual: key.session_id.clone(),
        });
    }
    let sender_claimed_keys = match sender_claimed_keys {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(o)) => o,
        Some(_) => return Err(SessionError::WrongType("sender_claimed_keys", "an object")),
    };
    let forwarding_chain = match forwarding_chain {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => a,
        Some(_) => {
            return Err(SessionError::WrongType(
                "forwarding_curve25519_key_chain",
                "an array of strings",
            ));
        }
    };
    Ok((sender_claimed_keys, forwarding_chain))
}

impl ExportedSession {
    /// Parse one array element. Syntax errors condemn the payload; other errors the entry.
    pub fn from_json(bytes: &[u8]) -> Result<Self, EntryError> {
        Self::parse_json(bytes, Check::Full)
    }

    /// Parse a session this tool stored itself (authenticated by the store's seal): the same
    /// checks but for the Ed25519 point check, which dominates parsing time.
    pub fn from_stored_json(bytes: &[u8]) -> Result<Self, EntryError> {
        Self::parse_json(bytes, Check::Stored)
    }

    fn parse_json(bytes: &[u8], check: Check) -> Result<Self, EntryError> {
        let fields = match serde_json::from_slice::<Fields>(bytes) {
            Ok(f) => f,
            // Valid JSON of another type (a number, an array, ...): only this entry is bad.
            Err(e) if e.classify() == serde_json::error::Category::Data => {
                return match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
                    Ok(_) => Err(EntryError::Invalid(SessionError::NotAnObject)),
                    Err(e) => Err(EntryError::Syntax(e.to_string())),
                };
            }
            Err(e) => return Err(EntryError::Syntax(e.to_string())),
        };
        Self::from_fields(fields, check).map_err(EntryError::Invalid)
    }

    /// Build and validate a session from a JSON object (the array element of an export, or a
    /// backup's decrypted session data with `room_id` and `session_id` added).
    pub fn from_map(m: Map<String, Value>) -> Result<Self, SessionError> {
        Self::from_fields(Fields::from_map(m), Check::Full)
    }

    fn from_fields(m: Fields, check: Check) -> Result<Self, SessionError> {
        let algorithm = take_string(m.algorithm, "algorithm")?;
        if algorithm != MEGOLM_V1 {
            return Err(SessionError::UnknownAlgorithm(sanitize(&algorithm)));
        }
        let room_id = take_string(m.room_id, "room_id")?;
        if !valid_room_id(&room_id) {
            return Err(SessionError::BadRoomId(sanitize(&room_id)));
        }
        let sender_key = take_string(m.sender_key, "sender_key")?;
        let sender_key = canonical_key32(sender_key, check).ok_or(SessionError::BadSenderKey)?;
        let claimed_id = take_string(m.session_id, "session_id")?;
        let key_text = Zeroizing::new(take_string(m.session_key, "session_key")?);
        let mut key = decode_session_key(key_text, check)?;
        let (sender_claimed_keys, forwarding_curve25519_key_chain) = match checks_after_key(
            &mut key,
            claimed_id,
            m.sender_claimed_keys,
            m.forwarding_chain,
            check,
        ) {
            Ok(rest) => rest,
            // A batch defers the point check (`check_points`), but an entry that fails a later
            // check is reported as Full would: its key's point error comes first.
            Err(e) if check == Check::Batched => {
                return Err(not_a_point(&key.v1_b64).unwrap_or(e));
            }
            Err(e) => return Err(e),
        };
        Ok(ExportedSession {
            algorithm,
            room_id,
            sender_key,
            session_id: key.session_id,
            session_key: key.v1_b64,
            sender_claimed_keys,
            forwarding_curve25519_key_chain,
            shared_history: m.shared_history,
            extra: m.extra,
            first_known_index: key.index,
        })
    }

    /// The first message index this copy can decrypt (from the key itself).
    pub fn first_known_index(&self) -> u32 {
        self.first_known_index
    }

    /// The session key in export format (unpadded base64). Secret.
    pub fn expose_session_key(&self) -> &str {
        &self.session_key
    }

    /// Append the canonical JSON form to `out`.
    ///
    /// Written by hand for speed (this runs once per session on every export and store
    /// write); it produces exactly what the `Serialize` impl produces.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"algorithm\":");
        json_str(out, &self.algorithm);
        out.extend_from_slice(b",\"room_id\":");
        json_str(out, &self.room_id);
        out.extend_from_slice(b",\"sender_key\":");
        json_str(out, &self.sender_key);
        out.extend_from_slice(b",\"session_id\":");
        json_str(out, &self.session_id);
        out.extend_from_slice(b",\"session_key\":");
        json_str(out, &self.session_key);
        out.extend_from_slice(b",\"sender_claimed_keys\":");
        // Serialising maps and values into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, &self.sender_claimed_keys);
        out.extend_from_slice(b",\"forwarding_curve25519_key_chain\":");
        let _ = serde_json::to_writer(&mut *out, &self.forwarding_curve25519_key_chain);
        let flag: &[u8] = if self.shared_history {
            b"true"
        } else {
            b"false"
        };
        out.extend_from_slice(b",\"shared_history\":");
        out.extend_from_slice(flag);
        out.extend_from_slice(b",\"m.shared_history\":");
        out.extend_from_slice(flag);
        for (k, v) in &self.extra {
            out.push(b',');
            json_str(out, k);
            out.push(b':');
            let _ = serde_json::to_writer(&mut *out, v);
        }
        out.push(b'}');
    }

    /// The canonical JSON form.
    pub fn to_json(&self) -> Zeroizing<Vec<u8>> {
        let mut v = Zeroizing::new(Vec::with_capacity(700));
        self.write_json(&mut v);
        v
    }

    fn inbound(&self) -> Option<InboundGroupSession> {
        let key = ExportedSessionKey::from_base64(&self.session_key).ok()?;
        Some(InboundGroupSession::import(
            &key,
            SessionConfig::version_1(),
        ))
    }

    /// How `self` (an incoming copy) relates to `held`, the copy already kept.
    pub fn compare_to(&self, held: &ExportedSession) -> Ordering {
        if self.room_id != held.room_id
            || self.session_id != held.session_id
            || self.sender_key != held.sender_key
            || self.algorithm != held.algorithm
        {
            return Ordering::Unconnected;
        }
        match (self.inbound(), held.inbound()) {
            (Some(mut a), Some(mut b)) => match a.compare(&mut b) {
                SessionOrdering::Better => Ordering::Better,
                SessionOrdering::Equal => Ordering::Equal,
                SessionOrdering::Worse => Ordering::Worse,
                SessionOrdering::Unconnected => Ordering::Unconnected,
            },
            _ => Ordering::Unconnected,
        }
    }

    /// Decrypt a Megolm room event's ciphertext (used to prove that keys decrypt history).
    pub fn decrypt_event(&self, ciphertext: &str) -> Option<(Vec<u8>, u32)> {
        let mut s = self.inbound()?;
        let msg = vodozemac::megolm::MegolmMessage::from_base64(ciphertext).ok()?;
        let d = s.decrypt(&msg).ok()?;
        Some((d.plaintext, d.message_index))
    }
}

impl Serialize for ExportedSession {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(9 + self.extra.len()))?;
        m.serialize_entry("algorithm", &self.algorithm)?;
        m.serialize_entry("room_id", &self.room_id)?;
        m.serialize_entry("sender_key", &self.sender_key)?;
        m.serialize_entry("session_id", &self.session_id)?;
        m.serialize_entry("session_key", self.session_key.as_str())?;
        m.serialize_entry("sender_claimed_keys", &self.sender_claimed_keys)?;
        m.serialize_entry(
            "forwarding_curve25519_key_chain",
            &self.forwarding_curve25519_key_chain,
        )?;
        m.serialize_entry("shared_history", &self.shared_history)?;
        m.serialize_entry("m.shared_history", &self.shared_history)?;
        for (k, v) in &self.extra {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// Append `s` as a JSON string: as is when nothing needs escaping (ids and base64, nearly
/// always), through serde_json otherwise.
fn json_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// Parse a whole plaintext JSON array held in memory (small inputs and tests).
pub fn parse_array(json: &[u8]) -> Result<Vec<Result<ExportedSession, SessionError>>, String> {
    let mut out = Vec::new();
    let mut sp = crate::export::ArraySplitter::new();
    sp.feed::<String>(json, &mut |e| {
        match e {
            crate::export::Element::Value { bytes, .. } => {
                match ExportedSession::from_json(bytes) {
                    Ok(s) => out.push(Ok(s)),
                    Err(EntryError::Invalid(e)) => out.push(Err(e)),
                    Err(EntryError::Syntax(e)) => return Err(e),
                }
            }
            crate::export::Element::Oversized { size, .. } => {
                out.push(Err(SessionError::TooLarge(size)))
            }
        }
        Ok(())
    })
    .map_err(|e| match e {
        crate::export::FeedError::Split(e) => e.to_string(),
        crate::export::FeedError::Sink(e) => e,
    })?;
    sp.finish().map_err(|e| e.to_string())?;
    Ok(out)
}

/// Padded standard base64, for callers that need it.
pub fn b64_padded(b: &[u8]) -> String {
    STANDARD.encode(b)
}

#[cfg(test)]
#[allow(
    clippy::items_after_test_module,
    reason = "the streaming parser below came later"
)]
mod tests {
    use super::*;

    /// matrix-rust-sdk's TEST_EXPORT session (spec brief 7.2/7.3).
    const KEY: &str = "AQAAAABvWMNZjKFtebYIePKieQguozuoLgzeY6wKcyJjLJcJtQgy1dPqTBD12U+XrYLrRHnlKmxoozlhFqJl456+9hlHCL+yq+6ScFuBHtJepnY1l2bdLb4T0JMDkNsNErkiLiLnD6yp3JDSjIhkdHxmup/huygrmroq6/L5TaThEoqvW4DPIuO14btKudsS34FF82pwjKS4p6Mlch+0efHAblQV";
    const ID: &str = "gM8i47Xhu0q52xLfgUXzanCMpLinoyVyH7R58cBuVBU";

    fn entry(extra: &str) -> String {
        format!(
            r#"{{"algorithm":"m.megolm.v1.aes-sha2","room_id":"!DovneieKSTkdHKpIXy:morpheus.localhost","sender_key":"DeHIg4gwhClxzFYcmNntPNF9YtsdZbmMy8+3kzCMXHA","session_id":"{ID}","session_key":"{KEY}","sender_claimed_keys":{{"ed25519":"x"}},"forwarding_curve25519_key_chain":[]{extra}}}"#
        )
    }

    #[test]
    fn hand_written_json_equals_serde() {
        let s = ExportedSession::from_json(
            entry(r#","x.weird\"key":"line\nbreak \u0001 \\ \"q\"","shared_history":true,"z":[1,{"a":null}]"#)
                .as_bytes(),
        )
        .unwrap();
        let mut ours = Vec::new();
        s.write_json(&mut ours);
        assert_eq!(ours, serde_json::to_vec(&s).unwrap());
        assert_eq!(ExportedSession::from_json(&ours).unwrap(), s);
    }

    #[test]
    fn parses_and_derives() {
        let s = ExportedSession::from_json(entry("").as_bytes()).unwrap();
        assert_eq!(s.session_id, ID);
        assert_eq!(s.first_known_index(), 0);
        assert!(!s.shared_history);
    }

    #[test]
    fn unknown_fields_survive_and_flag_is_written_twice() {
        let s = ExportedSession::from_json(
            entry(r#","org.matrix.msc3061.shared_history":true,"x.custom":{"a":[1,2]}"#).as_bytes(),
        )
        .unwrap();
        assert!(s.shared_history);
        let v: Value = serde_json::from_slice(&s.to_json()).unwrap();
        assert_eq!(v["shared_history"], true);
        assert_eq!(v["m.shared_history"], true);
        assert!(v.get("org.matrix.msc3061.shared_history").is_none());
        assert_eq!(v["x.custom"], serde_json::json!({"a":[1,2]}));
        let again = ExportedSession::from_json(&s.to_json()).unwrap();
        assert_eq!(again, s);
    }

    #[test]
    fn rejects_bad_entries() {
        let bad = |e: String| match ExportedSession::from_json(e.as_bytes()) {
            Err(EntryError::Invalid(e)) => e,
            other => panic!("{other:?}"),
        };
        let good = entry("");
        assert!(matches!(
            bad(good.replace(ID, "AAAA")),
            SessionError::IdMismatch { .. }
        ));
        assert!(matches!(
            bad(good.replace("m.megolm.v1", "m.olm.v1")),
            SessionError::UnknownAlgorithm(_)
        ));
        assert!(matches!(
            bad(good.replace("!Dovne", "Dovne")),
            SessionError::BadRoomId(_)
        ));
        assert!(matches!(
            bad(good.replace("AQAAAABv", "AgAAAABv")),
            SessionError::KeyVersion(2)
        ));
        assert!(matches!(
            bad(good.replace(KEY, &KEY[..100])),
            SessionError::KeyLength(_)
        ));
        assert!(matches!(
            bad(good.replace(KEY, "!!!")),
            SessionError::KeyBase64
        ));
        assert!(matches!(
            bad(good.replace("DeHIg4", "De")),
            SessionError::BadSenderKey
        ));
        assert!(matches!(bad("[1]".into()), SessionError::NotAnObject));
        assert!(matches!(
            ExportedSession::from_json(b"{\"a\":"),
            Err(EntryError::Syntax(_))
        ));
    }

    /// Entries whose Ed25519 key is not a point and that also fail a later check: the
    /// streaming parser (batched point checks) must report what `from_json` reports (the
    /// point error), found by the session_json and export_cipher fuzz targets.
    #[test]
    fn batched_point_errors_come_before_later_faults() {
        let mut raw = STANDARD_NO_PAD.decode(KEY).unwrap();
        let at = raw.len() - 32;
        let not_point = (2u8..)
            .map(|b| {
                let mut k = [0u8; 32];
                k[0] = b;
                k
            })
            .find(|k| !point_check::is_ed25519_point(k))
            .unwrap();
        raw[at..].copy_from_slice(&not_point);
        let bad_key = STANDARD_NO_PAD.encode(&raw);
        let bad_id = STANDARD_NO_PAD.encode(not_point);
        let entries = [
            entry("").replace(KEY, &bad_key),
            entry("").replace(KEY, &bad_key).replace(ID, &bad_id),
            entry("")
                .replace(KEY, &bad_key)
                .replace(ID, &bad_id)
                .replace(
                    r#""forwarding_curve25519_key_chain":[]"#,
                    r#""forwarding_curve25519_key_chain":[1]"#,
                ),
            entry("")
                .replace(KEY, &bad_key)
                .replace(ID, &bad_id)
                .replace(r#"{"ed25519":"x"}"#, "7"),
            entry(""),
        ];
        let mut streamed = Vec::new();
        let mut sink = |batch: Vec<ParsedEntry>| -> crate::Result<()> {
            streamed.extend(batch.into_iter().map(|(_, r)| r));
            Ok(())
        };
        let mut stream = SessionStream::new(crate::Error::NotASessionArray, &mut sink);
        stream
            .feed(format!("[{}]", entries.join(",")).as_bytes())
            .unwrap();
        assert_eq!(stream.finish().unwrap(), entries.len());
        assert_eq!(streamed.len(), entries.len());
        for (n, (e, got)) in entries.iter().zip(&streamed).enumerate() {
            let want = match ExportedSession::from_json(e.as_bytes()) {
                Ok(s) => Ok(s),
                Err(EntryError::Invalid(e)) => Err(e),
                Err(EntryError::Syntax(e)) => panic!("entry {n}: {e}"),
            };
            assert_eq!(got, &want, "entry {n}");
            if n < 4 {
                assert!(
                    matches!(got, Err(SessionError::KeyInvalid(_))),
                    "entry {n}: {got:?}"
                );
            }
        }
        assert!(streamed[4].is_ok());
    }

    #[test]
    fn accepts_signed_v2_key_and_exports_v1() {
        let group = vodozemac::megolm::GroupSession::new(SessionConfig::version_1());
        let v2 = group.session_key().to_base64();
        let id = group.session_id();
        let e = entry("").replace(KEY, &v2).replace(ID, &id);
        let s = ExportedSession::from_json(e.as_bytes()).unwrap();
        assert!(s.expose_session_key().starts_with("AQ"));
        assert_eq!(s.session_id, id);
        // A v2 key with a broken signature is refused.
        let mut raw = STANDARD_NO_PAD.decode(&v2).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        let e = entry("")
            .replace(KEY, &STANDARD_NO_PAD.encode(&raw))
            .replace(ID, &id);
        assert!(matches!(
            ExportedSession::from_json(e.as_bytes()),
            Err(EntryError::Invalid(SessionError::KeyInvalid(_)))
        ));
    }

    #[test]
    fn merge_ordering() {
        let group = vodozemac::megolm::GroupSession::new(SessionConfig::version_1());
        let mut inbound =
            InboundGroupSession::new(&group.session_key(), SessionConfig::version_1());
        let at = |i: &mut InboundGroupSession, n: u32| {
            let k = i.export_at(n).unwrap().to_base64();
            let e = entry("").replace(KEY, &k).replace(ID, &group.session_id());
            ExportedSession::from_json(e.as_bytes()).unwrap()
        };
        let s0 = at(&mut inbound, 0);
        let s5 = at(&mut inbound, 5);
        assert_eq!(s0.compare_to(&s5), Ordering::Better);
        assert_eq!(s5.compare_to(&s0), Ordering::Worse);
        assert_eq!(s5.compare_to(&s5.clone()), Ordering::Equal);
        // Same session id, different ratchet: a forged copy does not connect.
        let mut forged_bytes = STANDARD_NO_PAD.decode(s0.expose_session_key()).unwrap();
        forged_bytes[10] ^= 0xff;
        let e = entry("")
            .replace(KEY, &STANDARD_NO_PAD.encode(&forged_bytes))
            .replace(ID, &group.session_id());
        let forged = ExportedSession::from_json(e.as_bytes()).unwrap();
        assert_eq!(forged.compare_to(&s5), Ordering::Unconnected);
    }
}

/// One parsed entry of an array: its position and the session or why it was rejected.
pub type ParsedEntry = (usize, Result<ExportedSession, SessionError>);

/// Entries parsed together, in parallel.
pub const PARSE_BATCH: usize = 512;

/// Raw elements of one batch, and those that were too large to keep.
struct RawBatch {
    elements: Vec<(usize, Zeroizing<Vec<u8>>)>,
    oversized: Vec<(usize, u64)>,
}

/// One batch after parsing.
type ParsedBatch = (
    Vec<(usize, Result<ExportedSession, EntryError>)>,
    Vec<(usize, u64)>,
);

/// The background parser: validates one batch (in parallel) while the caller splits the next
/// and hands the previous one to its sink.
struct Parser {
    to: Option<std::sync::mpsc::SyncSender<RawBatch>>,
    from: Option<std::sync::mpsc::Receiver<ParsedBatch>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Parser {
    fn start(check: Check) -> Parser {
        use rayon::prelude::*;
        let (to, raw_rx) = std::sync::mpsc::sync_channel::<RawBatch>(1);
        let (parsed_tx, from) = std::sync::mpsc::sync_channel::<ParsedBatch>(1);
        let thread = std::thread::spawn(move || {
            for raw in raw_rx {
                let each = if check == Check::Full {
                    Check::Batched
                } else {
                    check
                };
                let mut parsed: Vec<(usize, Result<ExportedSession, EntryError>)> = raw
                    .elements
                    .par_iter()
                    .map(|(i, b)| (*i, ExportedSession::parse_json(b, each)))
                    .collect();
                if each == Check::Batched {
                    check_points(&mut parsed);
                }
                if parsed_tx.send((parsed, raw.oversized)).is_err() {
                    break;
                }
            }
        });
        Parser {
            to: Some(to),
            from: Some(from),
            thread: Some(thread),
        }
    }
}

impl Drop for Parser {
    fn drop(&mut self) {
        // Closing both channels ends the thread's loop, wherever it is.
        self.to = None;
        self.from = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The point check of a parsed batch ([`Check::Batched`]): entries whose Ed25519 key is not
/// a point of the curve become rejections, with vodozemac's reason.
fn check_points(parsed: &mut [(usize, Result<ExportedSession, EntryError>)]) {
    let mut at = Vec::with_capacity(parsed.len());
    let mut keys = Vec::with_capacity(parsed.len());
    for (n, (_, r)) in parsed.iter().enumerate() {
        if let Ok(s) = r {
            // The session id is the Ed25519 key: decode_session_key made it from those bytes.
            let mut k = [0u8; 33];
            if let (Ok(32), Some(k)) = (
                STANDARD_NO_PAD.decode_slice(&s.session_id, &mut k),
                k.first_chunk::<32>(),
            ) {
                at.push(n);
                keys.push(*k);
            }
        }
    }
    for bad in point_check::non_points(&keys) {
        let entry = &mut parsed[at[bad]].1;
        if let Some(why) = entry
            .as_ref()
            .ok()
            .and_then(|s| not_a_point(&s.session_key))
        {
            *entry = Err(EntryError::Invalid(why));
        }
    }
}

/// The exact point check of one session key in export format (unpadded base64): `Some(the
/// point error)` when its Ed25519 key is not a point.
fn not_a_point(v1_b64: &str) -> Option<SessionError> {
    let bytes = Zeroizing::new(STANDARD_NO_PAD.decode(v1_b64).ok()?);
    let ed25519 = bytes.last_chunk::<32>()?;
    (!point_check::is_ed25519_point(ed25519)).then(|| point_error(&bytes))
}

/// Why vodozemac refuses a session key whose Ed25519 key is not a point, in its own words.
fn point_error(key: &[u8]) -> SessionError {
    let why = match ExportedSessionKey::from_bytes(key) {
        Err(e) => e.to_string(),
        Ok(_) => "the Ed25519 key is not a point of the curve".to_string(),
    };
    SessionError::KeyInvalid(why)
}

/// Turns a stream of JSON-array bytes into batches of validated sessions.
///
/// Elements are buffered [`PARSE_BATCH`] at a time and validated in parallel on a background
/// thread (Ed25519 point checks dominate), then handed to the sink in array order; while one
/// batch is validated, the caller goes on splitting the next and the sink handles the one
/// before. A syntax error anywhere makes the whole input unusable: `not_array` builds the
/// error for it.
pub struct SessionStream<'f> {
    splitter: crate::export::ArraySplitter,
    pending: Vec<(usize, Zeroizing<Vec<u8>>)>,
    oversized: Vec<(usize, u64)>,
    sink: &'f mut dyn FnMut(Vec<ParsedEntry>) -> crate::Result<()>,
    not_array: fn(String) -> crate::Error,
    parser: Parser,
    in_flight: bool,
}

impl std::fmt::Debug for SessionStream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionStream").finish_non_exhaustive()
    }
}

impl<'f> SessionStream<'f> {
    /// A stream handing batches of fully validated sessions to `sink`.
    pub fn new(
        not_array: fn(String) -> crate::Error,
        sink: &'f mut dyn FnMut(Vec<ParsedEntry>) -> crate::Result<()>,
    ) -> Self {
        Self::with_check(not_array, sink, Check::Full)
    }

    /// A stream that checks each element's shape only (a session object with well-formed
    /// fields and key), not that its Ed25519 key is a valid point: for showing a file's
    /// contents, where nothing is imported, at a fraction of the cost.
    pub fn shape_only(
        not_array: fn(String) -> crate::Error,
        sink: &'f mut dyn FnMut(Vec<ParsedEntry>) -> crate::Result<()>,
    ) -> Self {
        Self::with_check(not_array, sink, Check::Stored)
    }

    fn with_check(
        not_array: fn(String) -> crate::Error,
        sink: &'f mut dyn FnMut(Vec<ParsedEntry>) -> crate::Result<()>,
        check: Check,
    ) -> Self {
        SessionStream {
            splitter: crate::export::ArraySplitter::new(),
            pending: Vec::with_capacity(PARSE_BATCH),
            oversized: Vec::new(),
            sink,
            not_array,
            parser: Parser::start(check),
            in_flight: false,
        }
    }

    /// Feed the next bytes of the array.
    pub fn feed(&mut self, bytes: &[u8]) -> crate::Result<()> {
        let pending = &mut self.pending;
        let oversized = &mut self.oversized;
        let not_array = self.not_array;
        let mut full = false;
        let r = self.splitter.feed::<crate::Error>(bytes, &mut |e| {
            match e {
                crate::export::Element::Value { index, bytes } => {
                    pending.push((index, Zeroizing::new(bytes.to_vec())))
                }
                crate::export::Element::Oversized { index, size } => oversized.push((index, size)),
            }
            full |= pending.len() >= PARSE_BATCH;
            Ok(())
        });
        r.map_err(|e| match e {
            crate::export::FeedError::Split(e) => not_array(format!("not a JSON array: {e}")),
            crate::export::FeedError::Sink(e) => e,
        })?;
        if full {
            self.flush()?;
        }
        Ok(())
    }

    /// Send the buffered elements to the parser, and hand the batch before to the sink.
    fn flush(&mut self) -> crate::Result<()> {
        if self.pending.is_empty() && self.oversized.is_empty() {
            return Ok(());
        }
        let raw = RawBatch {
            elements: std::mem::replace(&mut self.pending, Vec::with_capacity(PARSE_BATCH)),
            oversized: std::mem::take(&mut self.oversized),
        };
        let sent = self.parser.to.as_ref().map(|t| t.send(raw).is_ok());
        if sent != Some(true) {
            return Err(crate::Error::Interrupted);
        }
        if self.in_flight {
            self.deliver()?;
        }
        self.in_flight = true;
        Ok(())
    }

    /// Receive the oldest batch from the parser and hand it to the sink.
    fn deliver(&mut self) -> crate::Result<()> {
        let Some(Ok((parsed, oversized))) = self.parser.from.as_ref().map(|f| f.recv()) else {
            return Err(crate::Error::Interrupted);
        };
        self.in_flight = false;
        let mut out: Vec<ParsedEntry> = Vec::with_capacity(parsed.len() + oversized.len());
        for (i, r) in parsed {
            match r {
                Ok(s) => out.push((i, Ok(s))),
                Err(EntryError::Invalid(e)) => out.push((i, Err(e))),
                Err(EntryError::Syntax(e)) => {
                    return Err((self.not_array)(format!("invalid JSON in entry {i}: {e}")));
                }
            }
        }
        for (i, size) in oversized {
            out.push((i, Err(SessionError::TooLarge(size))));
        }
        out.sort_by_key(|(i, _)| *i);
        (self.sink)(out)
    }

    /// End of input: flush the last batch; returns the number of entries.
    pub fn finish(mut self) -> crate::Result<usize> {
        self.flush()?;
        if self.in_flight {
            self.deliver()?;
        }
        self.splitter
            .finish()
            .map_err(|e| (self.not_array)(format!("not a JSON array: {e}")))
    }
}
