//! The hostile-input corpus (issue 5, part 2): a table of malformed and adversarial inputs,
//! each with how it is built, the command it is given to, the exit code the README documents,
//! the class of its one-line error (a substring of the `mxkeys: error:` line) and of its
//! `hint:` line.
//!
//! Every case is run against the real binary in a clean environment, without a terminal,
//! under a wall-clock timeout, an address-space limit (`prlimit --as`) and `/usr/bin/time`
//! (maximum RSS), and checked for: no panic (never exit 101, never "panicked" on stderr);
//! exactly one error line, naming the cause once, and one hint line (or, for partial imports
//! and downloads, exit 3 with a per-entry reason); the documented exit code; nothing left in the
//! output directory (no output file, no temporary file); the key store unchanged (a store
//! pre-loaded with element-three.txt, compared row by row and with `list --json`); bounded
//! time and memory.
//!
//! The corpus covers the export file (armor, base64, binary header, MAC), its MAC-valid
//! payload (JSON, sessions, session keys), recovery keys, and saved backup responses
//! (`backup download --from-response`); a second test covers secret-storage items and backup
//! session data with bad MACs at the library level.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use common::backup_cipher::b64d;
use common::run::{Limits, resource_problems};
use common::{Env, PASS, Run, element, fixture, megolm};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Expected message classes and hints (substrings of the README's messages).

const WRONG: &str = "wrong passphrase, or the file was modified";
const NOT_EXPORT: &str = "the file decrypted but its content is not a key export";
const TOO_SHORT: &str = "too short";
const NO_HEADER: &str = "header line";
const NO_FOOTER: &str = "footer line; the file is truncated";
const NOT_FOOTER: &str = "a line starting with '-' that is not the footer";
const BAD_B64: &str = "bad base64 at line";
const SECOND_HEADER: &str = "a second header line";
const UTF16: &str = "looks like UTF-16 or binary";
const VERSION: &str = "unsupported format version";
const TOO_MANY_ROUNDS: &str = "PBKDF2 rounds, more than the limit of";
const ZERO_ROUNDS: &str = "asks for 0 PBKDF2 rounds";
const NOT_ARRAY: &str = "not a JSON array";
const SAVED: &str = "not a saved GET /room_keys/keys response";
const WRONG_BACKUP_KEY: &str = "wrong backup key";

const H_DAMAGED: &str = "the file is damaged";
const H_HEADER: &str = "a key export starts with the line";
const H_INCOMPLETE: &str = "the file is incomplete";
const H_SPLIT: &str = "split the file";
const H_MAX_ROUNDS: &str = "--max-rounds";
const H_PASS: &str = "check the passphrase";
const H_RAW: &str = "--raw";
const H_RK: &str = "a recovery key is 48 characters";
const H_SAVED: &str = "--from-response";
const H_BACKUP_KEY: &str = "the key does not belong to this backup";

/// The limits of every run: an address space of 512 MiB (the binary needs well under 128 MiB),
/// and CPU time, which a busy machine does not inflate: a case does bounded work (a refused
/// round count is never run, a 10 MB input is read once), and one that ran away would pass
/// this by far. The wall clock is only a guard against a hang.
const LIMITS: Limits = Limits {
    cpu: Duration::from_secs(20),
    address_space: Some(512 * 1024 * 1024),
    wall: common::TIMEOUT,
};
/// No case may grow larger than this (maximum RSS).
const CASE_RSS_KB: u64 = 128 * 1024;

// ---------------------------------------------------------------------------------------------
// The table

/// The command a case's input is given to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmd {
    /// `--store S --store-passphrase-file SP import IN --passphrase-file P`
    Import,
    /// `decrypt IN -o OUT/plain.json --passphrase-file P`
    Decrypt,
    /// `inspect IN` (structure only, no passphrase)
    Inspect,
    /// `recovery-key check --offline --recovery-key-file IN`
    RecoveryCheck,
    /// `backup download --from-response IN --recovery-key-file RK -o OUT/keys.txt
    /// --passphrase-file P --rounds 1000`
    DownloadSaved,
}

/// What a case must end with.
#[derive(Debug, Clone)]
enum Expect {
    /// One `mxkeys: error:` line containing `message` (once) and a `hint:` line containing
    /// `hint`; exit `code`.
    Error {
        code: i32,
        message: String,
        hint: &'static str,
    },
    /// Exit 3; each rejected entry or conflict named with a reason containing `reason`; for
    /// downloads, the output holds exactly the `keep` valid sessions.
    Partial { reason: String, keep: usize },
}

fn err(code: i32, message: impl Into<String>, hint: &'static str) -> Expect {
    Expect::Error {
        code,
        message: message.into(),
        hint,
    }
}

fn partial(reason: impl Into<String>) -> Expect {
    Expect::Partial {
        reason: reason.into(),
        keep: 0,
    }
}

type Build = Box<dyn Fn() -> Vec<u8>>;

/// One corpus case.
struct Case {
    name: String,
    /// How the input is built (bytes of the file given to the command).
    build: Build,
    cmd: Cmd,
    /// Extra arguments after the command's own.
    extra: Vec<String>,
    expect: Expect,
    /// A large input (10 MB): reported with its time and memory.
    big: bool,
}

fn case(name: impl Into<String>, cmd: Cmd, expect: Expect, build: Build) -> Case {
    Case {
        name: name.into(),
        build,
        cmd,
        extra: Vec::new(),
        expect,
        big: false,
    }
}

fn bytes(b: impl Into<Vec<u8>>) -> Build {
    let b: Vec<u8> = b.into();
    Box::new(move || b.clone())
}

// ---------------------------------------------------------------------------------------------
// Input builders

/// The plaintext of element-three.txt: importing it into the pre-loaded store changes nothing.
fn three_plaintext() -> Vec<u8> {
    std::fs::read(fixture("export/plaintext/element-three.json")).unwrap()
}

/// A valid binary body around `pt` (version 1, 1000 rounds, IV bit 63 cleared).
fn body_of(pt: &[u8]) -> Vec<u8> {
    element::seal(pt, PASS.as_bytes(), 1000)
}

/// A MAC-valid export file (1 round, written by the independent encryptor) around `pt`.
fn sealed(pt: &[u8]) -> Vec<u8> {
    element::encrypt(pt, PASS.as_bytes(), 1).into_bytes()
}

fn armor(body: &[u8]) -> Vec<u8> {
    element::armor(body, 128).into_bytes()
}

/// `body` with bit `bit` of byte `at` flipped, armored.
fn flipped(body: &[u8], at: usize, bit: u8) -> Vec<u8> {
    let mut b = body.to_vec();
    b[at] ^= 1 << bit;
    armor(&b)
}

/// A header with the given version and rounds; the rest valid for 1000 rounds.
fn with_header(version: u8, rounds: u32) -> Vec<u8> {
    let mut b = body_of(b"[]");
    b[0] = version;
    b[33..37].copy_from_slice(&rounds.to_be_bytes());
    armor(&b)
}

/// Replace the byte at `col` of body line `line` (0 = first body line) of an armored file.
fn replace_in_body(text: &[u8], line: usize, col: usize, with: &[u8]) -> Vec<u8> {
    let s = std::str::from_utf8(text).unwrap();
    let mut lines: Vec<Vec<u8>> = s.split('\n').map(|l| l.as_bytes().to_vec()).collect();
    let l = &mut lines[line + 1];
    let mut new = l[..col].to_vec();
    new.extend_from_slice(with);
    new.extend_from_slice(&l[col + 1..]);
    *l = new;
    lines.join(&b"\n"[..])
}

fn utf16le(s: &[u8], bom: bool) -> Vec<u8> {
    let mut out = if bom { vec![0xFF, 0xFE] } else { vec![] };
    for &b in s {
        out.extend_from_slice(&[b, 0]);
    }
    out
}

fn utf16be(s: &[u8], bom: bool) -> Vec<u8> {
    let mut out = if bom { vec![0xFE, 0xFF] } else { vec![] };
    for &b in s {
        out.extend_from_slice(&[0, b]);
    }
    out
}

/// A valid export-file entry for a new session (not in the store).
fn fresh_entry() -> Value {
    let g = megolm::new_group();
    megolm::entry(&g, "!hostile:example.org", 0)
}

/// A JSON array of entries, MAC-valid.
fn sealed_entries(entries: &[Value]) -> Vec<u8> {
    sealed(&serde_json::to_vec(&Value::Array(entries.to_vec())).unwrap())
}

/// An entry with `field` set to `value` (or removed when `None`).
fn entry_with(field: &str, value: Option<Value>) -> Value {
    let mut e = fresh_entry();
    match value {
        Some(v) => e[field] = v,
        None => {
            e.as_object_mut().unwrap().remove(field);
        }
    }
    e
}

