//! Secret storage (`m.secret_storage.v1.aes-hmac-sha2`): key descriptions and encrypted
//! secrets as a server hands them back, with a fixed secret-storage key.
//!
//! The first byte picks the mode, the rest is the input:
//! - 0: `KeyDescription` JSON: parse, re-serialise round trip, `SecretStorageKey::check`;
//!   a cheap passphrase (at most 16 iterations) is derived too;
//! - 1: `EncryptedSecret` JSON: parse, round trip, `decrypt`, and a decrypted secret read as
//!   a backup key;
//! - 2: a plaintext (UTF-8, lossy), encrypted here (so the fuzzer reaches what lies behind
//!   the MAC): `decrypt` gives it back, `backup_key_from_secret` reads it, and an accepted
//!   backup key round-trips through `backup_key_to_secret`;
//! - 3: a whole account state `{"default": id, "keys": {id: description},
//!   "backup": {id: secret}, "auth_data": {...}}`: `SecretStorageState::open_key` and
//!   `recovery::resolve` with the fixed key and with a passphrase.
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mxkeys::backup::AuthData;
use mxkeys::recovery::{self, SecretStorageState, UserSecret};
use mxkeys::secret::{Key32, Passphrase};
use mxkeys::secret_storage::{
    self, EncryptedSecret, KeyDescription, MEGOLM_BACKUP_SECRET, SecretStorageKey,
};
use mxkeys_fuzz::parse_round_trip;
use serde::Deserialize;

/// The key of fixtures/secret-storage/samples.json (matrix-js-sdk), padded base64.
const KEY_B64: &str = "/3oHPC9pMsUwXKzNbPpmPiM7h9x2G7BYHSXtQJwv6WM=";
const NAMES: [&str; 4] = [
    MEGOLM_BACKUP_SECRET,
    "m.cross_signing.master",
    "m.cross_signing.user_signing",
    "",
];

fn key_bytes() -> [u8; 32] {
    use base64::Engine;
    let v = base64::engine::general_purpose::STANDARD
        .decode(KEY_B64)
        .expect("fixture key");
    let mut k = [0u8; 32];
    k.copy_from_slice(&v);
    k
}

fn key() -> &'static SecretStorageKey {
    static KEY: OnceLock<SecretStorageKey> = OnceLock::new();
    KEY.get_or_init(|| SecretStorageKey::new(Key32::new(key_bytes())))
}

fn check_backup_secret(text: &str) {
    if let Ok(b) = secret_storage::backup_key_from_secret(text) {
        let again =
            secret_storage::backup_key_from_secret(&secret_storage::backup_key_to_secret(&b))
                .expect("own backup secret does not read");
        assert_eq!(
            again.expose_secret().expose_secret(),
            b.expose_secret().expose_secret()
        );
    }
}

#[derive(Deserialize)]
struct State {
    #[serde(default)]
    default: Option<String>,
    #[serde(default)]
    keys: BTreeMap<String, KeyDescription>,
    #[serde(default)]
    backup: BTreeMap<String, EncryptedSecret>,
    auth_data: AuthData,
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let name = NAMES[usize::from(mode >> 2) % NAMES.len()];
    match mode % 4 {
        0 => {
            let Some(d) = parse_round_trip::<KeyDescription>(rest) else {
                return;
            };
            let _ = key().check(&d);
            if let Some(p) = d.passphrase.as_ref().filter(|p| p.iterations <= 16) {
                let _ =
                    SecretStorageKey::from_passphrase(&Passphrase::from_string("fuzz".into()), p);
            }
        }
        1 => {
            let Some(s) = parse_round_trip::<EncryptedSecret>(rest) else {
                return;
            };
            if let Ok(text) = key().decrypt(name, &s) {
                check_backup_secret(&text);
            }
        }
        2 => {
            let text = String::from_utf8_lossy(rest);
            let enc = key().encrypt(name, &text).expect("encrypting");
            let back = key()
                .decrypt(name, &enc)
                .expect("own secret does not decrypt");
            assert_eq!(*back, *text, "secret round trip");
            // A description of this key always checks.
            let d = key().describe(None, None).expect("describing");
            assert_eq!(key().check(&d).ok(), Some(true));
            check_backup_secret(&text);
        }
        _ => {
            let Ok(st) = serde_json::from_slice::<State>(rest) else {
                return;
            };
            let state = SecretStorageState {
                default_key_id: st.default,
                keys: st.keys,
                backup_secret: st.backup,
                master_secret: BTreeMap::new(),
            };
            let _ = state.exists();
            let secrets = [
                UserSecret::Key(Key32::new(key_bytes())),
                UserSecret::Phrase(Passphrase::from_string("fuzz".into())),
            ];
            for secret in &secrets {
                let _ = state.open_key(secret, 16);
                let _ = recovery::resolve(secret, &state, &st.auth_data, "1", 16);
            }
        }
    }
});
