//! Exit codes, and the one place that maps typed errors to them (never by matching strings).

use mxkeys::export::ExportFormatError;
use mxkeys::store::StoreError;
use mxkeys::{Error, ErrorKind};

/// The documented exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Code {
    /// Success.
    Success = 0,
    /// Other failure.
    Failure = 1,
    /// Usage error.
    Usage = 2,
    /// Some sessions rejected, the rest done.
    Partial = 3,
    /// File, store, sessions or backup not found.
    NotFound = 10,
    /// Store busy or conflicting change.
    Busy = 11,
    /// Wrong passphrase or key.
    WrongSecret = 12,
    /// Invalid or damaged input.
    Invalid = 13,
    /// Homeserver rejected the credentials.
    CredentialsRejected = 14,
    /// Homeserver unreachable or failing.
    Unreachable = 15,
    /// Backup not trusted.
    Untrusted = 16,
    /// Interrupted.
    Interrupted = 130,
}

impl From<Code> for std::process::ExitCode {
    fn from(c: Code) -> Self {
        std::process::ExitCode::from(c as u8)
    }
}

/// An error raised by the command-line layer itself, with its exit code and hint.
#[derive(Debug)]
pub struct CliError {
    /// Exit code.
    pub code: Code,
    /// One-line message.
    pub message: String,
    /// What to do.
    pub hint: Option<String>,
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

impl CliError {
    /// A usage error (exit 2).
    pub fn usage(message: impl Into<String>, hint: impl Into<String>) -> anyhow::Error {
        CliError::new(Code::Usage, message, hint)
    }

    /// An error with any code.
    pub fn new(code: Code, message: impl Into<String>, hint: impl Into<String>) -> anyhow::Error {
        let hint = hint.into();
        anyhow::Error::new(CliError {
            code,
            message: message.into(),
            hint: (!hint.is_empty()).then_some(hint),
        })
    }
}

fn code_of_kind(k: ErrorKind) -> Code {
    match k {
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::Busy => Code::Busy,
        ErrorKind::WrongSecret => Code::WrongSecret,
        ErrorKind::InvalidInput => Code::Invalid,
        ErrorKind::Usage => Code::Usage,
        ErrorKind::Interrupted => Code::Interrupted,
        ErrorKind::Other => Code::Failure,
    }
}

fn hint_for_export(e: &ExportFormatError) -> &'static str {
    match e {
        ExportFormatError::TooManyRounds { .. } => {
            "if you trust this file, raise the limit with --max-rounds N (decrypting will be slow)"
        }
        ExportFormatError::MissingHeader { .. } => {
            "a key export starts with the line -----BEGIN MEGOLM SESSION DATA-----; is this the right file?"
        }
        ExportFormatError::MissingFooter | ExportFormatError::TruncatedBase64 => {
            "the file is incomplete; copy it again from where it was saved, or export the keys again"
        }
        ExportFormatError::DuplicateHeader { .. } => {
            "split the file into one export per header and import them one by one"
        }
        ExportFormatError::ChangedWhileReading => {
            "something modified the file while mxkeys read it; run the command again"
        }
        _ => "the file is damaged; export the keys again from the client that made it",
    }
}

fn hint_for_store(e: &StoreError) -> &'static str {
    match e {
        StoreError::NotFound(_) => {
            "create a store with `mxkeys init`, or point --store (or MXKEYS_STORE) at an existing one"
        }
        StoreError::AlreadyExists(_) => {
            "the store is ready to use; to start afresh, choose another --store directory"
        }
        StoreError::Busy => "wait for the other mxkeys process to finish, then run this again",
        StoreError::WrongPassphrase => {
            "give the passphrase chosen at `mxkeys init` (--store-passphrase-file, --store-passphrase-fd, MXKEYS_STORE_PASSPHRASE)"
        }
        StoreError::Corrupt(_) => {
            "the store is damaged; restore it from a copy, or create a new one and import your export files"
        }
        StoreError::NewerSchema(_) => "use the newer mxkeys that wrote this store",
        StoreError::Sqlite(_) | StoreError::Io(..) => {
            "check the store directory's permissions and free space"
        }
    }
}

/// The exit code and hint for an error.
pub fn classify(err: &anyhow::Error) -> (Code, Option<String>) {
    for cause in err.chain() {
        if let Some(c) = cause.downcast_ref::<CliError>() {
            return (c.code, c.hint.clone());
        }
        if let Some(e) = cause.downcast_ref::<Error>() {
            let hint: Option<String> = match e {
                Error::InvalidExport(f) => Some(hint_for_export(f).into()),
                Error::WrongPassphraseOrModified => Some(
                    "check the passphrase (it is case-sensitive; spaces count); if it is right, the file was damaged or altered"
                        .into(),
                ),
                Error::NotAKeyExport(_) => Some(
                    "the file was not written by a Matrix client's key export; `mxkeys decrypt --raw FILE -o OUT` shows what it holds"
                        .into(),
                ),
                Error::NotASessionArray(_) => Some(
                    "give a JSON array of exported sessions, as `mxkeys decrypt` writes".into(),
                ),
                Error::Session(_) => Some("the session is malformed; export it again".into()),
                Error::Store(s) => Some(hint_for_store(s).into()),
                Error::OutputExists { .. } => {
                    Some("choose another -o path, or add --force to replace the file".into())
                }
                Error::FileNotFound { .. } => Some("check the file name and path".into()),
                Error::EmptyPassphrase => Some(
                    "choose a passphrase, or pass --insecure-empty-passphrase if you really want none".into(),
                ),
                Error::Interrupted => None,
                Error::Io { .. } => Some("check the path, permissions and free space".into()),
            };
            return (code_of_kind(e.kind()), hint);
        }
        if let Some(s) = cause.downcast_ref::<StoreError>() {
            return (code_of_kind(s.kind()), Some(hint_for_store(s).into()));
        }
    }
    (Code::Failure, None)
}
