//! An independent implementation of Element's key-export format, written from the published
//! algorithm with the RustCrypto crates (not through mxkeys):
//!
//! body = version(1) || salt(16) || iv(16) || rounds(u32 BE) || AES-256-CTR(json) || HMAC
//! keys = PBKDF2-HMAC-SHA512(passphrase, salt, rounds, 64 bytes): AES key || HMAC key
//! AES-CTR uses the IV as the initial counter block with a 64-bit counter (WebCrypto
//! `length: 64`); the HMAC-SHA256 covers everything before it.
use aes::Aes256;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ctr::cipher::{KeyIvInit, StreamCipher};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Sha256, Sha512};
use std::path::Path;

pub const HEADER: &str = "-----BEGIN MEGOLM SESSION DATA-----";
pub const FOOTER: &str = "-----END MEGOLM SESSION DATA-----";

type Ctr64 = ctr::Ctr64BE<Aes256>;
type Ctr128 = ctr::Ctr128BE<Aes256>;

/// PBKDF2-HMAC-SHA512 -> (AES key, HMAC key).
pub fn derive(pass: &[u8], salt: &[u8], rounds: u32) -> ([u8; 32], [u8; 32]) {
    let mut k = [0u8; 64];
    pbkdf2::pbkdf2_hmac::<Sha512>(pass, salt, rounds, &mut k);
    let mut a = [0u8; 32];
    let mut m = [0u8; 32];
    a.copy_from_slice(&k[..32]);
    m.copy_from_slice(&k[32..]);
    (a, m)
}

fn hmac(key: &[u8; 32], data: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// AES-256-CTR with WebCrypto's 64-bit counter.
pub fn ctr64(key: &[u8; 32], iv: &[u8; 16], data: &mut [u8]) {
    let mut c = Ctr64::new(key.into(), iv.into());
    c.apply_keystream(data);
}

/// AES-256-CTR with a 128-bit counter (what Element does NOT do).
pub fn ctr128(key: &[u8; 32], iv: &[u8; 16], data: &mut [u8]) {
    let mut c = Ctr128::new(key.into(), iv.into());
    c.apply_keystream(data);
}

/// Random bytes.
pub fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).unwrap();
    b
}

/// The binary body with every field chosen by the caller.
pub fn seal_with(
    pt: &[u8],
    pass: &[u8],
    version: u8,
    salt: [u8; 16],
    iv: [u8; 16],
    rounds: u32,
) -> Vec<u8> {
    let (ak, mk) = derive(pass, &salt, rounds.max(1));
    let mut out = vec![version];
    out.extend_from_slice(&salt);
    out.extend_from_slice(&iv);
    out.extend_from_slice(&rounds.to_be_bytes());
    let mut ct = pt.to_vec();
    ctr64(&ak, &iv, &mut ct);
    out.extend_from_slice(&ct);
    let tag = hmac(&mk, &out);
    out.extend_from_slice(&tag);
    out
}

/// The binary body as Element writes it: random salt, random IV with bit 63 cleared.
pub fn seal(pt: &[u8], pass: &[u8], rounds: u32) -> Vec<u8> {
    let mut iv = random::<16>();
    iv[8] &= 0x7f;
    seal_with(pt, pass, 1, random::<16>(), iv, rounds)
}

/// Armor a body: header, base64 lines of `width` characters (0: one line), footer.
pub fn armor(body: &[u8], width: usize) -> String {
    let b64 = STANDARD.encode(body);
    let mut s = format!("{HEADER}\n");
    if width == 0 {
        s.push_str(&b64);
        s.push('\n');
    } else {
        for chunk in b64.as_bytes().chunks(width) {
            s.push_str(std::str::from_utf8(chunk).unwrap());
            s.push('\n');
        }
    }
    s.push_str(FOOTER);
    s.push('\n');
    s
}

/// An export file as Element writes it (96 bytes = 128 characters per line).
pub fn encrypt(pt: &[u8], pass: &[u8], rounds: u32) -> String {
    armor(&seal(pt, pass, rounds), 128)
}

