//! Test-side cryptography: Megolm sessions made with vodozemac, and an implementation of the
//! backup cipher (`m.megolm_backup.v1.curve25519-aes-sha2`) written here from the primitives
//! (x25519-dalek, hkdf, hmac, cbc/aes) following the spec, independent of `mxkeys::backup`.

use aes::Aes256;
use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockModeDecrypt, KeyIvInit};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use vodozemac::megolm::{GroupSession, InboundGroupSession, SessionConfig};

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

/// A Megolm session made here, exportable at any index.
pub struct GenSession {
    /// Room.
    pub room_id: String,
    /// Session id.
    pub session_id: String,
    /// Curve25519 key of the "sender".
    pub sender_key: String,
    /// Ed25519 key the "sender" claims.
    pub ed25519: String,
    outbound: GroupSession,
    inbound: InboundGroupSession,
}

impl GenSession {
    /// A fresh session in `room_id`.
    pub fn new(room_id: &str) -> GenSession {
        let outbound = GroupSession::new(SessionConfig::version_1());
        let inbound = InboundGroupSession::new(&outbound.session_key(), SessionConfig::version_1());
        GenSession {
            room_id: room_id.to_string(),
            session_id: outbound.session_id(),
            sender_key:
                vodozemac::Curve25519PublicKey::from(&vodozemac::Curve25519SecretKey::new())
                    .to_base64(),
            ed25519: vodozemac::Ed25519SecretKey::new().public_key().to_base64(),
            outbound,
            inbound,
        }
    }

    /// The session key exported at `index` (unpadded base64).
    pub fn key_at(&mut self, index: u32) -> String {
        let k = self.inbound.export_at(index).expect("exportable index");
        k.to_base64()
    }

    /// The export-file entry of this session at `index`, with this forwarding chain.
    pub fn export_entry(&mut self, index: u32, chain: &[&str]) -> Value {
        json!({
            "algorithm": "m.megolm.v1.aes-sha2",
            "room_id": self.room_id,
            "sender_key": self.sender_key,
            "session_id": self.session_id,
            "session_key": self.key_at(index),
            "sender_claimed_keys": {"ed25519": self.ed25519},
            "forwarding_curve25519_key_chain": chain,
        })
    }

    /// The session as `mxkeys::session::ExportedSession` at `index`.
    pub fn exported(&mut self, index: u32, chain: &[&str]) -> mxkeys::session::ExportedSession {
        let e = self.export_entry(index, chain);
        mxkeys::session::ExportedSession::from_json(&serde_json::to_vec(&e).unwrap())
            .unwrap_or_else(|e| panic!("generated session does not parse: {e:?}"))
    }

    /// Encrypt a message (advances the outbound ratchet).
    pub fn encrypt(&mut self, plaintext: &str) -> String {
        self.outbound.encrypt(plaintext).to_base64()
    }

    /// `KeyBackupData` (JSON) for this session at `index`, encrypted to `public_key` with
    /// `mxkeys::backup::encrypt_session`, with this `forwarded_count`.
    pub fn backup_data(
        &mut self,
        public_key: &mxkeys::backup::BackupPublicKey,
        index: u32,
        forwarded_count: u32,
    ) -> Value {
        let s = self.exported(index, &[]);
        let d = mxkeys::backup::encrypt_session(public_key, &s, forwarded_count, false).unwrap();
        assert_eq!(d.first_message_index, index);
        serde_json::to_value(&d).unwrap()
    }
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
