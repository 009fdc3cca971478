//! The binary layer of a key-export file: header fields, PBKDF2-SHA512 key derivation,
//! AES-256-CTR with a 64-bit counter, and HMAC-SHA256 over everything before the tag.
//!
//! Works on bytes only; it knows nothing of base64 or JSON.

use aes::Aes256;
use ctr::cipher::{KeyIvInit, StreamCipher};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::ExportFormatError;
use crate::kdf::pbkdf2_sha512;
use crate::secret::Passphrase;

/// The only version of the format.
pub const VERSION: u8 = 1;
/// version (1) + salt (16) + IV (16) + rounds (4).
pub const HEADER_LEN: usize = 37;
/// HMAC-SHA256 tag at the end.
pub const MAC_LEN: usize = 32;
/// The smallest valid file: header and tag around an empty ciphertext.
pub const MIN_LEN: u64 = (HEADER_LEN + MAC_LEN) as u64;
/// Element's default.
pub const DEFAULT_ROUNDS: u32 = 500_000;
/// The spec asks for at least this many rounds; fewer gets a warning.
pub const RECOMMENDED_MIN_ROUNDS: u32 = 100_000;
/// Files asking for more rounds than this are refused unless the caller raises the cap.
pub const DEFAULT_MAX_ROUNDS: u32 = 10_000_000;

/// AES-256-CTR where only the low 64 bits of the IV count, as WebCrypto's `length: 64`
/// (Element). Identical to a 128-bit counter unless the low half wraps.
pub type Aes256Ctr64 = ctr::Ctr64BE<Aes256>;
type HmacSha256 = Hmac<Sha256>;

/// The fields before the ciphertext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Format version (must be 1).
    pub version: u8,
    /// PBKDF2 salt.
    pub salt: [u8; 16],
    /// AES-CTR initial counter block.
    pub iv: [u8; 16],
    /// PBKDF2 iterations.
    pub rounds: u32,
}

impl Header {
    /// Parse the first 37 bytes. Does not validate; see [`Header::validate`].
    pub fn parse(b: &[u8; HEADER_LEN]) -> Header {
        let mut salt = [0u8; 16];
        let mut iv = [0u8; 16];
        salt.copy_from_slice(&b[1..17]);
        iv.copy_from_slice(&b[17..33]);
        Header {
            version: b[0],
            salt,
            iv,
            rounds: u32::from_be_bytes([b[33], b[34], b[35], b[36]]),
        }
    }

    /// Serialise to the 37 header bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0] = self.version;
        b[1..17].copy_from_slice(&self.salt);
        b[17..33].copy_from_slice(&self.iv);
        b[33..37].copy_from_slice(&self.rounds.to_be_bytes());
        b
    }

    /// A header for a new file: random salt and IV, with bit 63 of the IV cleared so the
    /// 64-bit counter can never wrap (Element's and matrix-rust-sdk's rule).
    pub fn random(rounds: u32) -> std::io::Result<Header> {
        let mut salt = [0u8; 16];
        let mut iv = [0u8; 16];
        crate::fs::fill_random(&mut salt)?;
        crate::fs::fill_random(&mut iv)?;
        iv[8] &= 0x7f;
        Ok(Header {
            version: VERSION,
            salt,
            iv,
            rounds,
        })
    }

    /// Refuse what no honest writer produces, and work above `max_rounds`, before any KDF.
    pub fn validate(&self, max_rounds: u32) -> Result<(), ExportFormatError> {
        if self.version != VERSION {
            return Err(ExportFormatError::UnsupportedVersion(self.version));
        }
        if self.rounds == 0 {
            return Err(ExportFormatError::ZeroRounds);
        }
        if self.rounds > max_rounds {
            return Err(ExportFormatError::TooManyRounds {
                rounds: self.rounds,
                max: max_rounds,
            });
        }
        Ok(())
    }
}

/// The AES and HMAC keys derived from a passphrase.
pub struct ExportKeys {
    aes: Zeroizing<[u8; 32]>,
    mac: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for ExportKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExportKeys(<redacted>)")
    }
}

impl ExportKeys {
    /// PBKDF2-HMAC-SHA512(passphrase, salt, rounds) -> 32 bytes AES key || 32 bytes HMAC key.
    pub fn derive(passphrase: &Passphrase, header: &Header) -> ExportKeys {
        let k = pbkdf2_sha512::<64>(passphrase.expose_secret(), &header.salt, header.rounds);
        let mut aes = Zeroizing::new([0u8; 32]);
        let mut mac = Zeroizing::new([0u8; 32]);
        aes.copy_from_slice(&k[..32]);
        mac.copy_from_slice(&k[32..]);
        ExportKeys { aes, mac }
    }

