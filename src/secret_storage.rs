//! Secret storage ("4S"/SSSS): `m.secret_storage.v1.aes-hmac-sha2` (spec brief section 6).
//!
//! A 32-byte secret-storage key (from a recovery key or a passphrase) protects secrets kept
//! in the user's account data, among them `m.megolm_backup.v1`, the backup private key.
//!
//! - Keys: `HKDF-SHA256(salt = 32 zero bytes, ikm = key, info = secret name, 64 bytes)` =
//!   AES key || HMAC key.
//! - A secret: AES-256-CTR (64-bit counter, IV with bit 63 cleared when writing) over the
//!   UTF-8 text; `mac = HMAC-SHA256(mac_key, ciphertext)`; all three fields base64 (written
//!   unpadded, read either way).
//! - Key check (the key description's `iv`/`mac`): the MAC of 32 zero bytes encrypted as the
//!   secret named `""`. Absent `iv`/`mac` mean "cannot check": any key is accepted.
//! - Passphrase keys: PBKDF2-HMAC-SHA512 with the salt's UTF-8 bytes (not base64-decoded).
//!
//! MACs are verified in constant time before anything is decrypted.

use aes::cipher::{KeyIvInit, StreamCipher};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use hmac::Mac;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::backup::{BackupDecryptionKey, b64decode, hkdf_sha256};
use crate::error::ErrorKind;
use crate::export::cipher::{Aes256Ctr64, hmac_sha256};
use crate::kdf::pbkdf2_sha512;
use crate::secret::{Key32, Passphrase};
use crate::session::sanitize;

/// The secret-storage algorithm this module implements.
pub const ALGORITHM: &str = "m.secret_storage.v1.aes-hmac-sha2";
/// The one passphrase algorithm.
pub const PBKDF2_ALGORITHM: &str = "m.pbkdf2";
/// The secret holding the key-backup private key.
pub const MEGOLM_BACKUP_SECRET: &str = "m.megolm_backup.v1";
/// PBKDF2 iterations for new passphrase keys (Element's and matrix-rust-sdk's default).
pub const DEFAULT_PBKDF2_ITERATIONS: u32 = 500_000;

const IV_LEN: usize = 16;
const MAC_LEN: usize = 32;
const ALPHANUMERIC: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// Why a secret-storage operation failed.
///
/// Messages never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum SecretStorageError {
    /// The MAC of a secret did not verify.
    #[error("wrong secret storage key, or the stored secret was modified")]
    WrongKey,
    /// The key description uses another algorithm.
    #[error("unsupported secret storage algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    /// The passphrase description uses another algorithm than `m.pbkdf2`.
    #[error("unsupported passphrase algorithm {0:?} (only m.pbkdf2 is defined)")]
    UnsupportedPassphraseAlgorithm(String),
    /// Passphrase parameters that cannot be used.
    #[error("unusable passphrase parameters: {0}")]
    PassphraseParams(String),
    /// A field is not base64.
    #[error("{field} is not base64")]
    Base64 {
        /// The field, e.g. "iv".
        field: &'static str,
    },
    /// A field has the wrong length.
    #[error("{field} is {len} bytes long, expected {expected}")]
    Length {
        /// The field, e.g. "mac".
        field: &'static str,
        /// Its decoded length.
        len: usize,
        /// The required length.
        expected: usize,
    },
    /// The MAC verified but the plaintext is not UTF-8.
    #[error("the decrypted secret is not UTF-8 text")]
    NotUtf8,
    /// The `m.megolm_backup.v1` secret is not the base64 of a 32-byte key.
    #[error("the m.megolm_backup.v1 secret is not a base64-encoded 32-byte key")]
    InvalidBackupSecret,
    /// More data than AES-CTR can encrypt from this IV (never from honest writers).
    #[error("the ciphertext is too long for AES-CTR")]
    TooLong,
    /// The OS random generator failed.
    #[error("{0}")]
    Random(String),
}

