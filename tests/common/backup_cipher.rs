//! The backup cipher (`m.megolm_backup.v1.curve25519-aes-sha2`) written here from the
//! primitives (x25519-dalek, hkdf, hmac, cbc/aes) following the spec, independent of
//! `mxkeys::backup`; and the base64 helpers the tests share.

use aes::Aes256;
use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockModeDecrypt, KeyIvInit};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

/// Base64 that accepts padded and unpadded input.
pub fn b64d(s: &str) -> Vec<u8> {
    GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    )
    .decode(s)
    .unwrap_or_else(|e| panic!("not base64 ({e}): {s}"))
}

/// Unpadded base64.
pub fn b64e(b: &[u8]) -> String {
    STANDARD_NO_PAD.encode(b)
}

/// Decrypt one `session_data` with the backup's private key, the spec's way, done here from
/// the primitives: X25519 with the ephemeral key; HKDF-SHA-256 (zero salt, empty info, 80
/// bytes: AES key, MAC key, IV); the 8-byte HMAC-SHA-256 of the empty string must equal `mac`;
/// AES-256-CBC with PKCS#7. Returns the plaintext JSON.
pub fn independent_decrypt(private_key: &[u8; 32], session_data: &Value) -> Value {
    let eph: [u8; 32] = b64d(session_data["ephemeral"].as_str().unwrap())
        .try_into()
        .expect("ephemeral is 32 bytes");
    let mac = b64d(session_data["mac"].as_str().unwrap());
    let mut ct = b64d(session_data["ciphertext"].as_str().unwrap());
    assert_eq!(mac.len(), 8, "the MAC is 8 bytes");

    let shared = x25519_dalek::StaticSecret::from(*private_key)
        .diffie_hellman(&x25519_dalek::PublicKey::from(eph));
    let mut okm = [0u8; 80];
    hkdf::Hkdf::<Sha256>::new(Some(&[0u8; 32]), shared.as_bytes())
        .expand(b"", &mut okm)
        .unwrap();
    let (aes_key, rest) = okm.split_at(32);
    let (mac_key, iv) = rest.split_at(32);

    let mut h = <Hmac<Sha256> as KeyInit>::new_from_slice(mac_key).unwrap();
    h.update(b"");
    let full = h.finalize().into_bytes();
    assert_eq!(
        &full[..8],
        &mac[..],
        "MAC of the empty string does not match"
    );

    let aes_key: [u8; 32] = aes_key.try_into().unwrap();
    let iv: [u8; 16] = iv.try_into().unwrap();
    let pt = cbc::Decryptor::<Aes256>::new((&aes_key).into(), (&iv).into())
        .decrypt_padded::<Pkcs7>(&mut ct[..])
        .expect("PKCS#7 padding");
    serde_json::from_slice(pt).expect("the plaintext is JSON")
}