/// An entry whose session key is `key_bytes` (and whose session_id matches the key's last 32
/// bytes when it has them).
fn entry_with_key_bytes(key_bytes: &[u8]) -> Value {
    let mut e = fresh_entry();
    e["session_key"] = json!(STANDARD_NO_PAD.encode(key_bytes));
    if key_bytes.len() >= 165 {
        e["session_id"] = json!(STANDARD_NO_PAD.encode(&key_bytes[133..165]));
    }
    e
}

/// The export-format key bytes of a fresh session.
fn v1_key_bytes() -> Vec<u8> {
    let g = megolm::new_group();
    STANDARD_NO_PAD
        .decode(megolm::key_at(&g, 0).trim_end_matches('='))
        .unwrap()
}

/// A session key whose Ed25519 part is not a point on the curve.
fn invalid_point_key() -> Vec<u8> {
    let mut k = v1_key_bytes();
    for seed in 0u8..=255 {
        let mut y = [seed; 32];
        y[0] = seed.wrapping_mul(31).wrapping_add(7);
        k[133..165].copy_from_slice(&y);
        if vodozemac::megolm::ExportedSessionKey::from_bytes(&k).is_err() {
            return k;
        }
    }
    panic!("no invalid Ed25519 point found");
}

/// Sessions held by the store (from element-three), as JSON entries.
fn held_sessions() -> Vec<Value> {
    serde_json::from_slice(&three_plaintext()).unwrap()
}

/// A copy of a held session whose ratchet does not connect to the held one.
fn forged_copy(held: &Value) -> Value {
    let mut e = held.clone();
    e["session_key"] = json!(megolm::forged(held["session_key"].as_str().unwrap()));
    e
}

/// A nested value `depth` deep.
fn nested(open: &str, close: &str, depth: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(depth * (open.len() + close.len()));
    for _ in 0..depth {
        v.extend_from_slice(open.as_bytes());
    }
    for _ in 0..depth {
        v.extend_from_slice(close.as_bytes());
    }
    v
}

// ---- recovery keys ----

/// Base58 encoding (Bitcoin alphabet), written here independently of mxkeys.
fn base58(bytes: &[u8]) -> String {
    const A: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    let mut digits: Vec<u32> = Vec::new();
    for &b in bytes {
        let mut carry = u32::from(b);
        for d in digits.iter_mut() {
            carry += *d << 8;
            *d = carry % 58;
            carry /= 58;
        }
        while carry > 0 {
            digits.push(carry % 58);
            carry /= 58;
        }
    }
    let zeros = bytes.iter().take_while(|b| **b == 0).count();
    let mut s = "1".repeat(zeros);
    s.extend(digits.iter().rev().map(|&d| A[d as usize] as char));
    s
}

/// A recovery key with any prefix and parity, as 48 (or however many) base58 characters.
fn raw_recovery_key(prefix: [u8; 2], key: &[u8; 32], parity_fix: bool) -> String {
    let mut raw = prefix.to_vec();
    raw.extend_from_slice(key);
    let p = raw.iter().fold(0u8, |a, b| a ^ b);
    raw.push(if parity_fix { p } else { p ^ 0x5a });
    base58(&raw)
}

/// A well-formed recovery key (unspaced) for a fixed key.
fn good_recovery_key() -> String {
    raw_recovery_key([0x8B, 0x01], &[0x42; 32], true)
}

/// `good` with the character at `pos` replaced by the first alternative that gives
/// `WrongParity` (so the case really is a check-digit failure, not a prefix failure).
fn parity_typo(pos: usize) -> String {
    let good = good_recovery_key();
    for c in "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz".chars() {
        let mut s: Vec<char> = good.chars().collect();
        if s[pos] == c {
            continue;
        }
        s[pos] = c;
        let t: String = s.into_iter().collect();
        if matches!(
            mxkeys::recovery_key::decode(&t),
            Err(mxkeys::recovery_key::RecoveryKeyError::WrongParity)
        ) {
            return t;
        }
    }
    panic!("no parity typo at {pos}");
}

fn with_char(s: &str, pos: usize, c: &str) -> String {
    let mut v: Vec<String> = s.chars().map(String::from).collect();
    v[pos] = c.to_string();
    v.concat()
}

/// A recovery key that decodes to a different prefix but has 48 characters.
fn wrong_prefix_key(prefix: [u8; 2]) -> String {
    let mut key = [0x42u8; 32];
    for i in 0..=255u8 {
        key[31] = i;
        let s = raw_recovery_key(prefix, &key, true);
        if s.len() == 48 {
            return s;
        }
    }
    panic!("no 48-character key with prefix {prefix:02x?}");
}

// ---- saved backup responses ----

/// The backup key of the offline-download cases, its recovery-key text, and sessions.
struct BackupFx {
    key: mxkeys::backup::BackupDecryptionKey,
    other: mxkeys::backup::BackupDecryptionKey,
}

impl BackupFx {
    fn new() -> Self {
        BackupFx {
            key: mxkeys::backup::BackupDecryptionKey::new(mxkeys::secret::Key32::new([7u8; 32])),
            other: mxkeys::backup::BackupDecryptionKey::new(mxkeys::secret::Key32::new([9u8; 32])),
        }
    }

    fn recovery_key_text(&self) -> String {
        mxkeys::recovery_key::encode(self.key.expose_secret()).to_string()
    }
}

/// `(room, session id, KeyBackupData)` for a fresh session encrypted to `key`.
fn backup_entry(key: &mxkeys::backup::BackupDecryptionKey) -> (String, String, Value) {
    let g = megolm::new_group();
    let e = megolm::entry(&g, "!backup:example.org", 0);
    let s = mxkeys::session::ExportedSession::from_json(&serde_json::to_vec(&e).unwrap()).unwrap();
    let d = mxkeys::backup::encrypt_session(&key.public_key(), &s, 0, false).unwrap();
    (
        "!backup:example.org".to_string(),
        g.session_id(),
        serde_json::to_value(&d).unwrap(),
    )
}

/// KeyBackupData around any plaintext, encrypted to `key`.
fn backup_data_of(key: &mxkeys::backup::BackupDecryptionKey, plaintext: &[u8]) -> Value {
    let sd = mxkeys::backup::encrypt(&key.public_key(), plaintext).unwrap();
    json!({
        "first_message_index": 0,
        "forwarded_count": 0,
        "is_verified": false,
        "session_data": serde_json::to_value(&sd).unwrap(),
    })
}

/// A saved `GET /room_keys/keys` body.
fn saved(entries: &[(String, String, Value)]) -> Vec<u8> {
    let mut rooms = serde_json::Map::new();
    for (r, s, d) in entries {
        rooms
            .entry(r.clone())
            .or_insert_with(|| json!({"sessions": {}}))["sessions"][s] = d.clone();
    }
    serde_json::to_vec(&json!({ "rooms": rooms })).unwrap()
}

/// A saved response with one good entry and one entry built by `bad` from a good one.
fn saved_good_and_bad(
    fx: &BackupFx,
    bad: impl Fn(&mut Value, &mxkeys::backup::BackupDecryptionKey),
) -> Vec<u8> {
    let good = backup_entry(&fx.key);
    let mut b = backup_entry(&fx.key);
    bad(&mut b.2, &fx.key);
    b.0 = "!bad:example.org".into();
    saved(&[good, b])
}

/// A case input: [`saved_good_and_bad`] with a fresh fixture.
fn with_bad(bad: impl Fn(&mut Value, &mxkeys::backup::BackupDecryptionKey) + 'static) -> Build {
    Box::new(move || saved_good_and_bad(&BackupFx::new(), &bad))
}

// ---------------------------------------------------------------------------------------------
// The corpus