/// Element's reader: take the lines between header and footer, join, base64-decode.
pub fn unarmor(text: &[u8]) -> Vec<u8> {
    let s = std::str::from_utf8(text).unwrap();
    let start = s.find(HEADER).unwrap() + HEADER.len();
    let end = s.find(FOOTER).unwrap();
    let b64: String = s[start..end]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    super::backup_cipher::b64d(&b64)
}

/// What the independent decryptor found.
#[derive(Debug)]
pub struct Opened {
    pub version: u8,
    pub salt: [u8; 16],
    pub iv: [u8; 16],
    pub rounds: u32,
    pub plaintext: Vec<u8>,
}

/// Verify the HMAC over everything before the tag, then decrypt with the 64-bit counter.
pub fn open(body: &[u8], pass: &[u8]) -> Result<Opened, String> {
    if body.len() < 69 {
        return Err(format!("too short: {}", body.len()));
    }
    let version = body[0];
    if version != 1 {
        return Err(format!("version {version}"));
    }
    let mut salt = [0u8; 16];
    let mut iv = [0u8; 16];
    salt.copy_from_slice(&body[1..17]);
    iv.copy_from_slice(&body[17..33]);
    let rounds = u32::from_be_bytes([body[33], body[34], body[35], body[36]]);
    let (ak, mk) = derive(pass, &salt, rounds);
    let (signed, tag) = body.split_at(body.len() - 32);
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&mk).unwrap();
    mac.update(signed);
    mac.verify_slice(tag)
        .map_err(|_| "HMAC mismatch".to_string())?;
    let mut pt = signed[37..].to_vec();
    ctr64(&ak, &iv, &mut pt);
    Ok(Opened {
        version,
        salt,
        iv,
        rounds,
        plaintext: pt,
    })
}

/// Check that `text` is exactly the dialect mxkeys promises to write (header line, padded
/// base64 wrapped at 128 columns, footer, LF, final newline); return the decoded body.
pub fn check_written_armor(text: &[u8]) -> Vec<u8> {
    let s = std::str::from_utf8(text).expect("export file is not UTF-8");
    assert!(s.is_ascii(), "export file is not ASCII");
    assert!(!s.contains('\r'), "export file has CR characters");
    assert!(
        s.starts_with(&format!("{HEADER}\n")),
        "does not start with the header line"
    );
    assert!(
        s.ends_with(&format!("\n{FOOTER}\n")),
        "does not end with the footer line and a final newline"
    );
    let lines: Vec<&str> = s.lines().collect();
    assert_eq!(lines[0], HEADER);
    assert_eq!(lines[lines.len() - 1], FOOTER);
    let body = &lines[1..lines.len() - 1];
    assert!(!body.is_empty(), "empty body");
    let mut decoded = Vec::new();
    for (i, l) in body.iter().enumerate() {
        let last = i == body.len() - 1;
        if last {
            assert!(
                !l.is_empty() && l.len() <= 128 && l.len() % 4 == 0,
                "last body line has length {} (padded base64 expected)",
                l.len()
            );
        } else {
            assert_eq!(l.len(), 128, "body line {} is not 128 columns", i + 1);
        }
        // STANDARD requires canonical padding.
        let d = STANDARD
            .decode(l)
            .unwrap_or_else(|e| panic!("body line {} is not padded base64: {e}", i + 1));
        if !last {
            assert_eq!(d.len(), 96);
        }
        decoded.extend_from_slice(&d);
    }
    decoded
}

/// Read a file mxkeys wrote: check the dialect, then decrypt it independently.
pub fn decrypt_file(path: &Path, pass: &[u8]) -> Opened {
    let text = std::fs::read(path).unwrap();
    let body = check_written_armor(&text);
    let o = open(&body, pass).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(o.version, 1);
    assert_eq!(o.iv[8] & 0x80, 0, "IV bit 63 is set");
    o
}
