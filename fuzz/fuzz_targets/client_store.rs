//! Other clients' stores: the pickle readers and the store readers on hostile bytes.
//!
//! The first byte picks the mode, the rest is the input:
//! - 0: a pickled inbound session (vodozemac's under SHA-256 of the key, or libolm's), with
//!   nio's default pickle key; one that unpickles exports under its own session id and not
//!   under another, at its first known index;
//! - 1: a whole database file (a copy of a nio or pantalaimon store, damaged at will): open,
//!   inspect and read every session without a panic; a session read is valid.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mxkeys::client_store::{self, OpenOptions, pickle};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 2 {
        0 => {
            if let Ok((s, _)) = pickle::inbound_session(rest, b"DEFAULT_KEY") {
                let id = s.session_id();
                let e = pickle::exported(
                    &s,
                    &id,
                    "!r:x",
                    "DeHIg4gwhClxzFYcmNntPNF9YtsdZbmMy8+3kzCMXHA",
                    Some("FoFzeER5D16p2zgy6vMD9jttW+1BWvgAKt840xmMP3Q"),
                    &[],
                )
                .expect("an unpickled session exports");
                assert_eq!(e.session_id, id);
                assert_eq!(e.first_known_index(), s.first_known_index());
                assert!(
                    pickle::exported(
                        &s,
                        "another",
                        "!r:x",
                        "DeHIg4gwhClxzFYcmNntPNF9YtsdZbmMy8+3kzCMXHA",
                        None,
                        &[]
                    )
                    .is_err()
                );
            }
        }
        _ => {
            let Ok(dir) = tempfile::tempdir() else {
                return;
            };
            let db = dir.path().join("store.db");
            if std::fs::write(&db, rest).is_err() {
                return;
            }
            let opts = OpenOptions::default();
            let Ok(opened) = client_store::open(&db, &opts) else {
                return;
            };
            let _ = opened.inspect(&opts);
            let _ = opened.read_sessions(&opts, &mut |s| {
                assert!(!s.session_id.is_empty());
                Ok(())
            });
            // The original bytes were never changed.
            assert_eq!(std::fs::read(&db).ok().as_deref(), Some(rest));
        }
    }
});
