//! The export cipher layer: `ExportReader::open` (armor, length, version, rounds),
//! `unlock` (PBKDF2 + HMAC), `decrypt_to` (AES-CTR + MAC re-check), and the JSON layer behind
//! it (`for_each_session_batch`, `for_each_element`).
//!
//! The first byte picks the mode, the rest is the input:
//! - 0: an armored file, as a stranger might hand one over;
//! - 1: raw binary (version, salt, IV, rounds, ciphertext, MAC), armored here, so the fuzzer
//!   works on the binary fields directly;
//! - 2: a plaintext, written as a valid file by `ExportWriter` (rounds 1); reading it back must
//!   give the plaintext;
//! - 3: a plaintext, encrypted here under a fixed header with a MAC of 32 zero bytes: only the
//!   `cfg(fuzzing)` MAC bypass (src/export/mod.rs) lets it through, so the fuzzer reaches
//!   the JSON parser with plaintext it chose.
//!
//! Rounds are capped at 16 so that PBKDF2 stays cheap; the passphrase is fixed.
#![no_main]

use std::io::Cursor;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mxkeys::export::armor::ArmorEncoder;
use mxkeys::export::cipher::{ExportKeys, HEADER_LEN, MAC_LEN};
use mxkeys::export::{ExportReader, ExportWriter, Header, Limits};
use mxkeys::progress::NoProgress;
use mxkeys::secret::Passphrase;
use mxkeys::session::{self, ParsedEntry};

const PASSPHRASE: &str = "fuzz";
const LIMITS: Limits = Limits { max_rounds: 16 };

fn passphrase() -> Passphrase {
    Passphrase::from_string(PASSPHRASE.into())
}

/// The header of the files built here: fixed salt and IV (bit 63 clear), 1 round.
fn header() -> Header {
    Header {
        version: 1,
        salt: *b"mxkeys-fuzz-salt",
        iv: [0, 0, 0, 0, 0, 0, 0, 0, 0x7f, 0, 0, 0, 0, 0, 0, 0],
        rounds: 1,
    }
}

fn keys() -> &'static ExportKeys {
    static KEYS: OnceLock<ExportKeys> = OnceLock::new();
    KEYS.get_or_init(|| ExportKeys::derive(&passphrase(), &header()))
}

fn armor(bin: &[u8]) -> Vec<u8> {
    let mut enc = ArmorEncoder::new(Vec::new()).expect("writing to a Vec");
    enc.write(bin).expect("writing to a Vec");
    enc.finish().expect("writing to a Vec")
}

/// All three passes; `Some(plaintext)` when the file unlocks with the fixed passphrase.
fn read(file: &[u8]) -> Option<Vec<u8>> {
    let reader = ExportReader::open(Cursor::new(file), &LIMITS, &NoProgress).ok()?;
    let info = reader.info();
    assert!(info.decoded_len >= (HEADER_LEN + MAC_LEN) as u64);
    assert!(info.header.rounds >= 1 && info.header.rounds <= LIMITS.max_rounds);
    let _ = info.estimated_sessions();
    let _ = info.armor.describe();
    let mut unlocked = reader.unlock(&passphrase(), &NoProgress).ok()?;

    let mut plaintext = Vec::new();
    unlocked
        .decrypt_to(&NoProgress, &mut |b| {
            plaintext.extend_from_slice(b);
            Ok(())
        })
        .expect("a file that unlocked does not decrypt");
    assert_eq!(
        plaintext.len() as u64,
        unlocked.info().ciphertext_len(),
        "plaintext length"
    );

    // The JSON layer, streamed, against the in-memory parser.
    let mut streamed: Vec<ParsedEntry> = Vec::new();
    let batches = unlocked.for_each_session_batch(&NoProgress, &mut |batch| {
        streamed.extend(batch);
        Ok(())
    });
    let mut elements = 0usize;
    let split = unlocked.for_each_element(&NoProgress, &mut |_| {
        elements += 1;
        Ok(())
    });
    let in_memory = session::parse_array(&plaintext);
    match (&batches, &in_memory) {
        (Ok(n), Ok(all)) => {
            assert_eq!(*n, all.len(), "entry count");
            assert_eq!(streamed.len(), all.len(), "entries handed over");
            for (i, ((index, got), want)) in streamed.iter().zip(all).enumerate() {
                assert_eq!(*index, i, "entries out of order");
                assert_eq!(got, want, "entry {i} differs between the parsers");
            }
            assert!(matches!(split, Ok(m) if m == *n), "element count");
            assert_eq!(elements, *n);
        }
        (Err(_), Err(_)) => {}
        (a, b) => panic!(
            "streamed and in-memory parsers disagree: {:?} vs {:?}",
            a.as_ref().err(),
            b.as_ref().err()
        ),
    }
    Some(plaintext)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => {
            let _ = read(rest);
        }
        1 => {
            let _ = read(&armor(rest));
        }
        2 => {
            // A valid file from ExportWriter, the plaintext written in two pieces.
            let mut w =
                ExportWriter::with_keys(Vec::new(), keys(), &header()).expect("writing to a Vec");
            let cut = rest.len() / 3;
            w.write_plaintext(&rest[..cut]).expect("writing to a Vec");
            w.write_plaintext(&rest[cut..]).expect("writing to a Vec");
            let file = w.finish().expect("writing to a Vec");
            let pt = read(&file).expect("a file ExportWriter wrote does not read back");
            assert_eq!(pt, rest, "export round trip changed the plaintext");
        }
        _ => {
            // Header, ciphertext of the plaintext, then a MAC of 32 zero bytes.
            let h = header();
            let mut bin = h.to_bytes().to_vec();
            let start = bin.len();
            bin.extend_from_slice(rest);
            keys()
                .cipher(&h.iv)
                .apply(&mut bin[start..])
                .expect("a short plaintext");
            bin.extend_from_slice(&[0u8; MAC_LEN]);
            let pt = read(&armor(&bin)).expect("the cfg(fuzzing) MAC bypass is not in effect");
            assert_eq!(pt, rest, "decryption changed the plaintext");
        }
    }
});
