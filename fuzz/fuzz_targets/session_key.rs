//! Session-key decoding (`session_key` of an exported session), through the public
//! `ExportedSession::from_json` with every other field valid.
//!
//! The first byte picks the mode: even, the rest is the key's raw bytes (base64-encoded here,
//! so the fuzzer works on version, index, ratchet, Ed25519 key and signature directly); odd,
//! the rest is the `session_key` text as is. `session_id` is taken from the key's Ed25519 key
//! bytes (offset 133) so that keys get past the id check.
//!
//! An accepted key: the session's first known index is the key's, its exported key is the
//! 165-byte export format with the same id, and the session round-trips through JSON.
//! Built with `cfg(fuzzing)`, vodozemac skips Ed25519 signature checks, so sharing-format
//! (v2) keys with any signature get through too.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use libfuzzer_sys::fuzz_target;
use mxkeys::session::{EXPORTED_KEY_LEN, ExportedSession, Ordering};
use serde_json::json;

const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (text, raw) = if mode % 2 == 0 {
        let text = if mode & 2 == 0 {
            STANDARD_NO_PAD.encode(rest)
        } else {
            STANDARD.encode(rest)
        };
        (text, Some(rest.to_vec()))
    } else {
        let Ok(text) = std::str::from_utf8(rest) else {
            return;
        };
        (
            text.to_owned(),
            LENIENT.decode(text.trim_end_matches('=')).ok(),
        )
    };
    let session_id = match &raw {
        Some(b) if b.len() >= 165 => STANDARD_NO_PAD.encode(&b[133..165]),
        _ => "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_owned(),
    };
    let entry = json!({
        "algorithm": "m.megolm.v1.aes-sha2",
        "room_id": "!room:example.org",
        "sender_key": "avEwy4DMU3fNx6CSfa/yRXF0b+bddyuLl3FIao0PxXw",
        "session_id": session_id,
        "session_key": text,
        "sender_claimed_keys": {"ed25519": "2xzwVVMnRIybtJe6B4/MOSbLOMI9K4b7wySWXLNaqjg"},
        "forwarding_curve25519_key_chain": [],
    });
    let bytes = serde_json::to_vec(&entry).expect("serialising a Value");
    let Ok(s) = ExportedSession::from_json(&bytes) else {
        return;
    };

    let raw = raw.expect("an accepted key is base64");
    let index = u32::from_be_bytes([raw[1], raw[2], raw[3], raw[4]]);
    assert_eq!(s.first_known_index(), index, "first known index");
    assert_eq!(s.session_id, session_id, "session id");
    let exported = STANDARD_NO_PAD
        .decode(s.expose_session_key())
        .expect("the exported key is unpadded base64");
    assert_eq!(exported.len(), EXPORTED_KEY_LEN, "exported key length");
    assert_eq!(exported[0], 1, "exported key version");
    assert_eq!(&exported[1..5], &raw[1..5], "exported key index");
    assert_eq!(&exported[5..165], &raw[5..165], "ratchet and key");

    let json = s.to_json();
    let again = ExportedSession::from_json(&json).expect("to_json output does not parse");
    assert!(again == s, "JSON round trip changed the session");
    assert_eq!(s.compare_to(&again), Ordering::Equal, "a session vs itself");
});
