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
//! | [`secret`] | secret newtypes that redact `Debug` and zeroize on drop |
//! | [`fs`] | atomic, mode-0600 file output |
//! | [`progress`] | progress and cancellation hooks for long work |
#![forbid(unsafe_code)]

pub mod error;
pub mod export;
pub mod fs;
pub mod kdf;
pub mod progress;
pub mod secret;
pub mod session;
pub mod store;

pub use error::{Error, ErrorKind, Result};