impl SecretStorageError {
    /// The broad class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            SecretStorageError::WrongKey => ErrorKind::WrongSecret,
            SecretStorageError::Random(_) => ErrorKind::Other,
            SecretStorageError::UnsupportedAlgorithm(_)
            | SecretStorageError::UnsupportedPassphraseAlgorithm(_)
            | SecretStorageError::PassphraseParams(_)
            | SecretStorageError::Base64 { .. }
            | SecretStorageError::Length { .. }
            | SecretStorageError::NotUtf8
            | SecretStorageError::TooLong
            | SecretStorageError::InvalidBackupSecret => ErrorKind::InvalidInput,
        }
    }
}

fn random_bytes(buf: &mut [u8]) -> Result<(), SecretStorageError> {
    crate::fs::fill_random(buf).map_err(|e| SecretStorageError::Random(e.to_string()))
}

/// `n` random characters from `[A-Za-z0-9]`, uniformly (rejection sampling).
fn random_alphanumeric(n: usize) -> Result<String, SecretStorageError> {
    let mut out = String::with_capacity(n);
    let mut buf = [0u8; 64];
    while out.len() < n {
        random_bytes(&mut buf)?;
        // 248 = 4 * 62: bytes below it map uniformly onto the alphabet.
        for &b in buf.iter().filter(|&&b| b < 248) {
            if out.len() == n {
                break;
            }
            out.push(char::from(ALPHANUMERIC[usize::from(b % 62)]));
        }
    }
    Ok(out)
}

/// A fresh key id for `m.secret_storage.key.<id>`: 32 random alphanumeric characters.
pub fn new_key_id() -> Result<String, SecretStorageError> {
    random_alphanumeric(32)
}

fn decode_fixed<const N: usize>(
    field: &'static str,
    text: &str,
) -> Result<[u8; N], SecretStorageError> {
    let bytes = b64decode(text).ok_or(SecretStorageError::Base64 { field })?;
    bytes[..]
        .try_into()
        .map_err(|_| SecretStorageError::Length {
            field,
            len: bytes.len(),
            expected: N,
        })
}

/// The `passphrase` of a key description.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PassphraseInfo {
    /// `m.pbkdf2`.
    pub algorithm: String,
    /// Salt, used as its UTF-8 bytes.
    pub salt: String,
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// Key size in bits (default 256; only 256 is usable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bits: Option<u32>,
    /// Fields this tool does not know, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl PassphraseInfo {
    /// Parameters for a new passphrase key: `m.pbkdf2`, a 32-character random alphanumeric
    /// salt, the given iterations (see [`DEFAULT_PBKDF2_ITERATIONS`]), 256 bits.
    pub fn new(iterations: u32) -> Result<Self, SecretStorageError> {
        Ok(PassphraseInfo {
            algorithm: PBKDF2_ALGORITHM.to_owned(),
            salt: random_alphanumeric(32)?,
            iterations,
            bits: Some(256),
            extra: Map::new(),
        })
    }
}

/// The content of `m.secret_storage.key.<id>` account data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyDescription {
    /// `m.secret_storage.v1.aes-hmac-sha2`.
    pub algorithm: String,
    /// Human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Present when the key is derived from a passphrase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passphrase: Option<PassphraseInfo>,
    /// Key-check IV (base64, 16 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iv: Option<String>,
    /// Key-check MAC (base64, 32 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Fields this tool does not know, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One encrypted secret, `encrypted.<key id>` of a secret's account data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptedSecret {
    /// Base64 AES-CTR IV (16 bytes).
    pub iv: String,
    /// Base64 ciphertext.
    pub ciphertext: String,
    /// Base64 HMAC-SHA256 of the ciphertext (32 bytes).
    pub mac: String,
}

/// AES and HMAC keys for one secret name.
struct SecretKeys {
    aes: Zeroizing<[u8; 32]>,
    mac: Zeroizing<[u8; 32]>,
}

/// A 32-byte secret-storage key. Redacted `Debug`; zeroized on drop.
pub struct SecretStorageKey(Key32);

