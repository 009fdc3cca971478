//! The library's top-level error type.
//!
//! Each concern has its own precise error enum; [`Error`] wraps them so that a caller can ask
//! one question, [`Error::kind`], to decide what to tell the user and which exit code to use.

use std::io;

use crate::backup::BackupError;
use crate::export::ExportFormatError;
use crate::recovery_key::RecoveryKeyError;
use crate::secret_storage::SecretStorageError;
use crate::session::SessionError;
use crate::store::StoreError;

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Broad classes of failure, stable for callers (the CLI maps them to exit codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A file, store or object does not exist.
    NotFound,
    /// The store is locked by another process, or a conflicting change happened.
    Busy,
    /// A passphrase or key did not authenticate (MAC mismatch, key check failed).
    WrongSecret,
    /// The input is damaged, hostile or not of the expected kind.
    InvalidInput,
    /// The caller asked for something that is not allowed (e.g. refusing to overwrite).
    Usage,
    /// The operation was cancelled (Ctrl-C).
    Interrupted,
    /// The homeserver refused the credentials (401, bad password).
    CredentialsRejected,
    /// The homeserver is unreachable, or still failing after retries.
    Unreachable,
    /// The backup on the server is not trusted.
    Untrusted,
    /// Anything else: I/O failures, database failures.
    Other,
}

/// Every error the library returns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The export file is structurally damaged, or asks for hostile work.
    #[error("invalid export file: {0}")]
    InvalidExport(#[from] ExportFormatError),

    /// The MAC of an export file did not verify.
    #[error("wrong passphrase, or the file was modified")]
    WrongPassphraseOrModified,

    /// The MAC verified but the plaintext is not a JSON array of sessions.
    #[error("the file decrypted but its content is not a key export: {0}")]
    NotAKeyExport(String),

    /// Plaintext JSON given to `encrypt` is not a JSON array.
    #[error("the input is not a JSON array of sessions: {0}")]
    NotASessionArray(String),

    /// One session failed validation (used where a single session is handled on its own).
    #[error("invalid session: {0}")]
    Session(#[from] SessionError),

    /// The key store failed.
    #[error(transparent)]
    Store(#[from] StoreError),

    /// A recovery key could not be read.
    #[error(transparent)]
    RecoveryKey(#[from] RecoveryKeyError),

    /// Key backup data or keys could not be used.
    #[error(transparent)]
    Backup(#[from] BackupError),

    /// Secret storage data or keys could not be used.
    #[error(transparent)]
    SecretStorage(#[from] SecretStorageError),

    /// The user's secret did not unlock the backup.
    #[error(transparent)]
    Recovery(#[from] crate::recovery::RecoveryError),

    /// The homeserver failed.
    #[error(transparent)]
    Client(#[from] crate::client::ClientError),

    /// An encrypted attachment could not be used.
    #[error(transparent)]
    Attachment(#[from] crate::room::attachment::AttachmentError),

    /// Another client's store could not be read.
    #[error(transparent)]
    ClientStore(#[from] crate::client_store::ClientStoreError),

    /// mxkeys as a Matrix device.
    #[cfg(feature = "device")]
    #[error(transparent)]
    Device(#[from] crate::device::DeviceError),

    /// Refusing to replace an existing output file.
    #[error("{path} already exists")]
    OutputExists {
        /// The path that exists.
        path: String,
    },

    /// The output path is a device, FIFO, socket or directory: it cannot be replaced
    /// atomically, and replacing it would destroy it (`-o /dev/null --force` once turned
    /// `/dev/null` into a file of keys).
    #[error("{path} is not a regular file")]
    OutputNotAFile {
        /// The path.
        path: String,
    },

    /// A file that should exist does not.
    #[error("{path}: no such file")]
    FileNotFound {
        /// The missing path.
        path: String,
    },

    /// An empty passphrase was given for a new file without the explicit opt-in.
    #[error("refusing to encrypt with an empty passphrase")]
    EmptyPassphrase,

    /// Cancelled by the user.
    #[error("interrupted")]
    Interrupted,

    /// An I/O error, with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, e.g. "reading keys.txt".
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// Wrap an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// The broad class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidExport(_)
            | Error::NotAKeyExport(_)
            | Error::NotASessionArray(_)
            | Error::Session(_)
            | Error::Attachment(_) => ErrorKind::InvalidInput,
            Error::WrongPassphraseOrModified => ErrorKind::WrongSecret,
            Error::Store(e) => e.kind(),
            Error::RecoveryKey(e) => e.kind(),
            Error::Backup(e) => e.kind(),
            Error::SecretStorage(e) => e.kind(),
            Error::OutputExists { .. } | Error::OutputNotAFile { .. } | Error::EmptyPassphrase => {
                ErrorKind::Usage
            }
            Error::FileNotFound { .. } => ErrorKind::NotFound,
            Error::Client(e) => e.kind(),
            Error::ClientStore(e) => e.kind(),
            #[cfg(feature = "device")]
            Error::Device(e) => e.kind(),
            Error::Recovery(e) => e.kind(),
            Error::Interrupted => ErrorKind::Interrupted,
            Error::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                ErrorKind::NotFound
            }
            Error::Io { .. } => ErrorKind::Other,
        }
    }
}
