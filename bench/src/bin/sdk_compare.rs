//! The reference implementation for the benchmark comparison: matrix-sdk-crypto 0.18 doing the
//! same whole job as the corresponding mxkeys command, one process each, so both can be timed
//! end to end by hyperfine in one run.
//!
//! usage:
//!   sdk-compare decrypt EXPORT_FILE PASSPHRASE_FILE            (decrypt_room_key_export)
//!   sdk-compare encrypt JSON_FILE PASSPHRASE_FILE ROUNDS OUT    (encrypt_room_key_export)
//!   sdk-compare backup-decrypt SAVED_RESPONSE_JSON KEY_B64_FILE (BackupDecryptionKey::decrypt_v1 loop)
use std::io::Write;

use matrix_sdk_crypto::olm::ExportedRoomKey;
use matrix_sdk_crypto::store::types::BackupDecryptionKey;
use matrix_sdk_crypto::{decrypt_room_key_export, encrypt_room_key_export};

fn read_secret(p: &str) -> String {
    let s = std::fs::read_to_string(p).expect("secret file");
    s.strip_suffix('\n').unwrap_or(&s).to_string()
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    match a.get(1).map(String::as_str) {
        Some("decrypt") => {
            let f = std::fs::File::open(&a[2]).expect("export file");
            let keys = decrypt_room_key_export(std::io::BufReader::new(f), &read_secret(&a[3]))
                .expect("decrypt");
            eprintln!("sdk-compare: decrypted {} sessions", keys.len());
        }
        Some("encrypt") => {
            let json = std::fs::read(&a[2]).expect("json file");
            let keys: Vec<ExportedRoomKey> = serde_json::from_slice(&json).expect("sessions");
            let rounds: u32 = a[4].parse().expect("rounds");
            let text = encrypt_room_key_export(&keys, &read_secret(&a[3]), rounds).expect("encrypt");
            std::fs::File::create(&a[5]).and_then(|mut f| f.write_all(text.as_bytes())).expect("write");
            eprintln!("sdk-compare: encrypted {} sessions", keys.len());
        }
        Some("backup-decrypt") => {
            let body: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&a[2]).expect("response")).expect("json");
            let key = BackupDecryptionKey::from_base64(&read_secret(&a[3])).expect("key");
            let mut n = 0usize;
            for (_room, r) in body["rooms"].as_object().expect("rooms") {
                for (_sid, s) in r["sessions"].as_object().expect("sessions") {
                    let d = &s["session_data"];
                    let pt = key
                        .decrypt_v1(
                            d["ephemeral"].as_str().expect("ephemeral"),
                            d["mac"].as_str().expect("mac"),
                            d["ciphertext"].as_str().expect("ciphertext"),
                        )
                        .expect("decrypt_v1");
                    let _: serde_json::Value = serde_json::from_str(&pt).expect("session json");
                    n += 1;
                }
            }
            eprintln!("sdk-compare: decrypted {n} backed-up sessions");
        }
        _ => {
            eprintln!("usage: sdk-compare decrypt|encrypt|backup-decrypt ...");
            std::process::exit(2);
        }
    }
}