/// The key bytes live in a [`Key32`], which zeroizes itself on drop.
impl zeroize::ZeroizeOnDrop for SecretStorageKey {}

impl std::fmt::Debug for SecretStorageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretStorageKey(<redacted>)")
    }
}

impl SecretStorageKey {
    /// Wrap key bytes (e.g. from a decoded recovery key).
    pub fn new(key: Key32) -> Self {
        SecretStorageKey(key)
    }

    /// A fresh random key.
    pub fn random() -> Result<Self, SecretStorageError> {
        Key32::random()
            .map(Self)
            .map_err(|e| SecretStorageError::Random(e.to_string()))
    }

    /// The raw key, e.g. to show it as a recovery key. Secret.
    pub fn expose_secret(&self) -> &Key32 {
        &self.0
    }

    /// Derive the key from a passphrase: PBKDF2-HMAC-SHA512 with the salt's UTF-8 bytes.
    ///
    /// `info.iterations` comes from the server; callers should refuse absurd values (the work
    /// is linear in it) before calling.
    pub fn from_passphrase(
        passphrase: &Passphrase,
        info: &PassphraseInfo,
    ) -> Result<Self, SecretStorageError> {
        if info.algorithm != PBKDF2_ALGORITHM {
            return Err(SecretStorageError::UnsupportedPassphraseAlgorithm(
                sanitize(&info.algorithm),
            ));
        }
        if info.iterations == 0 {
            return Err(SecretStorageError::PassphraseParams(
                "iterations is 0".into(),
            ));
        }
        match info.bits {
            None | Some(256) => {}
            Some(b) => {
                return Err(SecretStorageError::PassphraseParams(format!(
                    "bits is {b}, only 256 is supported"
                )));
            }
        }
        let k = pbkdf2_sha512::<32>(
            passphrase.expose_secret(),
            info.salt.as_bytes(),
            info.iterations,
        );
        Ok(SecretStorageKey(Key32::new(*k)))
    }

    fn keys(&self, secret_name: &str) -> SecretKeys {
        let okm = hkdf_sha256::<64>(self.0.expose_secret(), secret_name.as_bytes());
        let mut keys = SecretKeys {
            aes: Zeroizing::new([0u8; 32]),
            mac: Zeroizing::new([0u8; 32]),
        };
        keys.aes.copy_from_slice(&okm[..32]);
        keys.mac.copy_from_slice(&okm[32..]);
        keys
    }

    /// Whether this is the key a description describes: the MAC of 32 zero bytes, encrypted
    /// with the description's IV, must equal its `mac` (constant time).
    ///
    /// Returns `Ok(true)` when the description has no `iv` or no `mac` (nothing to check
    /// against, as the spec requires), `Ok(false)` for a wrong key, and an error for another
    /// algorithm or an `iv`/`mac` of the wrong size.
    pub fn check(&self, description: &KeyDescription) -> Result<bool, SecretStorageError> {
        if description.algorithm != ALGORITHM {
            return Err(SecretStorageError::UnsupportedAlgorithm(sanitize(
                &description.algorithm,
            )));
        }
        let (Some(iv), Some(mac)) = (&description.iv, &description.mac) else {
            return Ok(true);
        };
        let iv = decode_fixed::<IV_LEN>("iv", iv)?;
        let mac = decode_fixed::<MAC_LEN>("mac", mac)?;
        let keys = self.keys("");
        let mut zeros = [0u8; 32];
        apply_ctr(&keys, &iv, &mut zeros)?;
        let mut hmac = hmac_sha256(&keys.mac[..]);
        hmac.update(&zeros);
        Ok(hmac.verify_slice(&mac).is_ok())
    }

    /// A new key description for this key: random IV (bit 63 cleared) and the key-check MAC.
    pub fn describe(
        &self,
        name: Option<String>,
        passphrase: Option<PassphraseInfo>,
    ) -> Result<KeyDescription, SecretStorageError> {
        let check = self.encrypt_bytes("", &[0u8; 32], random_iv()?)?;
        Ok(KeyDescription {
            algorithm: ALGORITHM.to_owned(),
            name,
            passphrase,
            iv: Some(check.iv),
            mac: Some(check.mac),
            extra: Map::new(),
        })
    }

