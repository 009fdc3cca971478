//! Server-side key backup (`m.megolm_backup.v1.curve25519-aes-sha2`): decrypting what a
//! server hands back, with a fixed backup key, and the backup's `auth_data`.
//!
//! The first byte picks the mode, the rest is the input:
//! - 0: `KeyBackupData` JSON: parse, re-serialise round trip, `decrypt_session`;
//! - 1: `SessionData` JSON: parse, round trip, `decrypt`; a plaintext re-encrypts and
//!   decrypts to itself;
//! - 2: `AuthData` JSON: parse, round trip, public key, key match, signing payload,
//!   canonical JSON (parses back to the same value), signing then verifying;
//! - 3: a plaintext, encrypted here to the backup key (so the fuzzer reaches the JSON and
//!   session layer behind the MAC): `decrypt` gives it back, and `decrypt_session` validates
//!   it as a session; an accepted session re-encrypts (`encrypt_session`) and decrypts to an
//!   equal session.
#![no_main]

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use libfuzzer_sys::fuzz_target;
use mxkeys::backup::{
    self, AuthData, BackupDecryptionKey, KeyBackupData, SessionData, SignatureState,
};
use mxkeys_fuzz::{has_float, parse_round_trip, same_json, to_value};
use serde_json::{Map, Value};
use vodozemac::Ed25519SecretKey;

/// The backup key of fixtures/backup/samples.json (matrix-sdk-crypto-wasm), and the ids its
/// first sample is stored under.
const PRIVATE_KEY: &str = "q8XK42mqbfWVDnKxOkYyBbmHxbC+UsWea0w1QnWalDA";
const ROOM_ID: &str = "!DBATafzTJLmSeBTsoz:example.org";
const SESSION_ID: &str = "icsK5fR9pbowmYTi8/ebQ5AOCyzuiYzpF7QccuFqDuk";
const USER_ID: &str = "@fuzz:example.org";
const SIGNING_SEED: [u8; 32] = [7; 32];

const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn key() -> &'static BackupDecryptionKey {
    static KEY: OnceLock<BackupDecryptionKey> = OnceLock::new();
    KEY.get_or_init(|| BackupDecryptionKey::from_base64(PRIVATE_KEY).expect("fixture key"))
}

fn check_session_data(data: &SessionData) {
    let Ok(pt) = key().decrypt(data) else { return };
    let sd = backup::encrypt(&key().public_key(), &pt).expect("encrypting to a valid key");
    let again = key().decrypt(&sd).expect("own encryption does not decrypt");
    assert_eq!(*again, *pt, "re-encryption round trip");
}

fn check_backup_data(room_id: &str, session_id: &str, data: &KeyBackupData) {
    let decrypted = key().decrypt(&data.session_data);
    let Ok(s) = key().decrypt_session(room_id, session_id, data) else {
        return;
    };
    assert!(
        decrypted.is_ok(),
        "decrypt_session accepts what decrypt refuses"
    );
    assert_eq!(s.room_id, room_id);
    // Backed up again and restored: the same session.
    let kbd = backup::encrypt_session(&key().public_key(), &s, 0, false)
        .expect("encrypting to a valid key");
    assert_eq!(kbd.first_message_index, s.first_known_index());
    let back = key()
        .decrypt_session(room_id, &s.session_id, &kbd)
        .expect("own backup does not restore");
    assert!(
        same_json(&to_value(&back), &to_value(&s)),
        "backup round trip changed the session"
    );
}

fn check_auth_data(a: &AuthData) {
    let _ = a.backup_public_key();
    let _ = a.matches_private_key(key());
    let payload = a.signing_payload();
    let parsed: Value = serde_json::from_str(&payload).expect("signing payload is not JSON");
    assert!(parsed.is_object());
    if !has_float(&parsed) {
        assert_eq!(
            backup::canonical_json(&parsed),
            payload,
            "canonical JSON is not canonical"
        );
    }
    // Legacy passphrase keys: only cheap iteration counts are tried.
    if a.private_key_iterations.is_some_and(|n| n <= 16) {
        let _ = BackupDecryptionKey::from_auth_data_passphrase(
            &mxkeys::secret::Passphrase::from_string("fuzz".into()),
            a,
        );
    }
    let signer = Ed25519SecretKey::from_slice(&SIGNING_SEED);
    let mut signed = a.clone();
    if let Ok(key_id) = signed.sign(USER_ID, &SIGNING_SEED) {
        assert_eq!(
            signed.signing_payload(),
            payload,
            "signing changed the payload"
        );
        assert_eq!(
            signed.verify_signature(USER_ID, &key_id, &signer.public_key()),
            SignatureState::Valid
        );
    }
    for user in ["", USER_ID] {
        let _ = a.verify_signature(user, "ed25519:DEVICE", &signer.public_key());
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => {
            if let Some(kbd) = parse_round_trip::<KeyBackupData>(rest) {
                check_backup_data(ROOM_ID, SESSION_ID, &kbd);
            }
        }
        1 => {
            if let Some(sd) = parse_round_trip::<SessionData>(rest) {
                check_session_data(&sd);
            }
        }
        2 => {
            if let Some(a) = parse_round_trip::<AuthData>(rest) {
                check_auth_data(&a);
            }
            // canonical JSON of any value parses back to that value.
            if let Ok(v) = serde_json::from_slice::<Value>(rest) {
                let c = backup::canonical_json(&v);
                let back: Value = serde_json::from_str(&c).expect("canonical JSON does not parse");
                assert!(same_json(&back, &v), "canonical JSON changed {v} to {back}");
                if !has_float(&v) {
                    assert_eq!(
                        backup::canonical_json(&back),
                        c,
                        "canonical JSON is not stable"
                    );
                }
            }
        }
        _ => {
            let sd = backup::encrypt(&key().public_key(), rest).expect("encrypting");
            let pt = key().decrypt(&sd).expect("own encryption does not decrypt");
            assert_eq!(*pt, *rest, "decrypt changed the plaintext");
            let kbd = KeyBackupData {
                first_message_index: 0,
                forwarded_count: 0,
                is_verified: false,
                session_data: sd,
                extra: Map::new(),
            };
            // Stored under the id of its own session key, so valid sessions get through.
            let session_id = serde_json::from_slice::<Value>(rest)
                .ok()
                .and_then(|v| {
                    let k = v.get("session_key")?.as_str()?;
                    let b = LENIENT.decode(k.trim_end_matches('=')).ok()?;
                    Some(STANDARD_NO_PAD.encode(b.get(133..165)?))
                })
                .unwrap_or_else(|| SESSION_ID.to_owned());
            check_backup_data(ROOM_ID, &session_id, &kbd);
        }
    }
});
