//! Encrypted attachments: the `EncryptedFile` object of an `m.room.message` (`content.file`,
//! `content.info.thumbnail_file`) and the decryption of the media it points to.
//!
//! The spec's version 2: AES-256 in counter mode with a 128-bit big-endian counter (the
//! `iv`'s low 64 bits are zero), keyed by a JSON Web Key (`kty: oct`, `alg: A256CTR`,
//! `key_ops` with at least `encrypt` and `decrypt`, `k` unpadded base64url), and the SHA-256
//! of the *ciphertext* in `hashes.sha256`. The hash is checked before a single byte is
//! decrypted, so a tampered or truncated download yields an error and no plaintext at all.

use aes::Aes256;
use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use ctr::cipher::{KeyIvInit, StreamCipher};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// AES-256-CTR with the whole 16-byte block as the counter, as attachments use it.
type Aes256Ctr128 = ctr::Ctr128BE<Aes256>;

/// Why an `EncryptedFile` cannot be used, or its media does not decrypt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttachmentError {
    /// A field is missing or has the wrong JSON type.
    #[error("encrypted file: {0}")]
    Malformed(String),
    /// `v` is not `v2`.
    #[error("encrypted file version {0:?} is not supported (only v2)")]
    Version(String),
    /// The key is not an AES-256-CTR JSON Web Key usable for decryption.
    #[error("encrypted file key: {0}")]
    Key(String),
    /// The SHA-256 of the downloaded ciphertext is not the one the event gives.
    #[error("the downloaded media does not match its SHA-256 hash (altered or truncated)")]
    HashMismatch,
}

fn lenient(alphabet: &base64::alphabet::Alphabet) -> GeneralPurpose {
    GeneralPurpose::new(
        alphabet,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    )
}

/// Unpadded (or padded) base64 of exactly `N` bytes; `url` selects the base64url alphabet.
fn b64_exact<const N: usize>(s: &str, url: bool, what: &str) -> Result<[u8; N], String> {
    let engine = if url {
        lenient(&base64::alphabet::URL_SAFE)
    } else {
        lenient(&base64::alphabet::STANDARD)
    };
    let v = Zeroizing::new(
        engine
            .decode(s)
            .map_err(|e| format!("{what} is not base64: {e}"))?,
    );
    <[u8; N]>::try_from(v.as_slice()).map_err(|_| format!("{what} is {} bytes, not {N}", v.len()))
}

fn field<'a>(m: &'a Map<String, Value>, k: &str) -> Result<&'a Value, AttachmentError> {
    m.get(k)
        .ok_or_else(|| AttachmentError::Malformed(format!("no {k:?}")))
}

fn string<'a>(m: &'a Map<String, Value>, k: &str) -> Result<&'a str, AttachmentError> {
    field(m, k)?
        .as_str()
        .ok_or_else(|| AttachmentError::Malformed(format!("{k:?} is not a string")))
}

/// A parsed `EncryptedFile`: where the ciphertext is, and how to check and decrypt it.
#[derive(Clone)]
pub struct EncryptedFile {
    /// The `mxc://` URI of the ciphertext.
    pub url: String,
    /// `mimetype`, when the object carries one (clients usually put it in `info`).
    pub mimetype: Option<String>,
    key: Zeroizing<[u8; 32]>,
    iv: [u8; 16],
    sha256: [u8; 32],
}