    /// Encrypt a secret under `secret_name` (random IV with bit 63 cleared; unpadded base64).
    pub fn encrypt(
        &self,
        secret_name: &str,
        plaintext: &str,
    ) -> Result<EncryptedSecret, SecretStorageError> {
        self.encrypt_bytes(secret_name, plaintext.as_bytes(), random_iv()?)
    }

    fn encrypt_bytes(
        &self,
        secret_name: &str,
        plaintext: &[u8],
        iv: [u8; IV_LEN],
    ) -> Result<EncryptedSecret, SecretStorageError> {
        let keys = self.keys(secret_name);
        // Holds plaintext until the keystream is applied.
        let mut buf = Zeroizing::new(plaintext.to_vec());
        apply_ctr(&keys, &iv, &mut buf)?;
        let mut hmac = hmac_sha256(&keys.mac[..]);
        hmac.update(&buf);
        Ok(EncryptedSecret {
            iv: STANDARD_NO_PAD.encode(iv),
            ciphertext: STANDARD_NO_PAD.encode(&buf[..]),
            mac: STANDARD_NO_PAD.encode(hmac.finalize().into_bytes()),
        })
    }

    /// Decrypt a secret stored under `secret_name`: MAC first (constant time), then AES-CTR,
    /// then UTF-8.
    pub fn decrypt(
        &self,
        secret_name: &str,
        secret: &EncryptedSecret,
    ) -> Result<Zeroizing<String>, SecretStorageError> {
        let iv = decode_fixed::<IV_LEN>("iv", &secret.iv)?;
        let mac = decode_fixed::<MAC_LEN>("mac", &secret.mac)?;
        let mut buf = b64decode(&secret.ciphertext).ok_or(SecretStorageError::Base64 {
            field: "ciphertext",
        })?;
        let keys = self.keys(secret_name);
        let mut hmac = hmac_sha256(&keys.mac[..]);
        hmac.update(&buf);
        if hmac.verify_slice(&mac).is_err() {
            return Err(SecretStorageError::WrongKey);
        }
        apply_ctr(&keys, &iv, &mut buf)?;
        let bytes = std::mem::take(&mut *buf);
        match String::from_utf8(bytes) {
            Ok(s) => Ok(Zeroizing::new(s)),
            Err(e) => {
                // Zeroize the rejected bytes too.
                drop(Zeroizing::new(e.into_bytes()));
                Err(SecretStorageError::NotUtf8)
            }
        }
    }
}

fn apply_ctr(
    keys: &SecretKeys,
    iv: &[u8; IV_LEN],
    buf: &mut [u8],
) -> Result<(), SecretStorageError> {
    Aes256Ctr64::new((&*keys.aes).into(), iv.into())
        .try_apply_keystream(buf)
        .map_err(|_| SecretStorageError::TooLong)
}

/// 16 random bytes with bit 63 cleared, so the 64-bit counter never wraps (Element's rule).
fn random_iv() -> Result<[u8; IV_LEN], SecretStorageError> {
    let mut iv = [0u8; IV_LEN];
    random_bytes(&mut iv)?;
    iv[8] &= 0x7f;
    Ok(iv)
}

/// The backup private key held in the `m.megolm_backup.v1` secret: the base64 text (padded
/// or not) of the 32 key bytes.
pub fn backup_key_from_secret(plaintext: &str) -> Result<BackupDecryptionKey, SecretStorageError> {
    BackupDecryptionKey::from_base64(plaintext).map_err(|_| SecretStorageError::InvalidBackupSecret)
}

