//! Room events and Megolm messages: what a saved `/messages` response or a server may hold.
//!
//! The first byte picks the mode, the rest is the input:
//! - 0: `read_events` on any bytes (saved `/messages` responses, JSON arrays, JSON lines),
//!   in one read and through 1–7-byte reads (same events or same error kind either way); a
//!   sink that fails stops the read with its own error; every encrypted event read then goes
//!   through the history check with the fixture's sessions: one class per event, the counts
//!   add up;
//! - 1: the rest is a Megolm message (bytes): decrypted with the first fixture session
//!   (vodozemac skips Ed25519 signature checks under `cfg(fuzzing)`, so MAC and payload
//!   checks are reached) and classified; a decrypted payload is for the event's room.
#![no_main]

use std::collections::HashMap;
use std::sync::OnceLock;

use base64::Engine;
use libfuzzer_sys::fuzz_target;
use mxkeys::history::check::Checker;
use mxkeys::history::classify::Class;
use mxkeys::progress::NoProgress;
use mxkeys::room::event::{
    EncryptedContent, EncryptedEvent, MegolmContent, ReadError, ReadOptions, RoomEvent,
    read_events, read_events_from_slice,
};
use mxkeys::room::megolm::{Decryption, message_index};
use mxkeys::session::ExportedSession;
use mxkeys_fuzz::Trickle;

type Source = HashMap<(String, String), ExportedSession>;

fn sessions() -> &'static Source {
    static S: OnceLock<Source> = OnceLock::new();
    S.get_or_init(|| {
        let json = include_str!("../../fixtures/sessions/sessions-3.json");
        let v: Vec<serde_json::Value> = serde_json::from_str(json).expect("fixture");
        v.iter()
            .map(|s| {
                let s = ExportedSession::from_json(&serde_json::to_vec(s).expect("json"))
                    .expect("fixture session");
                ((s.room_id.clone(), s.session_id.clone()), s)
            })
            .collect()
    })
}

fn kind<E>(r: &Result<u64, ReadError<E>>) -> String {
    match r {
        Ok(n) => format!("ok {n}"),
        Err(ReadError::Input(e)) => format!("{:?}", std::mem::discriminant(e)),
        Err(ReadError::Sink(_)) => "sink".into(),
    }
}

fn check(events: Vec<EncryptedEvent>) {
    let mut source = sessions().clone();
    let mut seen = 0u64;
    let n = events.len() as u64;
    let report = {
        let mut checker = Checker::new(vec![], None).with_observer(Box::new(|ev, class, d| {
            seen += 1;
            if let Decryption::Decrypted { plaintext, .. } = d {
                assert_eq!(class, Class::Decrypted);
                let v: serde_json::Value = serde_json::from_slice(plaintext).expect("payload");
                assert_eq!(
                    v["room_id"],
                    ev.room_id.as_str(),
                    "payload for another room"
                );
            }
        }));
        for e in events {
            checker
                .feed(&mut source, RoomEvent::Encrypted(e), &NoProgress)
                .expect("feed");
        }
        checker.finish(&mut source, &NoProgress).expect("finish")
    };
    assert_eq!(seen, n, "one class per event");
    assert_eq!(report.counts.total(), n);
    let per_room: u64 = report.rooms.values().map(|r| r.counts.total()).sum();
    assert_eq!(per_room, n);
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let opts = ReadOptions {
        default_room: Some("!DBATafzTJLmSeBTsoz:example.org".into()),
        max_event_bytes: 4096,
    };
    match mode % 2 {
        0 => {
            let mut events = Vec::new();
            let all = read_events_from_slice::<()>(rest, &opts, &mut |e| {
                events.push(e);
                Ok(())
            });
            let mut again = Vec::new();
            let trickled = read_events::<()>(
                std::io::BufReader::with_capacity(3, Trickle::new(rest, 0)),
                &opts,
                &mut |e| {
                    again.push(e);
                    Ok(())
                },
            );
            assert_eq!(kind(&all), kind(&trickled), "chunking changed the result");
            assert_eq!(events, again, "chunking changed the events");
            let mut handed = 0;
            let stopped = read_events_from_slice(rest, &opts, &mut |_| {
                handed += 1;
                Err(())
            });
            assert!(handed <= 1, "events handed over after the sink failed");
            if all.is_ok() && !events.is_empty() {
                assert!(
                    matches!(stopped, Err(ReadError::Sink(()))),
                    "sink error lost"
                );
            }
            let encrypted: Vec<EncryptedEvent> = events
                .into_iter()
                .filter_map(|e| match e {
                    RoomEvent::Encrypted(e) => {
                        if let EncryptedContent::Megolm(m) = &e.content {
                            let _ = message_index(&m.ciphertext);
                        }
                        Some(e)
                    }
                    RoomEvent::Other { .. } => None,
                })
                .collect();
            check(encrypted);
        }
        _ => {
            // The same session every run (a HashMap's order is not).
            let (room, s) = sessions()
                .iter()
                .min_by(|a, b| a.0.cmp(b.0))
                .map(|(k, s)| (k.0.clone(), s))
                .expect("a session");
            let ev = EncryptedEvent {
                index: 0,
                event_id: None,
                room_id: room,
                sender: None,
                origin_server_ts: None,
                membership: None,
                content: EncryptedContent::Megolm(MegolmContent {
                    ciphertext: base64::engine::general_purpose::STANDARD_NO_PAD.encode(rest),
                    session_id: s.session_id.clone(),
                    claimed_sender_key: None,
                    claimed_device_id: None,
                }),
            };
            check(vec![ev]);
        }
    }
});