    /// A fresh HMAC state.
    pub fn mac(&self) -> HmacState {
        HmacState(hmac_sha256(&self.mac[..]))
    }

    /// A fresh CTR keystream positioned at the start of the ciphertext.
    pub fn cipher(&self, iv: &[u8; 16]) -> CtrState {
        CtrState(Aes256Ctr64::new((&*self.aes).into(), iv.into()))
    }
}

/// HMAC-SHA256 keyed with a key of at most 64 bytes (one block).
///
/// HMAC zero-pads short keys to the block size, so padding here gives the very same MAC while
/// using the infallible fixed-size constructor.
pub(crate) fn hmac_sha256(key: &[u8]) -> HmacSha256 {
    let mut block = Zeroizing::new([0u8; 64]);
    let n = key.len().min(64);
    block[..n].copy_from_slice(&key[..n]);
    HmacSha256::new((&*block).into())
}

/// Running HMAC-SHA256 over the file's bytes.
pub struct HmacState(HmacSha256);

impl HmacState {
    /// Feed bytes.
    pub fn update(&mut self, b: &[u8]) {
        self.0.update(b);
    }
    /// Compare with the file's tag in constant time.
    pub fn verify(self, tag: &[u8]) -> bool {
        self.0.verify_slice(tag).is_ok()
    }
    /// The tag, for writing.
    pub fn finalize(self) -> [u8; MAC_LEN] {
        self.0.finalize().into_bytes().into()
    }
}

/// Running AES-256-CTR (64-bit counter) keystream.
pub struct CtrState(Aes256Ctr64);

impl CtrState {
    /// Encrypt or decrypt in place.
    pub fn apply(&mut self, buf: &mut [u8]) -> Result<(), ExportFormatError> {
        self.0
            .try_apply_keystream(buf)
            .map_err(|_| ExportFormatError::CounterExhausted)
    }
}

/// Encrypt `plaintext` into the complete binary form (header, ciphertext, tag). For small
/// inputs and tests; files are written by the streaming [`super::ExportWriter`].
pub fn seal(
    keys: &ExportKeys,
    header: &Header,
    plaintext: &[u8],
) -> Result<Vec<u8>, ExportFormatError> {
    let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + MAC_LEN);
    out.extend_from_slice(&header.to_bytes());
    let start = out.len();
    out.extend_from_slice(plaintext);
    keys.cipher(&header.iv).apply(&mut out[start..])?;
    let mut mac = keys.mac();
    mac.update(&out);
    out.extend_from_slice(&mac.finalize());
    Ok(out)
}

