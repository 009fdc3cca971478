//! Pickled Megolm inbound sessions, as clients keep them, to export-format sessions.
//!
//! Two pickle formats occur: vodozemac's (JSON, encrypted with a 32-byte key; matrix-nio
//! 0.26 and later use SHA-256 of the client's pickle key as that key) and libolm's
//! (pantalaimon, matrix-nio before 0.26: a binary pickle encrypted with the pickle key's
//! bytes). vodozemac reads both; nothing here is hand-written crypto.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use vodozemac::megolm::{InboundGroupSession, InboundGroupSessionPickle};
use zeroize::Zeroizing;

use crate::session::ExportedSession;

/// Which format a pickle was in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// vodozemac's encrypted JSON pickle.
    Vodozemac,
    /// libolm's pickle.
    Libolm,
}

/// Why a pickle could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PickleError {
    /// Neither format decrypts with the key (a wrong key, or a damaged pickle).
    #[error("the pickle does not decrypt with the pickle key (wrong key, or a damaged row)")]
    Undecryptable,
    /// It decrypted but names another session than its row.
    #[error("the pickle holds session {found}, not the row's {expected}")]
    WrongSession {
        /// The row's session id.
        expected: String,
        /// The pickle's.
        found: String,
    },
    /// The session it holds is not a valid export entry.
    #[error("the session is not valid: {0}")]
    Invalid(String),
}

/// Unpickle an inbound group session with a client's pickle key: vodozemac's format under
/// SHA-256 of the key first (what nio writes now), then libolm's under the key itself.
pub fn inbound_session(
    pickle: &[u8],
    pickle_key: &[u8],
) -> Result<(InboundGroupSession, Format), PickleError> {
    let text = std::str::from_utf8(pickle).map_err(|_| PickleError::Undecryptable)?;
    let text = text.trim();
    let key = Zeroizing::new(<[u8; 32]>::from(Sha256::digest(pickle_key)));
    if let Ok(p) = InboundGroupSessionPickle::from_encrypted(text, &key) {
        return Ok((InboundGroupSession::from_pickle(p), Format::Vodozemac));
    }
    InboundGroupSession::from_libolm_pickle(text, pickle_key)
        .map(|s| (s, Format::Libolm))
        .map_err(|_| PickleError::Undecryptable)
}

/// The export-format session of an unpickled session and what the client's row says about it.
pub fn exported(
    session: &InboundGroupSession,
    expected_session_id: &str,
    room_id: &str,
    sender_key: &str,
    claimed_ed25519: Option<&str>,
    forwarding_chain: &[String],
) -> Result<ExportedSession, PickleError> {
    let found = session.session_id();
    if found != expected_session_id {
        return Err(PickleError::WrongSession {
            expected: expected_session_id.to_string(),
            found,
        });
    }
    let key = Zeroizing::new(session.export_at_first_known_index().to_base64());
    let mut claimed = Map::new();
    if let Some(k) = claimed_ed25519.filter(|k| !k.is_empty()) {
        claimed.insert("ed25519".into(), Value::String(k.to_string()));
    }
    let v = json!({
        "algorithm": "m.megolm.v1.aes-sha2",
        "room_id": room_id,
        "sender_key": sender_key,
        "session_id": found,
        "session_key": key.as_str(),
        "sender_claimed_keys": claimed,
        "forwarding_curve25519_key_chain": forwarding_chain,
    });
    let Value::Object(m) = v else {
        return Err(PickleError::Invalid("not an object".into()));
    };
    ExportedSession::from_map(m).map_err(|e| PickleError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vodozemac::megolm::{GroupSession, SessionConfig};

    #[test]
    fn vodozemac_pickles_under_the_hashed_key_and_wrong_keys() {
        let g = GroupSession::new(SessionConfig::version_1());
        let s = InboundGroupSession::new(&g.session_key(), SessionConfig::version_1());
        let key: [u8; 32] = Sha256::digest(b"DEFAULT_KEY").into();
        let pickle = s.pickle().encrypt(&key);
        let (back, f) = inbound_session(pickle.as_bytes(), b"DEFAULT_KEY").unwrap();
        assert_eq!(f, Format::Vodozemac);
        assert_eq!(back.session_id(), g.session_id());
        assert!(matches!(
            inbound_session(pickle.as_bytes(), b"other"),
            Err(PickleError::Undecryptable)
        ));
        assert!(matches!(
            inbound_session(b"\xff\xfe", b"DEFAULT_KEY"),
            Err(PickleError::Undecryptable)
        ));
        let e = exported(
            &back,
            &g.session_id(),
            "!r:x",
            "DeHIg4gwhClxzFYcmNntPNF9YtsdZbmMy8+3kzCMXHA",
            Some("FoFzeER5D16p2zgy6vMD9jttW+1BWvgAKt840xmMP3Q"),
            &[],
        )
        .unwrap();
        assert_eq!(e.session_id, g.session_id());
        assert_eq!(e.first_known_index(), 0);
        assert!(matches!(
            exported(
                &back,
                "other",
                "!r:x",
                "DeHIg4gwhClxzFYcmNntPNF9YtsdZbmMy8+3kzCMXHA",
                None,
                &[]
            ),
            Err(PickleError::WrongSession { .. })
        ));
    }
}
