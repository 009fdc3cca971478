//! Write an encrypted room history for `history check` benchmarks: N real Megolm sessions
//! (vodozemac) and M `m.room.encrypted` events spread over them, reproducible from a seed.
//!
//! usage: gen-history SESSIONS EVENTS OUT_DIR [--seed S] [--rooms R] [--active K] [--page P]
//!
//! Writes into OUT_DIR:
//! - `sessions.json`: the sessions as an export-format JSON array (each exported at index 0),
//!   for `mxkeys encrypt` + `mxkeys import`, and for matrix-sdk-crypto's
//!   `import_exported_room_keys`;
//! - `messages.json`: saved `GET /rooms/{id}/messages?dir=b` responses, one after the other,
//!   room after room, each page holding P events (default 1000) newest first, as a client
//!   paginating backwards gets them (`chunk`, `start`, `end`, `state`);
//! - `events.jsonl`: the same events as JSON lines, oldest first.
//!
//! The sessions are spread over R rooms (default 10). A room's timeline is made of
//! generations of K sessions (default 10: K senders talking at once, each rotating to a new
//! session together), whose events are shuffled together; each session gets EVENTS/SESSIONS
//! consecutive message indexes. `--active 0` makes every session of a room active all through
//! its timeline (the events of all of them interleaved: the hardest order for a decryptor).
//! Same seed and arguments, same bytes: the Megolm ratchets, signing keys and device keys come
//! from the seed (Megolm encryption and Ed25519 signing are deterministic).
use std::io::Write;

use mxkeys_bench::{Seeded, b64};
use rayon::prelude::*;
use serde_json::{Value, json};
use vodozemac::megolm::{GroupSession, GroupSessionPickle, InboundGroupSession, SessionConfig};

/// A Megolm session whose ratchet and signing key come from `rng`: a real session's pickle
/// with its key material replaced.
fn seeded_group_session(rng: &mut Seeded) -> GroupSession {
    fn fill(v: &mut Value, rng: &mut Seeded) {
        match v {
            Value::Array(a) if !a.is_empty() && a.iter().all(Value::is_u64) => {
                for x in a.iter_mut() {
                    *x = json!(rng.next_u64() as u8);
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|x| fill(x, rng)),
            Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    if k != "counter" && k != "config" {
                        fill(x, rng);
                    }
                }
            }
            _ => {}
        }
    }
    let mut v = serde_json::to_value(GroupSession::new(SessionConfig::version_1()).pickle())
        .expect("pickle to JSON");
    fill(&mut v, rng);
    let pickle: GroupSessionPickle = serde_json::from_value(v).expect("pickle from JSON");
    GroupSession::from_pickle(pickle)
}

