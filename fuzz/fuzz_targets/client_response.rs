//! The homeserver client's response parsing: what an untrusted server sends back.
//!
//! The first byte picks the mode, the rest is the body:
//! - 0: a `GET /room_keys/keys` body through the streaming parser
//!   (`Client::parse_saved_keys`); every key handed over re-serialises and parses back to
//!   the same `KeyBackupData`; a sink that fails stops the parse with its own error;
//! - 1: a `GET /room_keys/version` body (`BackupVersion`): parse, re-serialise round trip;
//! - 2: a Matrix error body (`parse_error_body`): never panics, and what it returns is
//!   sanitised (no control characters);
//! - 3: one `KeyBackupData` (the single-session endpoint), `WhoAmI`, and the dehydrated
//!   device (MSC3814) and a page of its queued messages.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mxkeys::backup::KeyBackupData;
use mxkeys::client::devices::{DehydratedDevice, DehydratedEvents};
use mxkeys::client::error::parse_error_body;
use mxkeys::client::{BackupVersion, Client, RoomKey, WhoAmI, server_name};
use mxkeys::progress::NoProgress;
use mxkeys_fuzz::{parse_round_trip, same_json, to_value};
use serde_json::Value;

fn check_key(k: &RoomKey) {
    let json = serde_json::to_vec(&k.data).expect("serialising");
    let again: KeyBackupData = serde_json::from_slice(&json).expect("re-serialised key");
    assert!(
        same_json(&to_value(&again), &to_value(&k.data)),
        "KeyBackupData round trip"
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => {
            let mut keys = Vec::new();
            let all = Client::parse_saved_keys(rest, &NoProgress, &mut |k| {
                check_key(&k);
                keys.push(k);
                Ok(())
            });
            // Stopping at the first key: the sink's error comes back, nothing after it.
            let mut seen = 0;
            let stopped = Client::parse_saved_keys(rest, &NoProgress, &mut |_| {
                seen += 1;
                Err(mxkeys::Error::Interrupted)
            });
            assert!(seen <= 1, "keys handed over after the sink failed");
            if all.is_ok() && !keys.is_empty() {
                assert!(
                    matches!(stopped, Err(mxkeys::Error::Interrupted)),
                    "the sink's error was lost: {stopped:?}"
                );
            }
            if seen == 0 {
                assert_eq!(all.is_ok(), stopped.is_ok(), "parses disagree");
            }
            for k in &keys {
                let _ = server_name(&k.room_id);
            }
        }
        1 => {
            let _ = parse_round_trip::<BackupVersion>(rest);
        }
        2 => {
            let (errcode, message, _retry) = parse_error_body(rest);
            assert!(!errcode.chars().any(char::is_control), "{errcode:?}");
            assert!(!message.chars().any(char::is_control), "{message:?}");
            // An object with a short, printable string errcode keeps it as it is (longer
            // or unprintable ones are sanitised).
            if let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(rest)
                && let Some(Value::String(e)) = m.get("errcode")
                && e.chars().count() <= 100
                && !e.chars().any(char::is_control)
            {
                assert_eq!(&errcode, e);
            }
        }
        _ => {
            let _ = parse_round_trip::<KeyBackupData>(rest);
            let _ = parse_round_trip::<WhoAmI>(rest);
            let _ = parse_round_trip::<DehydratedDevice>(rest);
            let _ = parse_round_trip::<DehydratedEvents>(rest);
            if let Ok(text) = std::str::from_utf8(rest) {
                let _ = server_name(text);
                let _ = mxkeys::client::normalize_base_url(text);
            }
        }
    }
});
