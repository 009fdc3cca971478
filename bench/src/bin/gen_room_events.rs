//! Megolm-encrypted room events for the `history check` benchmark against Synapse
//! (scripts/bench-history-online.sh), and the keys that decrypt them.
//!
//! usage: gen-room-events ROOM_ID EVENTS PER_SESSION DEVICE_ID OUT_DIR
//!
//! Writes `OUT_DIR/contents.jsonl`, one `m.room.encrypted` content per line in sending order
//! (`m.megolm.v1.aes-sha2`: ciphertext, session_id, sender_key, device_id), each a text message
//! for ROOM_ID encrypted with vodozemac's `GroupSession`; a new session every PER_SESSION
//! messages, as a client rotates them. And `OUT_DIR/keys.json`, the export-format JSON array of
//! those sessions at index 0 (the sender's own copies), for `mxkeys encrypt` and `import`.
use std::io::Write;
use std::path::Path;

use rayon::prelude::*;
use serde_json::json;
use vodozemac::megolm::{GroupSession, InboundGroupSession, SessionConfig};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: gen-room-events ROOM_ID EVENTS PER_SESSION DEVICE_ID OUT_DIR";
    if args.len() != 6 {
        eprintln!("{usage}");
        std::process::exit(2);
    }
    let room = &args[1];
    let events: usize = args[2].parse().expect(usage);
    let per_session: usize = args[3].parse().expect(usage);
    let device = &args[4];
    let out_dir = Path::new(&args[5]);
    assert!(per_session > 0, "{usage}");

    // One sending device: its identity key is every session's sender key.
    let sender_key =
        vodozemac::Curve25519PublicKey::from(&vodozemac::Curve25519SecretKey::new()).to_base64();
    let ed25519 = vodozemac::Ed25519SecretKey::new().public_key().to_base64();

    let sessions = events.div_ceil(per_session);
    let made: Vec<(Vec<String>, serde_json::Value)> = (0..sessions)
        .into_par_iter()
        .map(|s| {
            let mut g = GroupSession::new(SessionConfig::version_1());
            let key = InboundGroupSession::new(&g.session_key(), SessionConfig::version_1())
                .export_at(0)
                .expect("index 0")
                .to_base64();
            let entry = json!({
                "algorithm": "m.megolm.v1.aes-sha2",
                "room_id": room,
                "sender_key": sender_key,
                "session_id": g.session_id(),
                "session_key": key,
                "sender_claimed_keys": {"ed25519": ed25519},
                "forwarding_curve25519_key_chain": [],
            });
            let n = per_session.min(events - s * per_session);
            let lines = (0..n)
                .map(|i| {
                    let payload = json!({
                        "type": "m.room.message",
                        "content": {
                            "msgtype": "m.text",
                            "body": format!("message {} of session {s}: the quick brown fox jumps over the lazy dog", i),
                        },
                        "room_id": room,
                    });
                    let ct = g.encrypt(payload.to_string()).to_base64();
                    json!({
                        "algorithm": "m.megolm.v1.aes-sha2",
                        "ciphertext": ct,
                        "session_id": g.session_id(),
                        "sender_key": sender_key,
                        "device_id": device,
                    })
                    .to_string()
                })
                .collect();
            (lines, entry)
        })
        .collect();

    let mut contents = std::io::BufWriter::new(
        std::fs::File::create(out_dir.join("contents.jsonl")).expect("creating contents.jsonl"),
    );
    let mut keys = Vec::with_capacity(made.len());
    for (lines, entry) in made {
        for l in lines {
            contents.write_all(l.as_bytes()).unwrap();
            contents.write_all(b"\n").unwrap();
        }
        keys.push(entry);
    }
    contents.flush().unwrap();
    std::fs::write(
        out_dir.join("keys.json"),
        serde_json::to_vec(&keys).unwrap(),
    )
    .expect("writing keys.json");
    eprintln!(
        "{events} events in {sessions} sessions written to {}",
        out_dir.display()
    );
}