struct Session {
    room: usize,
    /// Position of the sender device in the pool.
    device: usize,
    group: GroupSession,
    key: String,
    /// Index into the sender list.
    sender: usize,
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} needs a number")),
        None => default,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage =
        "usage: gen-history SESSIONS EVENTS OUT_DIR [--seed S] [--rooms R] [--active K] [--page P]";
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).expect(usage);
    let m: usize = args.get(2).and_then(|a| a.parse().ok()).expect(usage);
    let out = std::path::PathBuf::from(args.get(3).expect(usage));
    let seed: u64 = arg(&args, "--seed", 1);
    let rooms: usize = arg(&args, "--rooms", 10).clamp(1, n.max(1));
    let active: usize = arg(&args, "--active", 10);
    let page: usize = arg(&args, "--page", 1000).max(1);
    std::fs::create_dir_all(&out).expect("create OUT_DIR");

    let mut rng = Seeded::new(seed);
    let room_ids: Vec<String> = (0..rooms)
        .map(|i| {
            format!(
                "!{}{i}:example.org",
                b64(&rng.bytes::<12>()).replace(['+', '/'], "x")
            )
        })
        .collect();
    // 200 users with two devices each.
    let devices: Vec<(String, String, String)> = (0..400)
        .map(|i| {
            let curve = vodozemac::Curve25519SecretKey::from_slice(&rng.bytes::<32>());
            let ed = vodozemac::Ed25519SecretKey::from_slice(&rng.bytes::<32>());
            (
                vodozemac::Curve25519PublicKey::from(&curve).to_base64(),
                ed.public_key().to_base64(),
                format!("DEVICE{i:04}"),
            )
        })
        .collect();
    let senders: Vec<String> = (0..200).map(|i| format!("@user{i}:example.org")).collect();

    let session_rng = rng.fork(1);
    let mut sessions: Vec<Session> = (0..n)
        .into_par_iter()
        .map(|i| {
            let mut r = session_rng.fork(i as u64);
            let group = seeded_group_session(&mut r);
            let key = InboundGroupSession::new(&group.session_key(), SessionConfig::version_1())
                .export_at_first_known_index()
                .to_base64();
            let device = r.below(devices.len());
            Session {
                room: i % rooms,
                device,
                group,
                key,
                sender: device / 2,
            }
        })
        .collect();

    let mut keys = std::io::BufWriter::new(
        std::fs::File::create(out.join("sessions.json")).expect("sessions.json"),
    );
    keys.write_all(b"[").unwrap();
    for (i, s) in sessions.iter().enumerate() {
        let (curve, ed, _) = &devices[s.device];
        let v = json!({
            "algorithm": "m.megolm.v1.aes-sha2",
            "room_id": room_ids[s.room],
            "sender_key": curve,
            "session_id": s.group.session_id(),
            "session_key": s.key,
            "sender_claimed_keys": {"ed25519": ed},
            "forwarding_curve25519_key_chain": [],
            "m.shared_history": false,
        });
        if i > 0 {
            keys.write_all(b",").unwrap();
        }
        serde_json::to_writer(&mut keys, &v).unwrap();
    }
    keys.write_all(b"]").unwrap();
    keys.flush().unwrap();

    let mut pages = std::io::BufWriter::with_capacity(
        1 << 20,
        std::fs::File::create(out.join("messages.json")).expect("messages.json"),
    );
    let mut lines = std::io::BufWriter::with_capacity(
        1 << 20,
        std::fs::File::create(out.join("events.jsonl")).expect("events.jsonl"),
    );
    let per_session = m / n.max(1);
    let extra = m % n.max(1);
    let mut ts = 1_700_000_000_000u64;
    let mut written = 0usize;
    let mut page_no = 0usize;
    for room in 0..rooms {
        let room_id = &room_ids[room];
        // This room's sessions, in creation order, and how many events each gets.
        let mine: Vec<usize> = (0..n).filter(|&i| sessions[i].room == room).collect();
        let counts: Vec<usize> = mine
            .iter()
            .map(|&i| per_session + usize::from(i < extra))
            .collect();
        // The timeline: generations of `active` sessions, their events shuffled together.
        let k = if active == 0 { mine.len() } else { active };
        let mut order: Vec<usize> = Vec::new(); // positions in `mine`
        let mut tl_rng = rng.fork(1000 + room as u64);
        for gen_start in (0..mine.len()).step_by(k.max(1)) {
            let generation: Vec<usize> = (gen_start..(gen_start + k).min(mine.len())).collect();
            let mut slots: Vec<usize> = generation
                .iter()
                .flat_map(|&p| std::iter::repeat_n(p, counts[p]))
                .collect();
            for i in (1..slots.len()).rev() {
                slots.swap(i, tl_rng.below(i + 1));
            }
            order.extend(slots);
        }
        // Which timeline positions each session encrypts, in order.
        let mut positions: Vec<Vec<usize>> = vec![Vec::new(); mine.len()];
        for (t, &p) in order.iter().enumerate() {
            positions[p].push(t);
        }
        // Encrypt, sessions in parallel; each session's messages in index order.
        let bodies_rng = rng.fork(2000 + room as u64);
        let mut pos_of = vec![usize::MAX; n];
        for (p, &i) in mine.iter().enumerate() {
            pos_of[i] = p;
        }
        let base_ts = ts;
        let mut events: Vec<(usize, Value)> = sessions
            .par_iter_mut()
            .enumerate()
            .filter(|(_, s)| s.room == room)
            .flat_map_iter(|(i, s)| {
                let p = pos_of[i];
                let mut r = bodies_rng.fork(p as u64);
                let (curve, _, device_id) = &devices[s.device];
                let sender = &senders[s.sender];
                positions[p]
                    .iter()
                    .map(|&t| {
                        let words = 3 + r.below(30);
                        let body: Vec<String> = (0..words)
                            .map(|_| b64(&r.bytes::<6>()).to_lowercase())
                            .collect();
                        let payload = json!({
                            "type": "m.room.message",
                            "content": {"msgtype": "m.text", "body": body.join(" ")},
                            "room_id": room_id,
                        });
                        let msg = s.group.encrypt(payload.to_string());
                        let event_id = format!(
                            "${}",
                            b64(&r.bytes::<32>()).replace('+', "-").replace('/', "_")
                        );
                        let ev = json!({
                            "type": "m.room.encrypted",
                            "event_id": event_id,
                            "room_id": room_id,
                            "sender": sender,
                            "origin_server_ts": base_ts + t as u64 * 1000,
                            "content": {
                                "algorithm": "m.megolm.v1.aes-sha2",
                                "ciphertext": msg.to_base64(),
                                "session_id": s.group.session_id(),
                                "sender_key": curve,
                                "device_id": device_id,
                            },
                            "unsigned": {"membership": "join"},
                        });
                        (t, ev)
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        events.sort_unstable_by_key(|(t, _)| *t);
        ts = base_ts + events.len() as u64 * 1000 + 60_000;
        for (_, ev) in &events {
            serde_json::to_writer(&mut lines, ev).unwrap();
            lines.write_all(b"\n").unwrap();
        }
        // Pages newest first, each page's events newest first.
        let newest_first: Vec<&Value> = events.iter().rev().map(|(_, e)| e).collect();
        for chunk in newest_first.chunks(page) {
            let v = json!({
                "chunk": chunk,
                "start": format!("t{page_no}-start"),
                "end": format!("t{}-start", page_no + 1),
                "state": [],
            });
            serde_json::to_writer(&mut pages, &v).unwrap();
            pages.write_all(b"\n").unwrap();
            page_no += 1;
        }
        written += events.len();
    }
    pages.flush().unwrap();
    lines.flush().unwrap();
    eprintln!(
        "gen-history: {n} sessions, {written} events in {rooms} rooms ({page_no} pages) in {}",
        out.display()
    );
}