/// Verify and decrypt the complete binary form held in memory.
pub fn open(
    passphrase: &Passphrase,
    data: &[u8],
    max_rounds: u32,
) -> Result<Zeroizing<Vec<u8>>, crate::Error> {
    if (data.len() as u64) < MIN_LEN {
        return Err(ExportFormatError::TooShort(data.len() as u64).into());
    }
    let mut hb = [0u8; HEADER_LEN];
    hb.copy_from_slice(&data[..HEADER_LEN]);
    let header = Header::parse(&hb);
    header.validate(max_rounds)?;
    let keys = ExportKeys::derive(passphrase, &header);
    let (body, tag) = data.split_at(data.len() - MAC_LEN);
    let mut mac = keys.mac();
    mac.update(body);
    if !mac.verify(tag) {
        return Err(crate::Error::WrongPassphraseOrModified);
    }
    let mut pt = Zeroizing::new(body[HEADER_LEN..].to_vec());
    keys.cipher(&header.iv).apply(&mut pt)?;
    Ok(pt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn b64(s: &str) -> Vec<u8> {
        let lenient = base64::engine::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new()
                .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
                .with_decode_allow_trailing_bits(true),
        );
        lenient.decode(s).unwrap()
    }

    /// Element's four published vectors (matrix-react-sdk MegolmExportEncryption-test.ts).
    #[test]
    fn element_vectors() {
        let vectors: [(&str, &str, Vec<u8>); 4] = [
            (
                "password",
                "AXNhbHRzYWx0c2FsdHNhbHSIiIiIiIiIiIiIiIiIiIiIAAAACmIRUW2OjZ3L2l6j9h0lHlV3M2dxcissyYBxjsfsAndErh065A8=",
                b"plain".to_vec(),
            ),
            (
                "betterpassword",
                "AW1vcmVzYWx0bW9yZXNhbHT//////////wAAAAAAAAAAAAAD6KyBpe1Niv5M5NPm4ZATsJo5nghkKYu63a0YQ5DRhUWEKk7CcMkrKnAUiZny",
                b"Hello, World".to_vec(),
            ),
            (
                "SWORDFISH",
                "AXllc3NhbHR5Z29vZG5lc3P//////////wAAAAAAAAAAAAAD6OIW+Je7gwvjd4kYrb+49gKCfExwMgJBMD4mrhLkmgAngwR1pHjbWXaoGybtiAYr0moQ93GrBQsCzPbvl82rZhaXO3iH5uHo/RCEpOqpPgg29363BGR+/Ripq/VCLKGNbw==",
                b"alphanumerically".repeat(4),
            ),
            (
                &"password".repeat(32),
                "Af//////////////////////////////////////////AAAD6IAZJy7IQ7Y0idqSw/bmpngEEVVhgsH+8ptgqxw6ZVWQnohr8JsuwH9SwGtiebZuBu5smPCO+RFVWH2cQYslZijXv/BEH/txvhUrrtCdbWnSXS9oymiqwUIGs08sXI33ZA==",
                b"alphanumerically".repeat(4),
            ),
        ];
        for (pass, body, plain) in vectors {
            let data = b64(body);
            let p = Passphrase::from_string(pass.to_string());
            let pt = open(&p, &data, DEFAULT_MAX_ROUNDS).unwrap();
            assert_eq!(&pt[..], &plain[..], "decrypt {pass}");
            // and our encryption with the same header reproduces the vector byte for byte
            let mut hb = [0u8; HEADER_LEN];
            hb.copy_from_slice(&data[..HEADER_LEN]);
            let header = Header::parse(&hb);
            let keys = ExportKeys::derive(&p, &header);
            assert_eq!(
                seal(&keys, &header, &plain).unwrap(),
                data,
                "encrypt {pass}"
            );
        }
    }

    /// Vector 4 (IV all 0xFF) only decrypts with a 64-bit counter.
    #[test]
    fn vector_four_needs_64_bit_counter() {
        let data = b64(
            "Af//////////////////////////////////////////AAAD6IAZJy7IQ7Y0idqSw/bmpngEEVVhgsH+8ptgqxw6ZVWQnohr8JsuwH9SwGtiebZuBu5smPCO+RFVWH2cQYslZijXv/BEH/txvhUrrtCdbWnSXS9oymiqwUIGs08sXI33ZA==",
        );
        let p = Passphrase::from_string("password".repeat(32));
        let mut hb = [0u8; HEADER_LEN];
        hb.copy_from_slice(&data[..HEADER_LEN]);
        let header = Header::parse(&hb);
        let keys = ExportKeys::derive(&p, &header);
        let mut ct = data[HEADER_LEN..data.len() - MAC_LEN].to_vec();
        let mut c128 = ctr::Ctr128BE::<Aes256>::new((&*keys.aes).into(), (&header.iv).into());
        c128.apply_keystream(&mut ct);
        assert_ne!(ct, b"alphanumerically".repeat(4));
        assert_eq!(&ct[..16], b"alphanumerically", "block 0 agrees");
    }

    #[test]
    fn header_validation() {
        let mut h = Header::random(1).unwrap();
        assert_eq!(h.iv[8] & 0x80, 0);
        assert!(h.validate(10).is_ok());
        h.rounds = 0;
        assert!(matches!(h.validate(10), Err(ExportFormatError::ZeroRounds)));
        h.rounds = 11;
        assert!(matches!(
            h.validate(10),
            Err(ExportFormatError::TooManyRounds { .. })
        ));
        h.rounds = 1;
        h.version = 2;
        assert!(matches!(
            h.validate(10),
            Err(ExportFormatError::UnsupportedVersion(2))
        ));
    }

    #[test]
    fn too_short() {
        // Element's "too short" test body: 67 bytes.
        let data = b64(
            "AXNhbHRzYWx0c2FsdHNhbHSIiIiIiIiIiIiIiIiIiIiIAAAACmIRUW2OjZ3L2l6j9h0lHlV3M2dxcissyYBxjsfsAn",
        );
        let p = Passphrase::from_string("password".into());
        let e = open(&p, &data, DEFAULT_MAX_ROUNDS).unwrap_err();
        assert!(e.to_string().contains("too short"), "{e}");
    }
}

/// Helpers shared by tests in this crate.
#[cfg(test)]
pub(crate) mod tests_support {
    use base64::Engine;
    pub(crate) fn b64decode(s: &str) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD.decode(s).unwrap()
    }
    pub(crate) fn b64encode(b: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(b)
    }
}
