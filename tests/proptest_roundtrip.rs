//! Property tests: the library's writer and reader round-trip any bytes under any passphrase,
//! any re-wrapping of the armor still reads, any single bit flip is refused, and the CLI's
//! import -> export -> import keeps every session.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Cursor;

use common::{Env, PASS, element, megolm, session_set, text};
use mxkeys::export::{ExportReader, ExportWriter, Limits};
use mxkeys::progress::NoProgress;
use mxkeys::secret::Passphrase;
use proptest::prelude::*;
use serde_json::{Value, json};

fn write(pt: &[u8], pass: &[u8], rounds: u32) -> Vec<u8> {
    let mut w = ExportWriter::new(Vec::new(), &Passphrase::new(pass.to_vec()), rounds).unwrap();
    // in uneven pieces, as a stream would arrive
    for chunk in pt.chunks(777) {
        w.write_plaintext(chunk).unwrap();
    }
    w.finish().unwrap()
}

fn read_with(file: &[u8], pass: &[u8], limits: &Limits) -> Result<Vec<u8>, mxkeys::Error> {
    let r = ExportReader::open(Cursor::new(file), limits, &NoProgress)?;
    let mut u = r
        .unlock(&Passphrase::new(pass.to_vec()), &NoProgress)
        .map_err(|(_, e)| e)?;
    let mut out = Vec::new();
    u.decrypt_to(&NoProgress, &mut |b| {
        out.extend_from_slice(b);
        Ok(())
    })?;
    Ok(out)
}

fn read(file: &[u8], pass: &[u8]) -> Result<Vec<u8>, mxkeys::Error> {
    read_with(file, pass, &Limits::default())
}

/// How one body line is laid out.
#[derive(Debug, Clone)]
struct Line {
    len: usize,
    crlf: bool,
    indent: String,
    trailing: String,
    blank_after: bool,
}

fn line() -> impl Strategy<Value = Line> {
    (
        1usize..200,
        any::<bool>(),
        "[ \t]{0,4}",
        "[ \t]{0,3}",
        prop::bool::weighted(0.1),
    )
        .prop_map(|(len, crlf, indent, trailing, blank_after)| Line {
            len,
            crlf,
            indent,
            trailing,
            blank_after,
        })
}