fn corpus(fx: &BackupFx) -> Vec<Case> {
    use Cmd::*;
    let mut v: Vec<Case> = Vec::new();
    let pt = three_plaintext();
    let body = body_of(&pt);
    let file = armor(&body);
    let text = String::from_utf8(file.clone()).unwrap();
    let hl = element::HEADER.len();
    let body_start = hl + 1;
    let footer_start = text.rfind(element::FOOTER).unwrap();
    let body_chars = footer_start - body_start;

    // 1. Truncations at every structural boundary of the armored file.
    let cut = |n: usize| -> Build { bytes(file[..n].to_vec()) };
    for (what, n) in [
        ("inside the header line (1 byte)", 1),
        ("inside the header line (10 bytes)", 10),
        ("inside the header line (all but its last byte)", hl - 1),
    ] {
        for cmd in [Import, Decrypt, Inspect] {
            v.push(case(
                format!("truncated {what} [{cmd:?}]"),
                cmd,
                err(13, NO_HEADER, H_HEADER),
                cut(n),
            ));
        }
    }
    v.push(case(
        "truncated after the header text, before its newline",
        Import,
        err(13, NO_HEADER, H_HEADER),
        cut(hl),
    ));
    for (what, n) in [
        ("right after the header line", body_start),
        ("after the first body line", body_start + 129),
        (
            "in the middle of a base64 group of line 2",
            body_start + 129 + 7,
        ),
        ("at a quarter of the body", body_start + body_chars / 4),
        ("at half the body", body_start + body_chars / 2),
        (
            "at three quarters of the body",
            body_start + body_chars * 3 / 4,
        ),
        ("before the footer", footer_start),
    ] {
        for cmd in [Import, Decrypt, Inspect] {
            v.push(case(
                format!("truncated {what} [{cmd:?}]"),
                cmd,
                err(13, NO_FOOTER, H_INCOMPLETE),
                cut(n),
            ));
        }
    }
    for (what, n) in [
        ("inside the footer (one dash)", footer_start + 1),
        ("inside the footer (\"-----END\")", footer_start + 8),
        (
            "inside the footer (all but its last byte)",
            footer_start + element::FOOTER.len() - 1,
        ),
    ] {
        for cmd in [Import, Decrypt] {
            v.push(case(
                format!("truncated {what} [{cmd:?}]"),
                cmd,
                err(13, NOT_FOOTER, H_DAMAGED),
                cut(n),
            ));
        }
    }
    // The decoded body cut short but the armor intact: only the MAC can tell.
    for n in [69usize, 100, 500, 1000, body.len() - 32, body.len() - 1] {
        v.push(case(
            format!(
                "decoded body cut to {n} of {} bytes, footer kept",
                body.len()
            ),
            Import,
            err(12, WRONG, H_PASS),
            bytes(armor(&body[..n])),
        ));
    }
    // A whole line removed from the middle of the armor (whole base64 groups go missing).
    {
        let mut lines: Vec<&str> = text.split('\n').collect();
        lines.remove(5);
        v.push(case(
            "body line 5 removed",
            Import,
            err(12, WRONG, H_PASS),
            bytes(lines.join("\n")),
        ));
    }
    // One base64 character removed: a group ends one short.
    {
        let mut t = file.clone();
        t.remove(body_start + 200);
        v.push(case(
            "one base64 character removed from line 2",
            Import,
            err(12, WRONG, H_PASS),
            bytes(t),
        ));
    }
    // A body whose character count leaves a lone character in the last group.
    v.push(case(
        "base64 body ending in a lone character",
        Decrypt,
        err(
            13,
            "truncated (it ends in the middle of a group)",
            H_INCOMPLETE,
        ),
        bytes(
            format!(
                "{}\n{}A\n{}\n",
                element::HEADER,
                STANDARD_NO_PAD.encode(&body[..body.len() - body.len() % 3]),
                element::FOOTER
            )
            .into_bytes(),
        ),
    ));

    // 2. Bit flips in every field of the binary body (version 1, 1000 rounds).
    for (what, at, bit, code, msg, hint) in [
        ("version byte, bit 0", 0usize, 0u8, 13, VERSION, H_DAMAGED),
        ("version byte, bit 1", 0, 1, 13, VERSION, H_DAMAGED),
        ("version byte, bit 7", 0, 7, 13, VERSION, H_DAMAGED),
        ("salt, first byte", 1, 0, 12, WRONG, H_PASS),
        ("salt, last byte", 16, 7, 12, WRONG, H_PASS),
        ("IV, first byte", 17, 0, 12, WRONG, H_PASS),
        ("IV, bit 63", 25, 7, 12, WRONG, H_PASS),
        ("IV, last byte", 32, 3, 12, WRONG, H_PASS),
        ("rounds, lowest bit (1001 rounds)", 36, 0, 12, WRONG, H_PASS),
        (
            "rounds, bit 24 (16.8M rounds)",
            33,
            0,
            13,
            TOO_MANY_ROUNDS,
            H_MAX_ROUNDS,
        ),
        (
            "rounds, bit 31 (2.1G rounds)",
            33,
            7,
            13,
            TOO_MANY_ROUNDS,
            H_MAX_ROUNDS,
        ),
        ("ciphertext, first byte", 37, 0, 12, WRONG, H_PASS),
        (
            "ciphertext, middle byte",
            37 + (body.len() - 69) / 2,
            4,
            12,
            WRONG,
            H_PASS,
        ),
        (
            "ciphertext, last byte",
            body.len() - 33,
            6,
            12,
            WRONG,
            H_PASS,
        ),
        ("MAC, first byte", body.len() - 32, 0, 12, WRONG, H_PASS),
        ("MAC, middle byte", body.len() - 16, 5, 12, WRONG, H_PASS),
        ("MAC, last byte", body.len() - 1, 7, 12, WRONG, H_PASS),
    ] {
        for cmd in [Import, Decrypt] {
            v.push(case(
                format!("bit flip: {what} [{cmd:?}]"),
                cmd,
                err(code, msg, hint),
                bytes(flipped(&body, at, bit)),
            ));
        }
    }

    // 3. Round counts and versions, refused before any key derivation.
    for (rounds, msg, hint) in [
        (0u32, ZERO_ROUNDS, H_DAMAGED),
        (u32::MAX, TOO_MANY_ROUNDS, H_MAX_ROUNDS),
        (10_000_001, TOO_MANY_ROUNDS, H_MAX_ROUNDS),
        (0x8000_0000, TOO_MANY_ROUNDS, H_MAX_ROUNDS),
    ] {
        for cmd in [Import, Decrypt, Inspect] {
            v.push(case(
                format!("rounds {rounds} [{cmd:?}]"),
                cmd,
                err(13, msg, hint),
                bytes(with_header(1, rounds)),
            ));
        }
    }
    let mut c = case(
        "1000 rounds with --max-rounds 999",
        Import,
        err(13, "more than the limit of 999", H_MAX_ROUNDS),
        bytes(with_header(1, 1000)),
    );
    c.extra = vec!["--max-rounds".into(), "999".into()];
    v.push(c);
    for version in [0u8, 2, 3, 0x7f, 0x80, 255] {
        for cmd in [Import, Inspect] {
            v.push(case(
                format!("version {version} [{cmd:?}]"),
                cmd,
                err(13, format!("{VERSION} {version}"), H_DAMAGED),
                bytes(with_header(version, 1000)),
            ));
        }
    }

    // 4. Decoded bodies of every length from 0 to 68 bytes (a valid body's prefix).
    let short_src = body_of(b"[]");
    for n in 0..=68usize {
        let t = if n == 0 {
            format!("{}\n{}\n", element::HEADER, element::FOOTER).into_bytes()
        } else {
            armor(&short_src[..n])
        };
        v.push(case(
            format!("decoded body of {n} bytes"),
            Import,
            err(13, format!("{TOO_SHORT}: {n} bytes"), H_DAMAGED),
            bytes(t),
        ));
    }

    // 5. Characters that are not base64, at line 4 (body line 3), column 11.
    for (what, with, msg) in [
        ("'!'", &b"!"[..], "the character '!'"),
        ("'*'", b"*", "the character '*'"),
        ("'.'", b".", "the character '.'"),
        ("'_' (URL-safe alphabet)", b"_", "the character '_'"),
        (
            "'-' (URL-safe alphabet) inside a line",
            b"-",
            "the character '-'",
        ),
        ("'~'", b"~", "the character '~'"),
        ("'#'", b"#", "the character '#'"),
        ("'\"'", b"\"", "the character '\"'"),
        ("'\\\\'", b"\\", "the character '\\'"),
        ("':'", b":", "the character ':'"),
        ("'é' (UTF-8)", "é".as_bytes(), "the byte 0xc3"),
        ("byte 0x80", b"\x80", "the byte 0x80"),
        ("byte 0xff", b"\xff", "the byte 0xff"),
        ("DEL", b"\x7f", "the byte 0x7f"),
        ("ESC (a terminal escape)", b"\x1b[2J", "the byte 0x1b"),
        ("a NUL byte", b"\0", "a NUL byte"),
        ("'=' inside the data", b"=", "data after '=' padding"),
    ] {
        v.push(case(
            format!("invalid base64: {what}"),
            Import,
            err(13, format!("{BAD_B64} 4: {msg}"), H_DAMAGED),
            bytes(replace_in_body(&file, 2, 10, with)),
        ));
    }
    v.push(case(
        "invalid base64: three '=' of padding",
        Decrypt,
        err(13, "too much '=' padding", H_DAMAGED),
        bytes(text.replace("=\n-----END", "===\n-----END").into_bytes()),
    ));

    // 6. NUL bytes, UTF-16 and UTF-32.
    {
        let mut t = vec![0u8];
        t.extend_from_slice(&file);
        v.push(case(
            "a NUL byte before the header",
            Import,
            err(13, UTF16, H_HEADER),
            bytes(t),
        ));
        let mut t = file.clone();
        t[12] = 0;
        v.push(case(
            "a NUL byte inside the header line",
            Import,
            err(13, NO_HEADER, H_HEADER),
            bytes(t),
        ));
        v.push(case(
            "NUL bytes only (1 KiB)",
            Inspect,
            err(13, UTF16, H_HEADER),
            bytes(vec![0u8; 1024]),
        ));
    }
    for (what, t) in [
        ("UTF-16LE with BOM", utf16le(&file, true)),
        ("UTF-16BE with BOM", utf16be(&file, true)),
        ("UTF-16LE without BOM", utf16le(&file, false)),
        ("UTF-16BE without BOM", utf16be(&file, false)),
        ("UTF-32LE with BOM", {
            let mut o = vec![0xFF, 0xFE, 0, 0];
            for &b in &file {
                o.extend_from_slice(&[b, 0, 0, 0]);
            }
            o
        }),
    ] {
        for cmd in [Import, Inspect] {
            v.push(case(
                format!("{what} [{cmd:?}]"),
                cmd,
                err(13, UTF16, H_HEADER),
                bytes(t.clone()),
            ));
        }
    }

    // 7. 10 MB single lines.
    let ten_mb = 10 * 1024 * 1024;
    {
        let mut c = case(
            "10 MB single body line, plausible header, wrong MAC",
            Import,
            err(12, WRONG, H_PASS),
            Box::new(move || {
                let mut b = body_of(b"[]");
                b.truncate(37);
                let mut x = 0x1234_5678u32;
                b.extend((0..ten_mb / 4 * 3).map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                }));
                b.extend_from_slice(&[0u8; 32]);
                element::armor(&b, 0).into_bytes()
            }),
        );
        c.big = true;
        v.push(c);
        let mut c = case(
            "10 MB single body line, no footer",
            Decrypt,
            err(13, NO_FOOTER, H_INCOMPLETE),
            Box::new(move || {
                // A plausible header (version 1, 768 rounds), then 10 MB of base64.
                let mut t = format!("{}\n", element::HEADER).into_bytes();
                t.extend_from_slice(STANDARD.encode(&body_of(b"[]")[..36]).as_bytes());
                t.extend(std::iter::repeat_n(b'A', ten_mb));
                t
            }),
        );
        c.big = true;
        v.push(c);
        let mut c = case(
            "10 MB of text without a newline, no header",
            Import,
            err(13, NO_HEADER, H_HEADER),
            Box::new(move || vec![b'x'; ten_mb]),
        );
        c.big = true;
        v.push(c);
        let mut c = case(
            "10 MB line starting with '-' inside the body",
            Inspect,
            err(13, NOT_FOOTER, H_DAMAGED),
            Box::new(move || {
                let mut t = format!("{}\nAAAA\n", element::HEADER).into_bytes();
                t.extend(std::iter::repeat_n(b'-', ten_mb));
                t.extend_from_slice(format!("\n{}\n", element::FOOTER).as_bytes());
                t
            }),
        );
        c.big = true;
        v.push(c);
        let mut c = case(
            "10 MB single body line of base64 zeros (version 0)",
            Import,
            err(13, format!("{VERSION} 0"), H_DAMAGED),
            Box::new(move || {
                let mut t = format!("{}\n", element::HEADER).into_bytes();
                t.extend(std::iter::repeat_n(b'A', ten_mb));
                t.extend_from_slice(format!("\n{}\n", element::FOOTER).as_bytes());
                t
            }),
        );
        c.big = true;
        v.push(c);
    }

    // 8. Duplicated headers and concatenated exports.
    {
        let h = element::HEADER;
        v.push(case(
            "header line twice",
            Import,
            err(13, format!("{SECOND_HEADER} at line 2"), H_SPLIT),
            bytes(text.replacen(&format!("{h}\n"), &format!("{h}\n{h}\n"), 1)),
        ));
        let inner = text.replacen(&format!("{}\n", element::FOOTER), "", 1);
        v.push(case(
            "two bodies under two headers, one footer",
            Import,
            err(13, SECOND_HEADER, H_SPLIT),
            bytes(format!("{inner}{text}")),
        ));
        v.push(case(
            "two exports concatenated (the same file twice)",
            Import,
            err(13, SECOND_HEADER, H_SPLIT),
            bytes(format!("{text}{text}")),
        ));
        let one = std::fs::read_to_string(fixture("export/element-one.txt")).unwrap();
        for cmd in [Import, Decrypt, Inspect] {
            v.push(case(
                format!("two different exports concatenated [{cmd:?}]"),
                cmd,
                err(13, SECOND_HEADER, H_SPLIT),
                bytes(format!("{text}{one}")),
            ));
        }
        v.push(case(
            "two exports with text between them",
            Import,
            err(13, SECOND_HEADER, H_SPLIT),
            bytes(format!("{text}\n\nand here is the other one:\n\n{one}")),
        ));
    }

    // 9. MAC-valid files whose payload is not a key export.
    for (what, p) in [
        ("plain text", &b"this is not JSON at all"[..]),
        ("binary", b"\x00\x01\x02\xff\xfe"),
        ("empty", b""),
        ("whitespace only", b" \n\t "),
        ("'[' alone", b"["),
        ("']' alone", b"]"),
        ("'[,]'", b"[,]"),
        ("a trailing comma", b"[1,]"),
        ("two values without a comma", b"[1 2]"),
        ("an unterminated object", b"[{]"),
        ("an unterminated string", b"[\"abc]"),
        ("data after the array", b"[] x"),
        ("two arrays", b"[][]"),
        ("an element that is not JSON", b"[garbage]"),
        ("an element with invalid UTF-8", b"[\"\xff\xfe\"]"),
        ("an element with a lone surrogate", br#"[{"a":"\ud800"}]"#),
        ("UTF-16 JSON", b"[\x00]\x00"),
    ] {
        v.push(case(
            format!("payload: {what}"),
            Import,
            err(13, NOT_EXPORT, H_RAW),
            bytes(sealed(p)),
        ));
    }
    for (what, p) in [
        ("an object", &br#"{"room_id": "!a:b"}"#[..]),
        ("an empty object", b"{}"),
        ("a number", b"42"),
        ("a string", b"\"keys\""),
        ("null", b"null"),
        ("true", b"true"),
    ] {
        for cmd in [Import, Decrypt] {
            v.push(case(
                format!("payload is {what}, not an array [{cmd:?}]"),
                cmd,
                err(13, NOT_ARRAY, H_RAW),
                bytes(sealed(p)),
            ));
        }
    }
    for (what, open, close) in [
        ("arrays", "[", "]"),
        ("objects inside the array", "{\"a\":", "}"),
    ] {
        for cmd in [Import, Decrypt] {
            let mut c = case(
                format!("payload of {what} nested 100,000 deep [{cmd:?}]"),
                cmd,
                err(13, NOT_EXPORT, H_RAW),
                Box::new(move || {
                    let mut p = b"[".to_vec();
                    p.extend(nested(open, close, 100_000));
                    p.extend_from_slice(b"]");
                    sealed(&p)
                }),
            );
            c.big = true;
            v.push(c);
        }
    }

    // 10. MAC-valid arrays whose entries are all invalid: exit 3, each entry named, nothing
    // stored.
    v.push(case(
        "entries that are not objects",
        Import,
        partial("not a JSON object"),
        bytes(sealed(br#"[1, "two", null, [], true]"#)),
    ));
    for f in [
        "algorithm",
        "room_id",
        "sender_key",
        "session_id",
        "session_key",
    ] {
        v.push(case(
            format!("entry without {f}"),
            Import,
            partial(format!("missing field \"{f}\"")),
            bytes(sealed_entries(&[entry_with(f, None)])),
        ));
        for (tname, tv) in [
            ("a number", json!(1)),
            ("null", Value::Null),
            ("an array", json!([])),
        ] {
            v.push(case(
                format!("entry with {f} = {tname}"),
                Import,
                partial(format!("field \"{f}\" is not a string")),
                bytes(sealed_entries(&[entry_with(f, Some(tv))])),
            ));
        }
    }
    for (tname, tv) in [
        ("a string", json!("x")),
        ("a number", json!(1)),
        ("an array", json!([])),
    ] {
        v.push(case(
            format!("entry with sender_claimed_keys = {tname}"),
            Import,
            partial("field \"sender_claimed_keys\" is not an object"),
            bytes(sealed_entries(&[entry_with(
                "sender_claimed_keys",
                Some(tv),
            )])),
        ));
    }
    for (tname, tv) in [
        ("a string", json!("x")),
        ("an array of numbers", json!([1, 2])),
        ("an object", json!({})),
    ] {
        v.push(case(
            format!("entry with forwarding_curve25519_key_chain = {tname}"),
            Import,
            partial("field \"forwarding_curve25519_key_chain\" is not an array of strings"),
            bytes(sealed_entries(&[entry_with(
                "forwarding_curve25519_key_chain",
                Some(tv),
            )])),
        ));
    }
    // Bad session keys.
    let k = v1_key_bytes();
    for (what, key, reason) in [
        ("empty", vec![], "session_key is 0 bytes long"),
        ("1 byte", vec![1u8], "session_key is 1 bytes long"),
        (
            "164 bytes",
            k[..164].to_vec(),
            "session_key is 164 bytes long",
        ),
        (
            "166 bytes",
            [&k[..], &[0u8]].concat(),
            "session_key is 166 bytes long",
        ),
        ("228 bytes", vec![2u8; 228], "session_key is 228 bytes long"),
        (
            "1000 bytes",
            vec![1u8; 1000],
            "session_key is 1000 bytes long",
        ),
        (
            "version byte 0",
            [&[0u8][..], &k[1..]].concat(),
            "version byte 0",
        ),
        (
            "version byte 2 at 165 bytes",
            [&[2u8][..], &k[1..]].concat(),
            "version byte 2",
        ),
        (
            "version byte 255",
            [&[255u8][..], &k[1..]].concat(),
            "version byte 255",
        ),
        (
            "version byte 1 at 229 bytes",
            [&[1u8][..], &[0u8; 228][..]].concat(),
            "version byte 1",
        ),
        (
            "an invalid Ed25519 point",
            invalid_point_key(),
            "not a valid Megolm key",
        ),
    ] {
        v.push(case(
            format!("session_key: {what}"),
            Import,
            partial(reason),
            bytes(sealed_entries(&[entry_with_key_bytes(&key)])),
        ));
    }
    for (what, key) in [
        ("not base64", "!!!not base64!!!".to_string()),
        (
            "URL-safe base64",
            STANDARD_NO_PAD
                .encode(&k)
                .replace('+', "-")
                .replace('/', "_"),
        ),
        ("with spaces", {
            let s = STANDARD_NO_PAD.encode(&k);
            format!("{} {}", &s[..20], &s[20..])
        }),
    ] {
        let mut e = fresh_entry();
        e["session_key"] = json!(key);
        v.push(case(
            format!("session_key: {what}"),
            Import,
            partial("session_key is not base64"),
            bytes(sealed_entries(&[e])),
        ));
    }
    {
        // A sharing-format (v2) key whose signature does not verify.
        let g = megolm::new_group();
        let mut raw = STANDARD_NO_PAD
            .decode(g.session_key().to_base64().trim_end_matches('='))
            .unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        let mut e = fresh_entry();
        e["session_key"] = json!(STANDARD_NO_PAD.encode(&raw));
        e["session_id"] = json!(g.session_id());
        v.push(case(
            "session_key: sharing format with a bad signature",
            Import,
            partial("not a valid Megolm key"),
            bytes(sealed_entries(&[e])),
        ));
    }
    // session_id mismatches.
    let other_id = megolm::new_group().session_id();
    for (what, id) in [
        ("another session's id", other_id.clone()),
        ("\"AAAA\"", "AAAA".to_string()),
        ("empty", String::new()),
        ("not base64", "not base64 at all!".to_string()),
        ("one character changed", {
            let e = fresh_entry();
            let id = e["session_id"].as_str().unwrap().to_string();
            let c = if id.starts_with('A') { "B" } else { "A" };
            format!("{c}{}", &id[1..])
        }),
    ] {
        let mut e = fresh_entry();
        if what == "one character changed" {
            let id = e["session_id"].as_str().unwrap().to_string();
            let c = if id.starts_with('A') { "B" } else { "A" };
            e["session_id"] = json!(format!("{c}{}", &id[1..]));
        } else {
            e["session_id"] = json!(id);
        }
        v.push(case(
            format!("session_id mismatch: {what}"),
            Import,
            partial("does not match the id of its session_key"),
            bytes(sealed_entries(&[e])),
        ));
    }
    // Unknown algorithms.
    for alg in [
        "m.megolm.v2.aes-sha2",
        "",
        "M.MEGOLM.V1.AES-SHA2",
        "m.olm.v1.curve25519-aes-sha2",
        "m.megolm.v1.aes-sha2 ",
        "\u{1b}[31mred\u{1b}[0m",
    ] {
        v.push(case(
            format!("unknown algorithm {alg:?}"),
            Import,
            partial("unsupported algorithm"),
            bytes(sealed_entries(&[entry_with("algorithm", Some(json!(alg)))])),
        ));
    }
    // Room ids and sender keys.
    for room in ["", "room", "!", "! a:b", "!a\nb:c"] {
        v.push(case(
            format!("room_id {room:?}"),
            Import,
            partial("is not a Matrix room id"),
            bytes(sealed_entries(&[entry_with("room_id", Some(json!(room)))])),
        ));
    }
    v.push(case(
        "room_id of 300 characters",
        Import,
        partial("is not a Matrix room id"),
        bytes(sealed_entries(&[entry_with(
            "room_id",
            Some(json!(format!("!{}", "a".repeat(299)))),
        )])),
    ));
    for (what, sk) in [
        ("empty", String::new()),
        ("short", "short".into()),
        ("31 bytes", STANDARD_NO_PAD.encode([1u8; 31])),
        ("33 bytes", STANDARD_NO_PAD.encode([1u8; 33])),
        ("not base64", "not base64!".into()),
    ] {
        v.push(case(
            format!("sender_key {what}"),
            Import,
            partial("sender_key is not an unpadded base64 Curve25519 key"),
            bytes(sealed_entries(&[entry_with("sender_key", Some(json!(sk)))])),
        ));
    }
    // Duplicates whose ratchets do not connect to the copy held: conflicts, held copy kept.
    {
        let held = held_sessions();
        v.push(case(
            "a forged copy of a held session (unconnected ratchet)",
            Import,
            partial("conflicts with the copy already held"),
            bytes(sealed_entries(&[forged_copy(&held[0])])),
        ));
        v.push(case(
            "forged copies of every held session",
            Import,
            partial("conflicts with the copy already held"),
            bytes(sealed_entries(
                &held.iter().map(forged_copy).collect::<Vec<_>>(),
            )),
        ));
        v.push(case(
            "the same forged copy twice",
            Import,
            partial("conflicts with the copy already held"),
            bytes(sealed_entries(&[
                forged_copy(&held[1]),
                forged_copy(&held[1]),
            ])),
        ));
    }
    // Oversized entries and many rejections.
    {
        let mut e = fresh_entry();
        e["padding"] = json!("x".repeat(1_100_000));
        v.push(case(
            "an entry of 1.1 MB",
            Import,
            partial("far larger than any session"),
            bytes(sealed_entries(&[e])),
        ));
        let many: Vec<Value> = (0..5000).map(|i| json!(i)).collect();
        v.push(case(
            "5000 entries that are numbers",
            Import,
            partial("more rejected entries"),
            bytes(sealed_entries(&many)),
        ));
    }

    // 11. Recovery keys (offline check).
    let good = good_recovery_key();
    assert!(mxkeys::recovery_key::decode(&good).is_ok());
    for pos in [47usize, 40, 25] {
        v.push(case(
            format!("recovery key with a typo at character {}", pos + 1),
            RecoveryCheck,
            err(13, "check digit does not match", H_RK),
            bytes(format!("{}\n", parity_typo(pos))),
        ));
    }
    v.push(case(
        "recovery key with a wrong parity byte",
        RecoveryCheck,
        err(13, "check digit does not match", H_RK),
        bytes(raw_recovery_key([0x8B, 0x01], &[0x42; 32], false)),
    ));
    for prefix in [[0x8B, 0x02], [0x8C, 0x01], [0x8A, 0xFF]] {
        v.push(case(
            format!("recovery key with prefix {prefix:02x?}"),
            RecoveryCheck,
            err(13, "this is not a Matrix recovery key", H_RK),
            bytes(wrong_prefix_key(prefix)),
        ));
    }
    for (what, t, msg) in [
        ("an empty file", String::new(), "the recovery key is empty"),
        (
            "whitespace only",
            " \n\t \n".into(),
            "the recovery key is empty",
        ),
        ("1 character", "E".into(), "has 1 characters instead of 48"),
        (
            "47 characters",
            good[..47].to_string(),
            "has 47 characters instead of 48",
        ),
        (
            "49 characters",
            format!("{good}E"),
            "has 49 characters instead of 48",
        ),
        (
            "the key twice",
            format!("{good} {good}"),
            "has 96 characters instead of 48",
        ),
        (
            "1 MB of '1'",
            "1".repeat(1 << 20),
            "has 1048576 characters instead of 48",
        ),
    ] {
        v.push(case(
            format!("recovery key: {what}"),
            RecoveryCheck,
            err(13, msg, H_RK),
            bytes(t),
        ));
    }
    for (what, c, shown) in [
        ("'0'", "0", "'0'"),
        ("'O'", "O", "'O'"),
        ("'I'", "I", "'I'"),
        ("'l'", "l", "'l'"),
        ("'+'", "+", "'+'"),
        ("'/'", "/", "'/'"),
        ("'='", "=", "'='"),
        ("'-'", "-", "'-'"),
        ("'é'", "é", "'é'"),
        ("an emoji", "🔑", "'🔑'"),
        ("ESC", "\u{1b}", "'\\u{1b}'"),
        ("NUL", "\0", "'\\0'"),
    ] {
        v.push(case(
            format!("recovery key with {what} at character 11"),
            RecoveryCheck,
            err(
                13,
                format!("invalid character {shown} at position 11"),
                H_RK,
            ),
            bytes(with_char(&good, 10, c)),
        ));
    }
    v.push(case(
        "a Security Phrase given as a recovery key",
        RecoveryCheck,
        err(13, "invalid character", H_RK),
        bytes("correct horse battery staple\n"),
    ));
    for (what, t) in [
        ("UTF-16LE with BOM", utf16le(good.as_bytes(), true)),
        ("UTF-16BE with BOM", utf16be(good.as_bytes(), true)),
        ("UTF-16LE without BOM", utf16le(good.as_bytes(), false)),
        ("Latin-1 bytes", b"Es\xe9\xe9".to_vec()),
    ] {
        v.push(case(
            format!("recovery key file in {what}"),
            RecoveryCheck,
            err(13, "invalid character", H_RK),
            bytes(t),
        ));
    }

    // 12. Saved backup responses (`backup download --from-response`).
    let good_entry = backup_entry(&fx.key);
    let good_saved = saved(std::slice::from_ref(&good_entry));
    v.push(case(
        "saved response: every key encrypted to another backup key",
        DownloadSaved,
        err(12, WRONG_BACKUP_KEY, H_BACKUP_KEY),
        bytes(saved(&[backup_entry(&fx.other), backup_entry(&fx.other)])),
    ));
    for n in [0usize, 1, 10, good_saved.len() / 2, good_saved.len() - 1] {
        v.push(case(
            format!(
                "saved response truncated to {n} of {} bytes",
                good_saved.len()
            ),
            DownloadSaved,
            err(13, SAVED, H_SAVED),
            bytes(good_saved[..n].to_vec()),
        ));
    }
    for (what, body) in [
        ("not JSON", b"hello".to_vec()),
        ("an array", b"[]".to_vec()),
        ("a string", b"\"rooms\"".to_vec()),
        ("an object without rooms", b"{}".to_vec()),
        ("rooms as an array", br#"{"rooms": []}"#.to_vec()),
        ("a room as an array", br#"{"rooms": {"!r:x": []}}"#.to_vec()),
        (
            "sessions as a string",
            br#"{"rooms": {"!r:x": {"sessions": "x"}}}"#.to_vec(),
        ),
        (
            "a session as a number",
            br#"{"rooms": {"!r:x": {"sessions": {"s": 5}}}}"#.to_vec(),
        ),
        ("UTF-16 JSON", utf16le(&good_saved, true)),
    ] {
        v.push(case(
            format!("saved response: {what}"),
            DownloadSaved,
            err(13, SAVED, H_SAVED),
            bytes(body),
        ));
    }
    for (what, field, value) in [
        (
            "first_message_index as a string",
            "first_message_index",
            Some(json!("0")),
        ),
        (
            "first_message_index negative",
            "first_message_index",
            Some(json!(-1)),
        ),
        (
            "first_message_index above 2^32",
            "first_message_index",
            Some(json!(1u64 << 33)),
        ),
        (
            "forwarded_count as null",
            "forwarded_count",
            Some(Value::Null),
        ),
        ("is_verified as a string", "is_verified", Some(json!("yes"))),
        (
            "session_data as a string",
            "session_data",
            Some(json!("data")),
        ),
        ("no session_data", "session_data", None),
        ("no first_message_index", "first_message_index", None),
    ] {
        let mut e = good_entry.clone();
        match value {
            Some(x) => e.2[field] = x,
            None => {
                e.2.as_object_mut().unwrap().remove(field);
            }
        }
        v.push(case(
            format!("saved response: {what}"),
            DownloadSaved,
            err(13, SAVED, H_SAVED),
            bytes(saved(&[e])),
        ));
    }
    for f in ["ephemeral", "ciphertext", "mac"] {
        let mut e = good_entry.clone();
        e.2["session_data"].as_object_mut().unwrap().remove(f);
        v.push(case(
            format!("saved response: session_data without {f}"),
            DownloadSaved,
            err(13, SAVED, H_SAVED),
            bytes(saved(&[e])),
        ));
        let mut e = good_entry.clone();
        e.2["session_data"][f] = json!(42);
        v.push(case(
            format!("saved response: session_data.{f} as a number"),
            DownloadSaved,
            err(13, SAVED, H_SAVED),
            bytes(saved(&[e])),
        ));
    }
    {
        let mut e = good_entry.clone();
        e.2["session_data"]["ciphertext"] = json!("A".repeat(300 * 1024));
        v.push(case(
            "saved response: one entry of 300 KB",
            DownloadSaved,
            err(13, "larger than", H_SAVED),
            bytes(saved(&[e])),
        ));
        // (Unknown top-level fields are skipped without recursion, whatever their depth; an
        // entry's unknown fields are kept, so they are parsed, under serde_json's depth limit.)
        let mut c = case(
            "saved response: an entry's unknown field nested 100,000 deep",
            DownloadSaved,
            err(13, SAVED, H_SAVED),
            Box::new(|| {
                let mut b = br#"{"rooms": {"!r:x": {"sessions": {"s": {"x": "#.to_vec();
                b.extend(nested("[", "]", 100_000));
                b.extend_from_slice(br#", "first_message_index": 0}}}}}"#);
                b
            }),
        );
        c.big = true;
        v.push(c);
    }
    // Per entry: one good key and one bad one -> exit 3, the good one written.
    let one_bad: Vec<(&str, String, Build)> = vec![
        (
            "encrypted to another key",
            WRONG_BACKUP_KEY.into(),
            Box::new({
                let fx = BackupFx::new();
                move || {
                    let good = backup_entry(&fx.key);
                    let mut b = backup_entry(&fx.other);
                    b.0 = "!bad:example.org".into();
                    saved(&[good, b])
                }
            }),
        ),
        (
            "garbage ciphertext behind a valid MAC",
            "bad padding".into(),
            with_bad(|d, _| {
                d["session_data"]["ciphertext"] = json!(STANDARD_NO_PAD.encode([0x5au8; 64]));
            }),
        ),
        (
            "a ciphertext of 15 bytes",
            "not a positive multiple of 16".into(),
            with_bad(|d, _| {
                d["session_data"]["ciphertext"] = json!(STANDARD_NO_PAD.encode([1u8; 15]));
            }),
        ),
        (
            "an empty ciphertext",
            "not a positive multiple of 16".into(),
            with_bad(|d, _| {
                d["session_data"]["ciphertext"] = json!("");
            }),
        ),
        (
            "a ciphertext that is not base64",
            "ciphertext is not base64".into(),
            with_bad(|d, _| {
                d["session_data"]["ciphertext"] = json!("***");
            }),
        ),
        (
            "an ephemeral key of 31 bytes",
            "ephemeral is 31 bytes long".into(),
            with_bad(|d, _| {
                d["session_data"]["ephemeral"] = json!(STANDARD_NO_PAD.encode([3u8; 31]));
            }),
        ),
        (
            "an all-zero ephemeral key",
            "weak key".into(),
            with_bad(|d, _| {
                d["session_data"]["ephemeral"] = json!(STANDARD_NO_PAD.encode([0u8; 32]));
            }),
        ),
        (
            "a MAC of 4 bytes",
            "mac is 4 bytes long".into(),
            with_bad(|d, _| {
                d["session_data"]["mac"] = json!(STANDARD_NO_PAD.encode([3u8; 4]));
            }),
        ),
        (
            "a MAC with one bit flipped",
            WRONG_BACKUP_KEY.into(),
            with_bad(|d, _| {
                let m = d["session_data"]["mac"].as_str().unwrap().to_string();
                let mut b = STANDARD_NO_PAD.decode(m).unwrap();
                b[0] ^= 1;
                d["session_data"]["mac"] = json!(STANDARD_NO_PAD.encode(b));
            }),
        ),
        (
            "a MAC that is not base64",
            "mac is not base64".into(),
            with_bad(|d, _| {
                d["session_data"]["mac"] = json!("!!");
            }),
        ),
        (
            "session data that decrypts to text",
            "not a JSON object".into(),
            with_bad(|d, k| *d = backup_data_of(k, b"not json")),
        ),
        (
            "session data that decrypts to an array",
            "not a JSON object".into(),
            with_bad(|d, k| *d = backup_data_of(k, b"[1,2,3]")),
        ),
        (
            "session data naming another session",
            "not the one it is stored under".into(),
            with_bad(|d, k| {
                let mut e = fresh_entry();
                e["session_id"] = json!("someone-else");
                *d = backup_data_of(k, &serde_json::to_vec(&e).unwrap());
            }),
        ),
        (
            "session data with an invalid session key",
            "session_key".into(),
            with_bad(|d, k| {
                let mut e = fresh_entry();
                e.as_object_mut().unwrap().remove("room_id");
                e.as_object_mut().unwrap().remove("session_id");
                e["session_key"] = json!("AQAA");
                *d = backup_data_of(k, &serde_json::to_vec(&e).unwrap());
            }),
        ),
        (
            "session data with an unknown algorithm",
            "unsupported algorithm".into(),
            with_bad(|d, k| {
                let mut e = fresh_entry();
                e.as_object_mut().unwrap().remove("room_id");
                e.as_object_mut().unwrap().remove("session_id");
                e["algorithm"] = json!("m.megolm.v2");
                *d = backup_data_of(k, &serde_json::to_vec(&e).unwrap());
            }),
        ),
    ];
    for (what, reason, build) in one_bad {
        v.push(case(
            format!("saved response: one good key and one {what}"),
            DownloadSaved,
            Expect::Partial { reason, keep: 1 },
            build,
        ));
    }
    v
}

// ---------------------------------------------------------------------------------------------
// The runner

/// The corpus's environment: the pre-loaded store, the passphrase and recovery-key files.
struct Ctx {
    env: Env,
    pass: PathBuf,
    rk: PathBuf,
}

impl Ctx {
    fn new(fx: &BackupFx) -> Ctx {
        let env = Env::new();
        std::fs::create_dir(env.path("in")).unwrap();
        Ctx {
            pass: env.pass_file(),
            rk: env.write_secret("rk.txt", format!("{}\n", fx.recovery_key_text())),
            env,
        }
    }

    /// Arguments for `cmd` on `input`, writing into `out`.
    fn args(&self, cmd: Cmd, input: &Path, out: &Path, extra: &[String]) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        match cmd {
            Cmd::Import => {
                a.extend(self.env.store_args());
                a.extend(["import".into(), input.into(), "--passphrase-file".into()]);
                a.push(self.pass.clone().into());
            }
            Cmd::Decrypt => {
                a.extend(["decrypt".into(), input.into(), "-o".into()]);
                a.push(out.join("plain.json").into());
                a.extend(["--passphrase-file".into(), self.pass.clone().into()]);
            }
            Cmd::Inspect => a.extend(["inspect".into(), input.into()]),
            Cmd::RecoveryCheck => {
                a.extend([
                    "recovery-key".into(),
                    "check".into(),
                    "--offline".into(),
                    "--recovery-key-file".into(),
                    input.into(),
                ]);
            }
            Cmd::DownloadSaved => {
                a.extend([
                    "backup".into(),
                    "download".into(),
                    "--from-response".into(),
                    input.into(),
                    "--recovery-key-file".into(),
                    self.rk.clone().into(),
                    "-o".into(),
                    out.join("keys.txt").into(),
                    "--passphrase-file".into(),
                    self.pass.clone().into(),
                    "--rounds".into(),
                    "1000".into(),
                ]);
            }
        }
        a.extend(extra.iter().map(OsString::from));
        a
    }
}

/// One bounded run in `cwd`.
fn bounded(ctx: &Ctx, cwd: &Path, args: &[OsString]) -> Run {
    common::run::bounded(&ctx.env, cwd, args, &LIMITS)
}

fn list_json(ctx: &Ctx) -> Value {
    let mut a = vec![OsString::from("--store"), ctx.env.store().clone().into()];
    a.extend(["--json".into(), "list".into()]);
    let r = bounded(ctx, &ctx.env.work(), &a);
    assert_eq!(r.code, 0, "list: {}", r.stderr);
    let mut v: Value = serde_json::from_str(&r.stdout).unwrap();
    // The store's path is the same every time; nothing else may change.
    v["store"]["path"] = Value::Null;
    v
}

/// Check one run against its case; returns the problems found.
fn check(c: &Case, r: &Run, out_dir: &Path) -> Vec<String> {
    let mut p = resource_problems(r, &LIMITS, CASE_RSS_KB);
    let (err_lines, hint_lines) = r.error_and_hint_lines();
    match &c.expect {
        Expect::Error {
            code,
            message,
            hint,
        } => {
            if r.code != *code {
                p.push(format!("exit {} (expected {code})", r.code));
            }
            if !r.stdout.is_empty() {
                p.push(format!("stdout not empty: {:?}", r.stdout));
            }
            if err_lines.len() != 1 || hint_lines.len() != 1 {
                p.push(format!(
                    "{} error lines and {} hint lines (expected one of each)",
                    err_lines.len(),
                    hint_lines.len()
                ));
            }
            if let Some(l) = err_lines.first() {
                match l.matches(message.as_str()).count() {
                    1 => {}
                    0 => p.push(format!("error line lacks {message:?}")),
                    n => p.push(format!("error line repeats {message:?} {n} times")),
                }
            }
            if let Some(l) = hint_lines.first()
                && !l.contains(hint)
            {
                p.push(format!("hint line lacks {hint:?}"));
            }
            let left = common::dir_names(out_dir);
            if !left.is_empty() {
                p.push(format!("left in the output directory: {left:?}"));
            }
        }
        Expect::Partial { reason, keep } => {
            if r.code != 3 {
                p.push(format!("exit {} (expected 3)", r.code));
            }
            if !err_lines.is_empty() {
                p.push("an error line on a partial result".into());
            }
            let named = r
                .stderr
                .lines()
                .any(|l| l.starts_with("mxkeys: warning:") && l.contains(reason.as_str()));
            if !named {
                p.push(format!("no per-entry warning naming {reason:?}"));
            }
            let left = common::dir_names(out_dir);
            match c.cmd {
                Cmd::DownloadSaved => {
                    if left != ["keys.txt"] {
                        p.push(format!("output directory holds {left:?}, not keys.txt"));
                    } else {
                        let f = out_dir.join("keys.txt");
                        let m = common::mode(&f);
                        if m != 0o600 {
                            p.push(format!("keys.txt has mode {m:o}"));
                        }
                        let o = element::decrypt_file(&f, PASS.as_bytes());
                        let n = serde_json::from_slice::<Vec<Value>>(&o.plaintext)
                            .unwrap()
                            .len();
                        if n != *keep {
                            p.push(format!("keys.txt holds {n} sessions, not {keep}"));
                        }
                    }
                }
                _ => {
                    if !left.is_empty() {
                        p.push(format!("left in the output directory: {left:?}"));
                    }
                }
            }
        }
    }
    p
}

#[test]
fn hostile_input_corpus() {
    let fx = BackupFx::new();
    let ctx = Ctx::new(&fx);
    // The store: sealed, cheap KDF, holding element-three's sessions.
    let mut a = ctx.env.store_args();
    a.extend(["init".into(), "--store-kdf-rounds".into(), "1000".into()]);
    let r = bounded(&ctx, &ctx.env.work(), &a);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut a = ctx.env.store_args();
    a.extend(["import".into(), fixture("export/element-three.txt").into()]);
    a.extend(["--passphrase-file".into(), ctx.pass.clone().into()]);
    let r = bounded(&ctx, &ctx.env.work(), &a);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rows_before = common::store::rows(&ctx.env.store());
    let list_before = list_json(&ctx);
    assert_eq!(list_before["sessions"], 3);
    let allowed_store_names = [
        "keys.sqlite3",
        "keys.sqlite3-shm",
        "keys.sqlite3-wal",
        "lock",
    ];

    // Control: the unmodified base file imports (every session already held).
    let base = ctx.env.path("in/base.txt");
    std::fs::write(&base, armor(&body_of(&three_plaintext()))).unwrap();
    let out = ctx.env.path("out-control");
    std::fs::create_dir(&out).unwrap();
    let r = bounded(&ctx, &out, &ctx.args(Cmd::Import, &base, &out, &[]));
    assert_eq!(r.code, 0, "control import failed: {}", r.stderr);
    assert_eq!(common::store::rows(&ctx.env.store()), rows_before);

    let cases = corpus(&fx);
    let mut failures = Vec::new();
    let mut inputs = std::collections::HashSet::new();
    let mut big_report = Vec::new();
    let (mut slowest, mut most_cpu, mut largest) = (Duration::ZERO, Duration::ZERO, 0u64);
    let mut per_cmd: std::collections::BTreeMap<String, usize> = Default::default();
    for (i, c) in cases.iter().enumerate() {
        let input = ctx.env.path(&format!("in/{i:03}.in"));
        let data = (c.build)();
        inputs.insert(<sha2::Sha256 as sha2::Digest>::digest(&data).to_vec());
        std::fs::write(&input, &data).unwrap();
        drop(data);
        let out = ctx.env.path(&format!("out-{i:03}"));
        std::fs::create_dir(&out).unwrap();
        let r = bounded(&ctx, &out, &ctx.args(c.cmd, &input, &out, &c.extra));
        let mut problems = check(c, &r, &out);
        if c.cmd == Cmd::Import {
            if common::store::rows(&ctx.env.store()) != rows_before {
                problems.push("the store changed".into());
            }
            if list_json(&ctx) != list_before {
                problems.push("`list --json` changed".into());
            }
            let extra: Vec<String> = common::dir_names(&ctx.env.store())
                .into_iter()
                .filter(|n| !allowed_store_names.contains(&n.as_str()))
                .collect();
            if !extra.is_empty() {
                problems.push(format!("unexpected files in the store: {extra:?}"));
            }
        }
        if !problems.is_empty() {
            failures.push(format!(
                "#{i} {} ({:?}): {}\n    stderr: {}",
                c.name,
                c.cmd,
                problems.join("; "),
                r.stderr.trim().replace('\n', "\n            ")
            ));
        }
        if c.big {
            big_report.push(format!(
                "{}: {:.2} s wall, {:.2} s CPU, max RSS {} KiB",
                c.name,
                r.elapsed.as_secs_f64(),
                r.usage.cpu.as_secs_f64(),
                r.usage.max_rss_kb
            ));
        }
        slowest = slowest.max(r.elapsed);
        most_cpu = most_cpu.max(r.usage.cpu);
        largest = largest.max(r.usage.max_rss_kb);
        *per_cmd.entry(format!("{:?}", c.cmd)).or_default() += 1;
        let _ = std::fs::remove_file(&input);
        let _ = std::fs::remove_dir_all(&out);
    }
    println!(
        "hostile corpus: {} cases ({} distinct inputs), by command {per_cmd:?}; slowest {:.2} s wall, {:.2} s CPU at the most, largest max RSS {} KiB",
        cases.len(),
        inputs.len(),
        slowest.as_secs_f64(),
        most_cpu.as_secs_f64(),
        largest
    );
    for b in &big_report {
        println!("  big: {b}");
    }
    assert!(cases.len() >= 150, "only {} cases", cases.len());
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert_eq!(common::store::rows(&ctx.env.store()), rows_before);
    assert_eq!(list_json(&ctx), list_before);
}

// ---------------------------------------------------------------------------------------------
// Library level: secret-storage items and backup session data with bad MACs.

fn b64(b: &[u8]) -> String {
    STANDARD.encode(b)
}

/// Flip the low bit of byte `at` of a base64 field.
fn flip(s: &str, at: usize) -> String {
    let mut b = b64d(s);
    let n = b.len();
    b[at % n] ^= 0x01;
    b64(&b)
}

#[test]
fn secret_storage_items_and_backup_data_with_bad_macs() {
    use mxkeys::secret_storage::{EncryptedSecret, SecretStorageError, SecretStorageKey};
    let key = SecretStorageKey::random().unwrap();
    let name = mxkeys::secret_storage::MEGOLM_BACKUP_SECRET;
    let good = key.encrypt(name, "c2VjcmV0IGJhY2t1cCBrZXk").unwrap();
    assert_eq!(
        &*key.decrypt(name, &good).unwrap(),
        "c2VjcmV0IGJhY2t1cCBrZXk"
    );
    type Tamper = Box<dyn Fn(&mut EncryptedSecret)>;
    let tampers: Vec<(&str, Tamper, &str)> = vec![
        (
            "MAC, first bit",
            Box::new(|e| e.mac = flip(&e.mac, 0)),
            "wrong secret storage key",
        ),
        (
            "MAC, last bit",
            Box::new(|e| e.mac = flip(&e.mac, 31)),
            "wrong secret storage key",
        ),
        (
            "MAC truncated to 16 bytes",
            Box::new(|e| e.mac = b64(&b64d(&e.mac)[..16])),
            "mac is 16 bytes long",
        ),
        (
            "MAC empty",
            Box::new(|e| e.mac = String::new()),
            "mac is 0 bytes long",
        ),
        (
            "MAC not base64",
            Box::new(|e| e.mac = "***".into()),
            "mac is not base64",
        ),
        // The spec's MAC covers the ciphertext only: a changed IV yields another plaintext
        // (here not even UTF-8), which the backup's public-key check then refuses.
        (
            "IV flipped",
            Box::new(|e| e.iv = flip(&e.iv, 3)),
            "not UTF-8",
        ),
        (
            "IV of 8 bytes",
            Box::new(|e| e.iv = b64(&[0u8; 8])),
            "iv is 8 bytes long",
        ),
        (
            "IV not base64",
            Box::new(|e| e.iv = "%%".into()),
            "iv is not base64",
        ),
        (
            "ciphertext flipped",
            Box::new(|e| e.ciphertext = flip(&e.ciphertext, 5)),
            "wrong secret storage key",
        ),
        (
            "ciphertext truncated",
            Box::new(|e| e.ciphertext = b64(&b64d(&e.ciphertext)[..4])),
            "wrong secret storage key",
        ),
        (
            "ciphertext empty",
            Box::new(|e| e.ciphertext = String::new()),
            "wrong secret storage key",
        ),
        (
            "ciphertext not base64",
            Box::new(|e| e.ciphertext = "!!".into()),
            "ciphertext is not base64",
        ),
        (
            "MAC of another item swapped in",
            Box::new(|e| {
                let k = SecretStorageKey::random().unwrap();
                e.mac = k
                    .encrypt(mxkeys::secret_storage::MEGOLM_BACKUP_SECRET, "x")
                    .unwrap()
                    .mac;
            }),
            "wrong secret storage key",
        ),
    ];
    let mut n = 0;
    for (what, tamper, msg) in &tampers {
        let mut e = good.clone();
        tamper(&mut e);
        let r = key.decrypt(name, &e);
        let m = match r {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{what}: a tampered secret decrypted"),
        };
        assert!(m.contains(msg), "{what}: {m}");
        n += 1;
    }
    // The right item under another secret name (the name is part of the key derivation), and
    // under another key.
    assert!(matches!(
        key.decrypt("m.cross_signing.master", &good),
        Err(SecretStorageError::WrongKey)
    ));
    assert!(matches!(
        SecretStorageKey::random().unwrap().decrypt(name, &good),
        Err(SecretStorageError::WrongKey)
    ));
    n += 2;
    // Key descriptions whose key check (iv/mac) is damaged: the key does not check.
    let desc = key.describe(None, None).unwrap();
    assert!(key.check(&desc).unwrap());
    // (A description without iv/mac cannot be checked and passes, as the spec says; the
    // secrets' own MACs then decide.)
    for (what, f) in [
        ("check MAC flipped", 0usize),
        ("check IV flipped", 1),
        ("check MAC of another key", 2),
    ] {
        let mut d = desc.clone();
        match f {
            0 => d.mac = Some(flip(d.mac.as_deref().unwrap(), 0)),
            1 => d.iv = Some(flip(d.iv.as_deref().unwrap(), 0)),
            _ => {
                let other = SecretStorageKey::random()
                    .unwrap()
                    .describe(None, None)
                    .unwrap();
                d.iv = other.iv;
                d.mac = other.mac;
            }
        }
        let ok = key.check(&d).unwrap_or(false);
        assert!(!ok, "{what}: a damaged key check passed");
        n += 1;
    }
    // Backup session data: a flipped MAC is "wrong key", a short one "malformed".
    let bk = mxkeys::backup::BackupDecryptionKey::random().unwrap();
    let (_, _, d) = backup_entry(&bk);
    let d: mxkeys::backup::KeyBackupData = serde_json::from_value(d).unwrap();
    let mut sd = d.session_data.clone();
    sd.mac = flip(&sd.mac, 0);
    assert!(matches!(
        bk.decrypt(&sd),
        Err(mxkeys::backup::BackupError::WrongKey)
    ));
    let mut sd = d.session_data.clone();
    sd.mac = b64(&b64d(&sd.mac)[..4]);
    assert!(matches!(
        bk.decrypt(&sd),
        Err(mxkeys::backup::BackupError::Malformed(_))
    ));
    n += 2;
    println!("library-level bad-MAC cases: {n}");
}

/// Regression: a file saved with a UTF-8 byte-order mark (Windows Notepad) is read, as
/// Element reads it.
#[test]
fn utf8_bom_before_the_header_is_accepted() {
    let env = common::Env::new();
    let mut t = b"\xEF\xBB\xBF".to_vec();
    t.extend(std::fs::read(fixture("export/element-three.txt")).unwrap());
    let f = env.write("bom.txt", t);
    let pt = env.decrypt(&f, &env.pass_file());
    assert_eq!(
        serde_json::from_slice::<Value>(&pt).unwrap(),
        serde_json::from_slice::<Value>(&three_plaintext()).unwrap()
    );
}
