//! Write N real Megolm sessions (made with vodozemac) as an export-format JSON array.
//!
//! usage: gen-sessions N [ROOMS] > sessions.json
//! Each session is a fresh GroupSession exported at index 0, in the shape Element writes
//! (sender_claimed_keys, empty forwarding chain, m.shared_history). Senders are drawn from a
//! pool of 1000 devices with real Curve25519 and Ed25519 keys, as in a real account.
use std::io::Write;

use rayon::prelude::*;
use vodozemac::megolm::{GroupSession, InboundGroupSession, SessionConfig};

fn b64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(bytes.len() * 4 / 3 + 4);
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        s.push(A[(n >> 18) as usize & 63] as char);
        s.push(A[(n >> 12) as usize & 63] as char);
        if c.len() > 1 {
            s.push(A[(n >> 6) as usize & 63] as char);
        }
        if c.len() > 2 {
            s.push(A[n as usize & 63] as char);
        }
    }
    s
}

fn rand32() -> [u8; 32] {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("OS RNG");
    b
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).expect("usage: gen-sessions N [ROOMS]");
    let rooms: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or((n / 50).max(1));
    let room_ids: Vec<String> = (0..rooms)
        .map(|i| format!("!{}:example.org", &b64(&rand32())[..18].replace(['+', '/'], "x") ) + &format!("{i}"))
        .collect();
    let devices: Vec<(String, String)> = (0..1000)
        .map(|_| {
            (
                vodozemac::Curve25519PublicKey::from(&vodozemac::Curve25519SecretKey::new()).to_base64(),
                vodozemac::Ed25519SecretKey::new().public_key().to_base64(),
            )
        })
        .collect();
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, out.lock());
    out.write_all(b"[").unwrap();
    const CHUNK: usize = 10_000;
    let mut written = 0;
    while written < n {
        let m = CHUNK.min(n - written);
        let items: Vec<String> = (0..m)
            .into_par_iter()
            .map(|i| {
                let g = GroupSession::new(SessionConfig::version_1());
                let inbound = InboundGroupSession::new(&g.session_key(), SessionConfig::version_1());
                let key = inbound.export_at_first_known_index().to_base64();
                let room = &room_ids[(written + i) % rooms];
                let (curve, ed) = &devices[(written + i) * 7 % devices.len()];
                serde_json::json!({
                    "algorithm": "m.megolm.v1.aes-sha2",
                    "room_id": room,
                    "sender_key": curve,
                    "session_id": g.session_id(),
                    "session_key": key,
                    "sender_claimed_keys": {"ed25519": ed},
                    "forwarding_curve25519_key_chain": [],
                    "m.shared_history": true,
                })
                .to_string()
            })
            .collect();
        for (i, s) in items.iter().enumerate() {
            if written + i > 0 {
                out.write_all(b",").unwrap();
            }
            out.write_all(s.as_bytes()).unwrap();
        }
        written += m;
    }
    out.write_all(b"]").unwrap();
    out.flush().unwrap();
}
