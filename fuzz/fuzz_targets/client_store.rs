//! Other clients' stores: the pickle readers and the store readers on hostile bytes.
//!
//! The first byte picks the mode, the rest is the input:
//! - 0: a pickled inbound session (vodozemac's under SHA-256 of the key, or libolm's), with
//!   nio's default pickle key; one that unpickles exports under its own session id and not
//!   under another, at its first known index;
//! - 1: a whole database file (a copy of a nio, pantalaimon or mautrix-go store, damaged at
//!   will): open, inspect and read every session without a panic; a session read is valid (a
//!   mautrix store is read again under the fixture's pickle key, mautrix having no default);
//! - 2: a pickle as mautrix-go keeps it (libolm's, under any pickle key's bytes): the first
//!   byte is the key's length, then the key, then the pickle; the same checks as 0.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mxkeys::client_store::{self, OpenOptions, pickle};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        m @ (0 | 2) => {
            let (key, rest): (&[u8], &[u8]) = if m == 0 {
                (b"DEFAULT_KEY", rest)
            } else {
                let Some((&n, tail)) = rest.split_first() else {
                    return;
                };
                tail.split_at(usize::from(n).min(tail.len()))
            };
            if let Ok((s, _)) = pickle::inbound_session(rest, key) {
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
            if opened.kind() == client_store::Kind::Mautrix {
                let keyed = OpenOptions {
                    key: Some(mxkeys::secret::Passphrase::new(
                        b"mautrix fixture pickle key".to_vec(),
                    )),
                    ..OpenOptions::default()
                };
                let _ = opened.inspect(&keyed);
                let _ = opened.read_sessions(&keyed, &mut |s| {
                    assert!(!s.session_id.is_empty());
                    Ok(())
                });
            }
            // The original bytes were never changed.
            assert_eq!(std::fs::read(&db).ok().as_deref(), Some(rest));
        }
    }
});
