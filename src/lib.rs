//! mxkeys: keep Matrix end-to-end-encryption room keys safe.
//!
//! The library holds every concern of the tool, one module each; the `mxkeys` binary is a thin
//! command-line layer over it and is the only place that touches the terminal, the environment
//! or process exit codes.
//!
//! | module | concern |
//! |---|---|
//! | [`export`] | the key-export file ("MEGOLM SESSION DATA"): armor, cipher, streaming JSON |
//! | [`session`] | the exported Megolm session model, validation and the merge rule |
//! | [`store`] | the local key store (the device): SQLite, sealed at rest |
//! | [`kdf`] | PBKDF2-HMAC-SHA512, shared by export files, the store and secret storage |
//! | [`recovery_key`] | the recovery-key text form of a 32-byte key (base58, prefix, parity) |
//! | [`backup`] | server-side key backup crypto (`m.megolm_backup.v1`), `auth_data` trust |
//! | [`secret_storage`] | secret storage (`m.secret_storage.v1.aes-hmac-sha2`): key checks, secrets |
//! | [`recovery`] | which secret the user gave (Security Key/Phrase, backup key/passphrase) and the backup key it unlocks |
//! | [`sync`] | comparing local and server copies, the spec's order, upload batches |
//! | [`client`] | the homeserver client: login, backup versions and keys, account data, retries |
//! | [`secret`] | secret newtypes that redact `Debug` and zeroize on drop |
//! | [`passphrase_strength`] | how guessable a new passphrase is (zxcvbn, Element's rule) |
//! | [`fs`] | atomic, mode-0600 file output |
//! | [`progress`] | progress and cancellation hooks for long work |
//! | [`room`] | room events: saved `/messages` responses, Megolm decryption of `m.room.encrypted`, encrypted attachments |
//! | [`history`] | the history check: one class per encrypted event, per-room and per-session report; the history export |
#![forbid(unsafe_code)]

pub mod backup;
pub mod client;
pub mod client_store;
#[cfg(feature = "device")]
pub mod device;
pub mod error;
pub mod export;
pub mod fs;
pub mod history;
pub mod kdf;
pub mod passphrase_strength;
pub mod progress;
pub mod recovery;
pub mod recovery_key;
pub mod room;
pub mod secret;
pub mod secret_storage;
pub mod session;
pub mod store;
pub mod sync;

pub use error::{Error, ErrorKind, Result};
