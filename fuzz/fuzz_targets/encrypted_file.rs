//! What `history export` takes from other people's events: `EncryptedFile` JSON, downloaded
//! attachment bytes, `formatted_body` HTML and `mxc://` URIs.
//!
//! The first byte picks the mode, the rest is the input:
//! - 0: `EncryptedFile::from_slice` on any bytes; an accepted object decrypts nothing whose
//!   hash differs (the empty input and the input itself, unless their SHA-256 is the one given);
//! - 1: the rest is a downloaded ciphertext for the `pixel.png` fixture's `EncryptedFile`:
//!   refused with `HashMismatch` unless it is the fixture's own ciphertext, which decrypts to
//!   the fixture's plaintext;
//! - 2: the rest (as UTF-8, lossily) is a `formatted_body`: the sanitised HTML has no script,
//!   no event handler attribute, no `javascript:` and no remote image;
//! - 3: the rest is an `mxc://` URI: an accepted one names no path outside the media id.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use mxkeys::history::export::html::sanitize;
use mxkeys::history::export::media::parse_mxc;
use mxkeys::room::attachment::{AttachmentError, EncryptedFile};

const PIXEL_FILE: &str = include_str!("../../fixtures/attachment/pixel.png.file.json");
const PIXEL_ENC: &[u8] = include_bytes!("../../fixtures/attachment/pixel.png.enc");
const PIXEL: &[u8] = include_bytes!("../../fixtures/attachment/pixel.png");

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => {
            if let Ok(f) = EncryptedFile::from_slice(rest) {
                for ct in [&b""[..], rest] {
                    match f.decrypt(ct) {
                        Ok(pt) => {
                            assert!(f.hash_matches(ct));
                            assert_eq!(pt.len(), ct.len());
                        }
                        Err(e) => assert_eq!(e, AttachmentError::HashMismatch),
                    }
                }
            }
        }
        1 => {
            let f = EncryptedFile::from_slice(PIXEL_FILE.as_bytes()).expect("fixture");
            match f.decrypt(rest) {
                Ok(pt) => {
                    assert_eq!(rest, PIXEL_ENC);
                    assert_eq!(pt.as_slice(), PIXEL);
                }
                Err(e) => assert_eq!(e, AttachmentError::HashMismatch),
            }
        }
        2 => {
            let html = String::from_utf8_lossy(rest);
            let saved = HashMap::from([("mxc://example.org/ok".to_owned(), "media/ok".to_owned())]);
            let clean = sanitize(&html, &saved).to_ascii_lowercase();
            assert!(!clean.contains("<script"), "{clean}");
            assert!(!clean.contains("<iframe"), "{clean}");
            assert!(!clean.contains("javascript:"), "{clean}");
            assert!(!clean.contains(" style="), "{clean}");
            assert!(!clean.contains(" onerror="), "{clean}");
            assert!(!clean.contains("src=\"http"), "{clean}");
        }
        _ => {
            if let Ok(s) = std::str::from_utf8(rest)
                && let Ok((server, id)) = parse_mxc(s)
            {
                assert!(!server.is_empty() && !id.is_empty());
                assert!(!id.contains('/') && !id.contains('.'));
            }
        }
    }
});