/// Lay `b64` out with `lines` (cycled), optional padding, text around it.
fn rewrap(b64: &str, lines: &[Line], keep_padding: bool, before: bool, after: bool) -> String {
    let b64 = if keep_padding {
        b64.to_string()
    } else {
        b64.trim_end_matches('=').to_string()
    };
    let mut out = String::new();
    if before {
        out.push_str("Keys from my old laptop\r\n\n");
    }
    out.push_str(element::HEADER);
    out.push_str(if lines[0].crlf { "\r\n" } else { "\n" });
    let mut rest = b64.as_str();
    let mut i = 0;
    while !rest.is_empty() {
        let l = &lines[i % lines.len()];
        let n = l.len.min(rest.len());
        out.push_str(&l.indent);
        out.push_str(&rest[..n]);
        out.push_str(&l.trailing);
        let eol = if l.crlf { "\r\n" } else { "\n" };
        out.push_str(eol);
        if l.blank_after {
            out.push_str(eol);
        }
        rest = &rest[n..];
        i += 1;
    }
    out.push_str(&lines[i % lines.len()].indent);
    out.push_str(element::FOOTER);
    if after {
        out.push_str("\n-- \nsent from my phone\n");
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn library_round_trip(
        pt in prop::collection::vec(any::<u8>(), 0..3000),
        pass in prop::collection::vec(any::<u8>(), 0..48),
    ) {
        let f = write(&pt, &pass, 1);
        prop_assert_eq!(read(&f, &pass).unwrap(), pt.clone());
        // the independent Element decryptor agrees
        let body = element::check_written_armor(&f);
        let o = element::open(&body, &pass).unwrap();
        prop_assert_eq!(o.plaintext, pt);
        prop_assert_eq!(o.rounds, 1);
        // any other passphrase is refused (not one that only adds NUL bytes: HMAC pads its
        // key with zeros, so PBKDF2-HMAC cannot tell "pw" from "pw\0")
        let mut other = pass.clone();
        other.push(1);
        prop_assert!(matches!(read(&f, &other), Err(mxkeys::Error::WrongPassphraseOrModified)));
    }

    #[test]
    fn independent_files_read_back(
        pt in prop::collection::vec(any::<u8>(), 0..2000),
        pass in "\\PC{0,20}",
        iv_low in any::<u64>(),
    ) {
        // any IV (bit 63 set or not, low half near wrapping or not), any UTF-8 passphrase
        let mut iv = element::random::<16>();
        iv[8..].copy_from_slice(&iv_low.to_be_bytes());
        let body = element::seal_with(&pt, pass.as_bytes(), 1, element::random(), iv, 1);
        let f = element::armor(&body, 128);
        prop_assert_eq!(read(f.as_bytes(), pass.as_bytes()).unwrap(), pt);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_rewrapping_still_decrypts(
        pt in prop::collection::vec(any::<u8>(), 0..1500),
        lines in prop::collection::vec(line(), 1..8),
        keep_padding in any::<bool>(),
        before in any::<bool>(),
        after in any::<bool>(),
    ) {
        use base64::Engine;
        let f = write(&pt, b"pw", 1);
        let body = element::unarmor(&f);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&body);
        let t = rewrap(&b64, &lines, keep_padding, before, after);
        let got = read(t.as_bytes(), b"pw");
        prop_assert!(got.is_ok(), "{:?} for\n{}", got.err(), t);
        prop_assert_eq!(got.unwrap(), pt);
    }

    #[test]
    fn any_single_bit_flip_is_refused(
        pt in prop::collection::vec(any::<u8>(), 0..600),
        bit in any::<prop::sample::Index>(),
    ) {
        let f = write(&pt, b"pw", 1);
        let mut body = element::unarmor(&f);
        let i = bit.index(body.len() * 8);
        body[i / 8] ^= 1 << (i % 8);
        let t = element::armor(&body, 128);
        // a flip in the rounds field may ask for more work: keep the cap low
        let r = read_with(t.as_bytes(), b"pw", &Limits { max_rounds: 1000 });
        prop_assert!(r.is_err(), "flip of bit {} accepted", i);
    }
}

/// A generated session: room, first index, extras.
#[derive(Debug, Clone)]
struct Spec {
    room: usize,
    index: u32,
    shared: bool,
    custom: Option<String>,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        0usize..3,
        0u32..20,
        any::<bool>(),
        prop::option::of("[a-z0-9 ]{0,12}"),
    )
        .prop_map(|(room, index, shared, custom)| Spec {
            room,
            index,
            shared,
            custom,
        })
}

fn export_from(env: &Env, name: &str) -> Vec<Value> {
    env.export_sessions(name, &[])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    #[test]
    fn cli_import_export_import(specs in prop::collection::vec(spec(), 1..6)) {
        let env = Env::new();
        env.init_store();
        let entries: Vec<Value> = specs
            .iter()
            .map(|s| {
                let g = megolm::new_group();
                let mut e = megolm::entry(&g, &format!("!room{}:example.org", s.room), s.index);
                if s.shared {
                    e["m.shared_history"] = json!(true);
                }
                if let Some(c) = &s.custom {
                    e["x.custom"] = json!({"note": c});
                }
                e
            })
            .collect();
        let f = env.write(
            "in.txt",
            element::encrypt(&serde_json::to_vec(&entries).unwrap(), PASS.as_bytes(), 1),
        );
        let r = env.import_ok(&[&f]);
        prop_assert_eq!(&r["imported"], &json!(entries.len()));

        let exported = export_from(&env, "out.txt");
        prop_assert_eq!(session_set(&exported), session_set(&entries));

        // into a second store, and back out again
        let env2 = Env::new();
        env2.init_store();
        let r = env2.import_ok(&[&env.path("out.txt")]);
        prop_assert_eq!(&r["imported"], &json!(entries.len()));
        let again = export_from(&env2, "again.txt");
        prop_assert_eq!(session_set(&again), session_set(&entries));

        // re-importing changes nothing
        let out = env.import(&[&env2.path("again.txt")]);
        prop_assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let r: Value = serde_json::from_slice(&out.stdout).unwrap();
        prop_assert_eq!(&r["unchanged"], &json!(entries.len()));
        prop_assert_eq!(&r["imported"], &json!(0));
    }
}