/// The `m.megolm_backup.v1` secret text for a backup key (unpadded base64). Secret.
pub fn backup_key_to_secret(key: &BackupDecryptionKey) -> Zeroizing<String> {
    key.to_base64()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn fixture() -> Value {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/secret-storage/samples.json"
        ))
        .unwrap();
        serde_json::from_str(&text).unwrap()
    }

    fn key_b64(s: &str) -> SecretStorageKey {
        let b = b64decode(s).unwrap();
        SecretStorageKey::new(Key32::new(b[..].try_into().unwrap()))
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    fn description(iv: Option<&str>, mac: Option<&str>) -> KeyDescription {
        KeyDescription {
            algorithm: ALGORITHM.into(),
            name: None,
            passphrase: None,
            iv: iv.map(Into::into),
            mac: mac.map(Into::into),
            extra: Map::new(),
        }
    }

    /// Every matrix-js-sdk item decrypts; those with a given IV re-encrypt byte for byte.
    #[test]
    fn js_sdk_items() {
        let f = fixture();
        let items = f["items"].as_array().unwrap();
        assert_eq!(items.len(), 28);
        for (i, item) in items.iter().enumerate() {
            let key = key_b64(item["key_b64"].as_str().unwrap());
            let name = item["secret_name"].as_str().unwrap();
            let plaintext = item["plaintext"].as_str().unwrap();
            let enc: EncryptedSecret = serde_json::from_value(item["encrypted"].clone()).unwrap();
            assert_eq!(&*key.decrypt(name, &enc).unwrap(), plaintext, "item {i}");

            // Re-encrypting with the same IV reproduces js-sdk's bytes (ours unpadded).
            let iv: [u8; 16] = b64decode(&enc.iv).unwrap()[..].try_into().unwrap();
            let ours = key.encrypt_bytes(name, plaintext.as_bytes(), iv).unwrap();
            for (a, b) in [
                (&ours.iv, &enc.iv),
                (&ours.ciphertext, &enc.ciphertext),
                (&ours.mac, &enc.mac),
            ] {
                assert_eq!(a.as_str(), b.trim_end_matches('='), "item {i}");
            }

            // Another secret name, or another key, fails the MAC.
            assert!(matches!(
                key.decrypt(&format!("{name}x"), &enc),
                Err(SecretStorageError::WrongKey)
            ));
            let other = SecretStorageKey::new(Key32::new([0x77; 32]));
            let e = other.decrypt(name, &enc).unwrap_err();
            assert!(matches!(e, SecretStorageError::WrongKey));
            assert_eq!(e.kind(), ErrorKind::WrongSecret);

            if name == MEGOLM_BACKUP_SECRET {
                let bk = backup_key_from_secret(&key.decrypt(name, &enc).unwrap()).unwrap();
                assert_eq!(&*backup_key_to_secret(&bk), plaintext);
            }
        }
    }

    #[test]
    fn js_sdk_key_checks() {
        let f = fixture();
        let checks = f["key_checks"].as_array().unwrap();
        assert_eq!(checks.len(), 9);
        for (i, c) in checks.iter().enumerate() {
            let key = key_b64(c["key_b64"].as_str().unwrap());
            let iv = c["result"]["iv"].as_str().unwrap();
            let mac = c["result"]["mac"].as_str().unwrap();
            assert!(
                key.check(&description(Some(iv), Some(mac))).unwrap(),
                "check {i}"
            );
            // Unpadded forms too.
            assert!(
                key.check(&description(
                    Some(iv.trim_end_matches('=')),
                    Some(mac.trim_end_matches('='))
                ))
                .unwrap()
            );
            // Reproduce the MAC with the given IV.
            let iv_bytes: [u8; 16] = b64decode(iv).unwrap()[..].try_into().unwrap();
            let ours = key.encrypt_bytes("", &[0u8; 32], iv_bytes).unwrap();
            assert_eq!(ours.mac, mac.trim_end_matches('='), "check {i}");
            // Another key fails.
            let other = SecretStorageKey::new(Key32::new([0x77; 32]));
            assert!(!other.check(&description(Some(iv), Some(mac))).unwrap());
        }
    }

    #[test]
    fn js_sdk_keys_from_passphrase() {
        let f = fixture();
        let cases = f["key_from_passphrase"].as_array().unwrap();
        assert_eq!(cases.len(), 3);
        for c in cases {
            let info = PassphraseInfo {
                algorithm: PBKDF2_ALGORITHM.into(),
                salt: c["salt"].as_str().unwrap().into(),
                iterations: c["iterations"].as_u64().unwrap().try_into().unwrap(),
                bits: Some(c["bits"].as_u64().unwrap().try_into().unwrap()),
                extra: Map::new(),
            };
            let p = Passphrase::from_string(c["passphrase"].as_str().unwrap().into());
            let key = SecretStorageKey::from_passphrase(&p, &info).unwrap();
            assert_eq!(
                STANDARD_NO_PAD.encode(key.expose_secret().expose_secret()),
                c["key_b64"].as_str().unwrap()
            );
        }
    }

    /// Spec brief 7.6, first vector: passphrase key check from rust-sdk.
    #[test]
    fn rust_sdk_passphrase_key_check() {
        let desc: KeyDescription = serde_json::from_value(serde_json::json!({
            "algorithm": ALGORITHM,
            "passphrase": {"algorithm": "m.pbkdf2", "salt": "IuLnH7S85YtZmkkBJKwNUKxWF42g9O1H", "iterations": 10},
            "iv": "gH2iNpiETFhApvW6/FFEJQ",
            "mac": "9Lw12m5SKDipNghdQXKjgpfdj1/K7HFI2brO+UWAGoM"
        }))
        .unwrap();
        let p = Passphrase::from_string("It's a secret to everybody".into());
        let key = SecretStorageKey::from_passphrase(&p, desc.passphrase.as_ref().unwrap()).unwrap();
        assert_eq!(
            hex(key.expose_secret().expose_secret()),
            "397aff44a04238741cff9b76b38126073c34bf25599fa9969287f01ccf77559f"
        );
        assert!(key.check(&desc).unwrap());
        let wrong = SecretStorageKey::from_passphrase(
            &Passphrase::from_string("It's a secret to nobody".into()),
            desc.passphrase.as_ref().unwrap(),
        )
        .unwrap();
        assert!(!wrong.check(&desc).unwrap());
    }

    /// Spec brief 7.6, second vector: base58 key with padded iv/mac.
    #[test]
    fn rust_sdk_base58_key_check() {
        let key = SecretStorageKey::new(
            crate::recovery_key::decode(
                "EsTj 3yST y93F SLpB jJsz eAXc 2XzA ygD3 w69H fGaN TKBj jXEd",
            )
            .unwrap(),
        );
        assert_eq!(
            hex(key.expose_secret().expose_secret()),
            "8da2453dc22b51355ad77ab75b3e9863af7f4a7bc4af0ce8865b57e2d02196d1"
        );
        let desc = description(
            Some("xv5b6/p3ExEw++wTyfSHEg=="),
            Some("ujBBbXahnTAMkmPUX2/0+VTfUh63pGyVRuBcDMgmJC8="),
        );
        assert!(key.check(&desc).unwrap());
    }

    /// Spec brief 7.6, third vector: padded encrypted data parses (the key is not given).
    #[test]
    fn rust_sdk_encrypted_data_parses() {
        let enc: EncryptedSecret = serde_json::from_value(serde_json::json!({
            "iv": "bdfCwu+ECYgZ/jWTkGrQ/A==",
            "ciphertext": "lCRSSA1lChONEXj/8RyogsgAa8ouQwYDnLr4XBCheRikrZykLRzPCx3doCE=",
            "mac": "NXeV1dZaOe2JLvQ6Hh6tFto7AgFFdaQnY0l9pruwdtE="
        }))
        .unwrap();
        let key = SecretStorageKey::new(Key32::new([1; 32]));
        // Structurally fine, so the only failure is the MAC.
        assert!(matches!(
            key.decrypt(MEGOLM_BACKUP_SECRET, &enc),
            Err(SecretStorageError::WrongKey)
        ));
    }

    #[test]
    fn missing_iv_or_mac_accepts_any_key_and_bad_sizes_are_errors() {
        let key = SecretStorageKey::new(Key32::new([3; 32]));
        assert!(key.check(&description(None, None)).unwrap());
        assert!(
            key.check(&description(Some("AAAAAAAAAAAAAAAAAAAAAA"), None))
                .unwrap()
        );
        assert!(key.check(&description(None, Some("AAAA"))).unwrap());
        let e = key
            .check(&description(
                Some("AAAA"),
                Some(&STANDARD_NO_PAD.encode([0u8; 32])),
            ))
            .unwrap_err();
        assert!(
            matches!(
                e,
                SecretStorageError::Length {
                    field: "iv",
                    len: 3,
                    expected: 16
                }
            ),
            "{e}"
        );
        let e = key
            .check(&description(
                Some(&STANDARD_NO_PAD.encode([0u8; 16])),
                Some("AAAA"),
            ))
            .unwrap_err();
        assert!(
            matches!(e, SecretStorageError::Length { field: "mac", .. }),
            "{e}"
        );
        let e = key
            .check(&description(Some("!!"), Some("AAAA")))
            .unwrap_err();
        assert!(
            matches!(e, SecretStorageError::Base64 { field: "iv" }),
            "{e}"
        );
        let mut other = description(None, None);
        other.algorithm = "m.secret_storage.v2.future".into();
        assert!(matches!(
            key.check(&other),
            Err(SecretStorageError::UnsupportedAlgorithm(_))
        ));
        assert_eq!(
            key.check(&other).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
    }

    #[test]
    fn describe_then_check_round_trip() {
        let key = SecretStorageKey::random().unwrap();
        let info = PassphraseInfo::new(1000).unwrap();
        assert_eq!(info.salt.len(), 32);
        assert!(info.salt.bytes().all(|b| b.is_ascii_alphanumeric()));
        let desc = key
            .describe(Some("Recovery key".into()), Some(info.clone()))
            .unwrap();
        assert_eq!(desc.algorithm, ALGORITHM);
        let iv = b64decode(desc.iv.as_deref().unwrap()).unwrap();
        assert_eq!(iv.len(), 16);
        assert_eq!(iv[8] & 0x80, 0, "bit 63 cleared");
        assert!(!desc.mac.as_deref().unwrap().ends_with('='));
        assert!(key.check(&desc).unwrap());
        assert!(!SecretStorageKey::random().unwrap().check(&desc).unwrap());
        // Serialises with the spec's field names and back.
        let v = serde_json::to_value(&desc).unwrap();
        assert_eq!(v["passphrase"]["algorithm"], "m.pbkdf2");
        assert_eq!(v["passphrase"]["bits"], 256);
        assert_eq!(v["name"], "Recovery key");
        let back: KeyDescription = serde_json::from_value(v).unwrap();
        assert_eq!(back, desc);
    }

    #[test]
    fn passphrase_key_round_trip() {
        let info = PassphraseInfo::new(10).unwrap();
        let p = Passphrase::from_string("correct horse".into());
        let key = SecretStorageKey::from_passphrase(&p, &info).unwrap();
        let desc = key.describe(None, Some(info)).unwrap();
        let again =
            SecretStorageKey::from_passphrase(&p, desc.passphrase.as_ref().unwrap()).unwrap();
        assert!(again.check(&desc).unwrap());
        let mut bad = desc.passphrase.clone().unwrap();
        bad.algorithm = "m.argon2".into();
        assert!(matches!(
            SecretStorageKey::from_passphrase(&p, &bad),
            Err(SecretStorageError::UnsupportedPassphraseAlgorithm(_))
        ));
        let mut bad = desc.passphrase.clone().unwrap();
        bad.bits = Some(128);
        assert!(SecretStorageKey::from_passphrase(&p, &bad).is_err());
        bad.bits = None;
        bad.iterations = 0;
        assert!(SecretStorageKey::from_passphrase(&p, &bad).is_err());
    }

    #[test]
    fn encrypt_decrypt_round_trip_and_tamper() {
        let key = SecretStorageKey::random().unwrap();
        for pt in [
            "",
            "x",
            "m6aUyOVn/V+otNaBIqUZlwZPP8d0mPJqBBh3NnU5R74",
            "ünicöde 🔑 日本",
        ] {
            let enc = key.encrypt(MEGOLM_BACKUP_SECRET, pt).unwrap();
            for f in [&enc.iv, &enc.ciphertext, &enc.mac] {
                assert!(!f.ends_with('='), "unpadded");
            }
            let iv = b64decode(&enc.iv).unwrap();
            assert_eq!(iv[8] & 0x80, 0, "bit 63 cleared");
            assert_eq!(&*key.decrypt(MEGOLM_BACKUP_SECRET, &enc).unwrap(), pt);
            if !pt.is_empty() {
                let mut ct = b64decode(&enc.ciphertext).unwrap();
                ct[0] ^= 1;
                let tampered = EncryptedSecret {
                    ciphertext: STANDARD_NO_PAD.encode(&ct[..]),
                    ..enc.clone()
                };
                assert!(matches!(
                    key.decrypt(MEGOLM_BACKUP_SECRET, &tampered),
                    Err(SecretStorageError::WrongKey)
                ));
            }
        }
        // Two encryptions differ (random IV).
        let a = key.encrypt("n", "same").unwrap();
        let b = key.encrypt("n", "same").unwrap();
        assert_ne!(a.iv, b.iv);
        assert_ne!(a.ciphertext, b.ciphertext);
    }

    #[test]
    fn non_utf8_plaintext_is_reported() {
        let key = SecretStorageKey::new(Key32::new([5; 32]));
        let enc = key.encrypt_bytes("n", &[0xff, 0xfe], [0; 16]).unwrap();
        assert!(matches!(
            key.decrypt("n", &enc),
            Err(SecretStorageError::NotUtf8)
        ));
    }

    #[test]
    fn backup_secret_forms() {
        let want = "m6aUyOVn/V+otNaBIqUZlwZPP8d0mPJqBBh3NnU5R74";
        for text in [want.to_string(), format!("{want}="), format!(" {want}\n")] {
            let k = backup_key_from_secret(&text).unwrap();
            assert_eq!(&*k.to_base64(), want);
        }
        for bad in ["", "AAAA", "not base64 at all!", &format!("{want}AAAA")] {
            let e = backup_key_from_secret(bad).unwrap_err();
            assert!(
                matches!(e, SecretStorageError::InvalidBackupSecret),
                "{bad}"
            );
            assert!(!e.to_string().contains(want));
        }
    }

    #[test]
    fn key_ids_are_random_alphanumeric() {
        let a = new_key_id().unwrap();
        let b = new_key_id().unwrap();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
        // Every character of the alphabet can appear.
        let many: String = (0..40).map(|_| new_key_id().unwrap()).collect();
        for &c in ALPHANUMERIC.iter() {
            assert!(many.as_bytes().contains(&c), "{}", char::from(c));
        }
    }

    #[test]
    fn unknown_fields_are_kept() {
        let v = serde_json::json!({
            "algorithm": ALGORITHM,
            "name": "n",
            "passphrase": {"algorithm": "m.pbkdf2", "salt": "s", "iterations": 5, "org.x": 1},
            "iv": "AAAAAAAAAAAAAAAAAAAAAA==",
            "mac": "x",
            "org.example.flag": true
        });
        let d: KeyDescription = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(d.passphrase.as_ref().unwrap().bits, None);
        assert_eq!(serde_json::to_value(&d).unwrap(), v);
    }

    #[test]
    fn debug_is_redacted() {
        let key = SecretStorageKey::new(Key32::new([0xab; 32]));
        assert_eq!(format!("{key:?}"), "SecretStorageKey(<redacted>)");
    }
}