impl std::fmt::Debug for EncryptedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptedFile")
            .field("url", &self.url)
            .field("key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl EncryptedFile {
    /// Parse the JSON object (`content.file` of an event).
    pub fn from_json(v: &Value) -> Result<EncryptedFile, AttachmentError> {
        let m = v
            .as_object()
            .ok_or_else(|| AttachmentError::Malformed("not a JSON object".into()))?;
        let version = string(m, "v")?;
        if version != "v2" {
            return Err(AttachmentError::Version(crate::session::sanitize(version)));
        }
        let url = string(m, "url")?.to_owned();
        let key = field(m, "key")?
            .as_object()
            .ok_or_else(|| AttachmentError::Malformed("\"key\" is not an object".into()))?;
        let kty = string(key, "kty")?;
        if kty != "oct" {
            return Err(AttachmentError::Key(format!(
                "kty is {:?}, not \"oct\"",
                crate::session::sanitize(kty)
            )));
        }
        let alg = string(key, "alg")?;
        if alg != "A256CTR" {
            return Err(AttachmentError::Key(format!(
                "alg is {:?}, not \"A256CTR\"",
                crate::session::sanitize(alg)
            )));
        }
        let ops = field(key, "key_ops")?
            .as_array()
            .ok_or_else(|| AttachmentError::Key("key_ops is not an array".into()))?;
        for needed in ["encrypt", "decrypt"] {
            if !ops.iter().any(|o| o.as_str() == Some(needed)) {
                return Err(AttachmentError::Key(format!("key_ops lacks {needed:?}")));
            }
        }
        let k = Zeroizing::new(
            b64_exact::<32>(string(key, "k")?, true, "k").map_err(AttachmentError::Key)?,
        );
        let iv =
            b64_exact::<16>(string(m, "iv")?, false, "iv").map_err(AttachmentError::Malformed)?;
        let hashes = field(m, "hashes")?
            .as_object()
            .ok_or_else(|| AttachmentError::Malformed("\"hashes\" is not an object".into()))?;
        let sha256 = b64_exact::<32>(string(hashes, "sha256")?, false, "hashes.sha256")
            .map_err(AttachmentError::Malformed)?;
        Ok(EncryptedFile {
            url,
            mimetype: m.get("mimetype").and_then(Value::as_str).map(str::to_owned),
            key: k,
            iv,
            sha256,
        })
    }

    /// Parse from JSON bytes (fuzzing, tests).
    pub fn from_slice(bytes: &[u8]) -> Result<EncryptedFile, AttachmentError> {
        let v: Value = serde_json::from_slice(bytes)
            .map_err(|e| AttachmentError::Malformed(format!("not JSON: {e}")))?;
        EncryptedFile::from_json(&v)
    }

    /// Is `other` the same attachment: same URI, key, IV and hash (so the same plaintext)?
    pub fn same_as(&self, other: &EncryptedFile) -> bool {
        self.url == other.url
            && bool::from(self.key.as_slice().ct_eq(other.key.as_slice()))
            && self.iv == other.iv
            && self.sha256 == other.sha256
    }

    /// Does `ciphertext` have the hash the event gives?
    pub fn hash_matches(&self, ciphertext: &[u8]) -> bool {
        let got = Sha256::digest(ciphertext);
        bool::from(got.as_slice().ct_eq(&self.sha256))
    }

    /// Check the ciphertext's hash, then decrypt it. Nothing is returned when the hash differs.
    pub fn decrypt(&self, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, AttachmentError> {
        if !self.hash_matches(ciphertext) {
            return Err(AttachmentError::HashMismatch);
        }
        let mut buf = Zeroizing::new(ciphertext.to_vec());
        Aes256Ctr128::new((&*self.key).into(), (&self.iv).into())
            .try_apply_keystream(&mut buf)
            // Only a ciphertext longer than 2^128 blocks could overrun the counter.
            .map_err(|_| AttachmentError::Malformed("ciphertext too long".into()))?;
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/attachment")
            .join(name);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    fn file_json(name: &str) -> Value {
        serde_json::from_slice(&fixture(&format!("{name}.file.json"))).unwrap_or(Value::Null)
    }

    #[test]
    fn decrypts_what_matrix_encrypt_attachment_wrote() {
        for name in ["pixel.png", "hello.txt"] {
            let f = EncryptedFile::from_json(&file_json(name)).unwrap();
            let ct = fixture(&format!("{name}.enc"));
            let pt = f.decrypt(&ct).unwrap();
            assert_eq!(pt.as_slice(), fixture(name).as_slice(), "{name}");
            assert_ne!(pt.as_slice(), ct.as_slice());
        }
        let f = EncryptedFile::from_json(&file_json("pixel.png")).unwrap();
        assert_eq!(f.url, "mxc://example.org/pixel_png");
        assert_eq!(f.mimetype.as_deref(), Some("image/png"));
        assert!(!format!("{f:?}").contains("UtbW3ry2"));
    }

    #[test]
    fn tampered_or_truncated_ciphertext_gives_no_plaintext() {
        let f = EncryptedFile::from_json(&file_json("hello.txt")).unwrap();
        let mut ct = fixture("hello.txt.enc");
        ct[3] ^= 1;
        assert_eq!(f.decrypt(&ct), Err(AttachmentError::HashMismatch));
        let ct = fixture("hello.txt.enc");
        assert_eq!(
            f.decrypt(&ct[..ct.len() - 1]),
            Err(AttachmentError::HashMismatch)
        );
        assert!(f.hash_matches(&ct));
    }

    #[test]
    fn bad_objects_are_refused_with_a_reason() {
        let good = file_json("pixel.png");
        let with = |path: &[&str], v: Value| {
            let mut j = good.clone();
            let mut at = &mut j;
            for p in &path[..path.len() - 1] {
                at = &mut at[*p];
            }
            match v {
                Value::Null => {
                    at.as_object_mut().map(|o| o.remove(path[path.len() - 1]));
                }
                v => at[path[path.len() - 1]] = v,
            }
            EncryptedFile::from_json(&j).map(|_| ())
        };
        assert!(matches!(
            with(&["v"], "v1".into()),
            Err(AttachmentError::Version(_))
        ));
        assert!(matches!(
            with(&["key", "alg"], "A128CTR".into()),
            Err(AttachmentError::Key(_))
        ));
        assert!(matches!(
            with(&["key", "kty"], "RSA".into()),
            Err(AttachmentError::Key(_))
        ));
        assert!(matches!(
            with(&["key", "key_ops"], serde_json::json!(["encrypt"])),
            Err(AttachmentError::Key(_))
        ));
        assert!(matches!(
            with(&["key", "k"], "AAAA".into()),
            Err(AttachmentError::Key(_))
        ));
        assert!(matches!(
            with(&["iv"], "!!".into()),
            Err(AttachmentError::Malformed(_))
        ));
        assert!(matches!(
            with(&["hashes", "sha256"], Value::Null),
            Err(AttachmentError::Malformed(_))
        ));
        assert!(matches!(
            with(&["url"], 5.into()),
            Err(AttachmentError::Malformed(_))
        ));
        assert!(EncryptedFile::from_slice(b"[").is_err());
        assert!(EncryptedFile::from_slice(b"[]").is_err());
        // Padded base64 is accepted as well as the spec's unpadded form.
        let mut padded = good.clone();
        padded["iv"] = format!("{}==", good["iv"].as_str().unwrap()).into();
        assert!(EncryptedFile::from_json(&padded).is_ok());
    }
}
