//! Turn an export-format JSON array into a saved `GET /room_keys/keys` response encrypted to a
//! fresh random backup key, for the backup-decryption benchmark.
//!
//! usage: gen-backup SESSIONS_JSON OUT_RESPONSE_JSON OUT_KEY_B64 OUT_RECOVERY_KEY
use std::collections::BTreeMap;

use mxkeys::backup::{BackupDecryptionKey, encrypt_session};
use mxkeys::session::ExportedSession;
use rayon::prelude::*;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let json = std::fs::read(&a[1]).expect("sessions json");
    let sessions: Vec<ExportedSession> = mxkeys::session::parse_array(&json)
        .expect("array")
        .into_iter()
        .map(|r| r.expect("valid session"))
        .collect();
    let key = BackupDecryptionKey::random().expect("key");
    let public = key.public_key();
    let data: Vec<_> = sessions
        .par_iter()
        .map(|s| (s.room_id.clone(), s.session_id.clone(), encrypt_session(&public, s, 0, false).expect("encrypt")))
        .collect();
    let mut rooms: BTreeMap<String, BTreeMap<String, serde_json::Value>> = BTreeMap::new();
    for (r, s, d) in data {
        rooms.entry(r).or_default().insert(s, serde_json::to_value(d).expect("json"));
    }
    let body = serde_json::json!({"rooms": rooms.into_iter().map(|(r, s)| (r, serde_json::json!({"sessions": s}))).collect::<serde_json::Map<_, _>>()});
    std::fs::write(&a[2], serde_json::to_vec(&body).expect("json")).expect("write response");
    std::fs::write(&a[3], format!("{}\n", &*key.to_base64())).expect("write key");
    std::fs::write(&a[4], format!("{}\n", &*mxkeys::recovery_key::encode(key.expose_secret()))).expect("write recovery key");
}
