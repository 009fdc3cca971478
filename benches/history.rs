//! Throughput of `history check`'s library part: reading a saved `/messages` response and
//! classifying every encrypted event (decrypting with one cached inbound session per Megolm
//! session). Run with `cargo bench --bench history`. Sessions come from a map, not the store:
//! the store is read once per session, which this leaves out.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::HashMap;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mxkeys::history::check::Checker;
use mxkeys::progress::NoProgress;
use mxkeys::room::event::{ReadOptions, read_events_from_slice};
use mxkeys::session::ExportedSession;
use serde_json::json;
use vodozemac::megolm::{GroupSession, InboundGroupSession, SessionConfig};

type Source = HashMap<(String, String), ExportedSession>;

/// `events` encrypted events over `sessions` sessions in 10 rooms, in a `/messages` response
/// in reverse order (as `dir=b` pages are), and the sessions.
fn history(events: usize, sessions: usize) -> (Vec<u8>, Source) {
    let mut groups: Vec<(String, GroupSession)> = Vec::new();
    let mut source = Source::new();
    for i in 0..sessions {
        let room = format!("!room{}:example.org", i % 10);
        let g = GroupSession::new(SessionConfig::version_1());
        let inbound = InboundGroupSession::new(&g.session_key(), SessionConfig::version_1());
        let s = json!({
            "algorithm": "m.megolm.v1.aes-sha2",
            "room_id": room,
            "sender_key": "DeHIg4gwhClxzFYcmNntPNF9YtsdZbmMy8+3kzCMXHA",
            "session_id": g.session_id(),
            "session_key": inbound.export_at_first_known_index().to_base64(),
            "sender_claimed_keys": {"ed25519": "wJ7DzYIlwFghczuxFG7F4ugAK3IFjpSaC74MzLFC6ig"},
            "forwarding_curve25519_key_chain": [],
        });
        let s = ExportedSession::from_json(s.to_string().as_bytes()).unwrap();
        source.insert((room.clone(), g.session_id()), s);
        groups.push((room, g));
    }
    let mut chunk = Vec::with_capacity(events);
    for i in 0..events {
        let (room, g) = &mut groups[i % sessions];
        let payload = json!({"type": "m.room.message", "room_id": room,
            "content": {"msgtype": "m.text", "body": format!("message number {i} with some text")}});
        let msg = g.encrypt(payload.to_string());
        chunk.push(json!({
            "type": "m.room.encrypted", "event_id": format!("$event{i}"), "room_id": room,
            "sender": "@bob:example.org", "origin_server_ts": 1_700_000_000_000u64 + i as u64,
            "content": {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": msg.to_base64(),
                "session_id": g.session_id(), "sender_key": "DeHIg4gwhClxzFYcmNntPNF9YtsdZbmMy8+3kzCMXHA",
                "device_id": "BOBPHONE"},
            "unsigned": {"membership": "join"},
        }));
    }
    chunk.reverse();
    (
        serde_json::to_vec(&json!({"chunk": chunk})).unwrap(),
        source,
    )
}

fn bench(c: &mut Criterion) {
    let (events, sessions) = (100_000, 1_000);
    let (input, source) = history(events, sessions);
    let mut g = c.benchmark_group("history_check");
    g.sample_size(10);
    g.throughput(Throughput::Elements(events as u64));
    g.bench_function("100k_events_1k_sessions", |b| {
        b.iter(|| {
            let mut source = source.clone();
            let mut checker = Checker::new(vec![], None);
            read_events_from_slice(&input, &ReadOptions::default(), &mut |e| {
                checker.feed(&mut source, e, &NoProgress)
            })
            .unwrap();
            let r = checker.finish(&mut source, &NoProgress).unwrap();
            assert_eq!(r.counts.total(), events as u64);
            assert!(r.all_fine());
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
