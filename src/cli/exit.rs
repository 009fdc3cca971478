//! Exit codes, and the one place that maps typed errors to them (never by matching strings).

use mxkeys::client_store::ClientStoreError;
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
    #[allow(
        clippy::new_ret_no_self,
        reason = "callers want the anyhow::Error to return"
    )]
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
        ErrorKind::CredentialsRejected => Code::CredentialsRejected,
        ErrorKind::Unreachable => Code::Unreachable,
        ErrorKind::Untrusted => Code::Untrusted,
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

fn hint_for_client_store(e: &ClientStoreError) -> &'static str {
    match e {
        ClientStoreError::NotFound(_) => {
            "give the client's store: nio's store directory or its {user}_{device}.db, pantalaimon's data directory or pan.db, a mautrix-go bridge's or gomuks' SQLite database"
        }
        ClientStoreError::UnknownKind { .. } => {
            "mxkeys reads matrix-nio, pantalaimon, matrix-sdk and mautrix-go (SQLite) stores; give the database file itself, or force the kind with --client-store-kind"
        }
        ClientStoreError::Unreadable { .. } => {
            "the file is not a database, or a truncated or damaged copy; copy the store again from the client's machine (stop the client first)"
        }
        ClientStoreError::WhichAccount { .. } => {
            "choose the account with --client-store-user @user:server (or @user:server/DEVICE)"
        }
        ClientStoreError::NoSuchAccount { .. } => {
            "`mxkeys inspect --client-store PATH` lists the accounts the store holds"
        }
        ClientStoreError::WrongPickleKey { .. } => {
            "give the client's pickle key with --client-store-passphrase-file (nio's default, DEFAULT_KEY, is tried when none is given; a mautrix bridge's is its configured pickle key)"
        }
        ClientStoreError::WrongPassphrase { .. } => {
            "give the passphrase the client sealed its store with (--client-store-passphrase-file, --client-store-passphrase-fd, MXKEYS_CLIENT_STORE_PASSPHRASE)"
        }
        ClientStoreError::NewerSchema { .. } => {
            "a newer client wrote this store; use a newer mxkeys, or export the keys from the client itself"
        }
        ClientStoreError::Damaged { .. } => {
            "the database is damaged or truncated; copy it again from the client's machine (stop the client first)"
        }
        ClientStoreError::Copy { .. } => {
            "mxkeys reads a copy of the store in the temporary directory: check its free space, and that the store is readable"
        }
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

fn hint_for_backup(e: &mxkeys::backup::BackupError) -> &'static str {
    use mxkeys::backup::BackupError as B;
    match e {
        B::WrongKey => {
            "the key does not belong to this backup; give the recovery key, Security Key or Security Phrase of the current backup"
        }
        _ => "the backup data is damaged or was written by a buggy client",
    }
}

fn hint_for_client(e: &mxkeys::client::ClientError) -> &'static str {
    use mxkeys::client::ClientError as C;
    match e {
        C::Unreachable { .. } => {
            "check the homeserver URL and your network, then try again later (--timeout and --retry-for set how long mxkeys waits)"
        }
        C::Unauthorized { .. } => "log in again with `mxkeys login`, or give a valid access token",
        C::NotFound { .. } => "check the backup version with `mxkeys backup info`",
        C::WrongVersion { .. } => {
            "another client made a new backup; run `mxkeys backup info` and retry against the current version"
        }
        // The hint names the time: see `client_hint`.
        C::RateLimited { .. } => "wait as long as the server asks, then run the command again",
        C::Server { .. } => "the homeserver is failing; try again later or ask its administrator",
        C::Rejected { .. } => "the homeserver refused the request; run with -v for details",
        C::BadResponse { .. } => {
            "the homeserver answered with something that is not the Matrix API; check the URL, or ask its administrator"
        }
        C::BadUrl(_) => "give the homeserver as https://host[:port]",
        C::Interrupted => "",
    }
}

/// The hint for a homeserver error; for a long rate limit, when to run the command again.
fn client_hint(e: &mxkeys::client::ClientError) -> String {
    match e {
        mxkeys::client::ClientError::RateLimited { seconds, .. } => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            retry_hint(*seconds, now)
        }
        other => hint_for_client(other).to_string(),
    }
}

/// "run the command again in 10 min (after 14:05 UTC)", `now` in seconds since the epoch.
fn retry_hint(seconds: u64, now: u64) -> String {
    let mins = seconds.div_ceil(60);
    let when = if seconds < 60 {
        format!("{seconds} s")
    } else if mins < 120 {
        format!("{mins} min")
    } else {
        format!("{} h", mins.div_ceil(60))
    };
    // Rounded up to the next whole minute.
    let at = (now + seconds).div_ceil(60) * 60;
    let day = if seconds >= 20 * 3600 {
        let days = at / 86_400 - now / 86_400;
        format!(", {days} day(s) from now")
    } else {
        String::new()
    };
    format!(
        "the server asks to wait; run the command again in {when} (after {:02}:{:02} UTC{day})",
        at % 86_400 / 3600,
        at % 3600 / 60
    )
}

fn hint_for_recovery(e: &mxkeys::recovery::RecoveryError) -> &'static str {
    use mxkeys::recovery::RecoveryError as R;
    match e {
        R::NoMatch { .. } => {
            "check for typos; give the Security Key or Phrase of this account, or the recovery key of the current backup (`mxkeys recovery-key check` tells which is which)"
        }
        R::StaleBackupKey { .. } => {
            "the current backup was made without updating secret storage: give that backup's own recovery key, or make a new backup with `mxkeys backup create` (it stores the new key in secret storage)"
        }
        R::NoBackupSecret { .. } => {
            "give the backup's own recovery key, or make a new backup with `mxkeys backup create`"
        }
        R::NoSecretStorage => {
            "set up secret storage in Element (Settings, Security), or use the backup's recovery key"
        }
        R::TooManyIterations { .. } => {
            "the homeserver asks for absurd work; if you trust it, raise the limit with --max-kdf-rounds N"
        }
        R::SecretStorage(_) | R::Backup(_) | R::BadAccountData(..) => {
            "the account's secret storage data is damaged; set it up again in Element"
        }
    }
}

/// The exit code and hint for an error.
fn hint_for_device(e: &mxkeys::device::DeviceError) -> String {
    use mxkeys::device::DeviceError as D;
    match e {
        D::NoDevice => "make one with `mxkeys device create` (after `mxkeys login`)".into(),
        D::Exists { .. } => {
            "see it with `mxkeys device info`; `mxkeys device delete` removes it first".into()
        }
        D::OtherLogin { .. } => {
            "the store's login changed since the device was made: log in again as that device, or `mxkeys device delete --local-only` and create a new one".into()
        }
        D::Store(s) => hint_for_store(s).into(),
        D::Client(c) => client_hint(c),
        D::Crypto(_) => "the device's own store in <store>/device failed; check free space and permissions".into(),
        D::Protocol(_) => "the homeserver or another device sent something unexpected; run again with -v for details".into(),
        D::NoCrossSigning => "set up cross-signing and secret storage in another client (Element: Settings, Security), or verify interactively with `mxkeys device verify --sas`".into(),
        D::Dehydration(_) => "the dehydration key in secret storage does not open the account's dehydrated device; the client that made it may have replaced it".into(),
        D::Interrupted => "stopped by Ctrl-C; every key received so far is kept".into(),
    }
}

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
                Error::Attachment(_) => Some(
                    "the event's encrypted file information is damaged, or the media was altered on the server"
                        .into(),
                ),
                Error::Store(s) => Some(hint_for_store(s).into()),
                Error::OutputExists { .. } => {
                    Some("choose another -o path, or add --force to replace the file".into())
                }
                Error::OutputNotAFile { .. } => Some(
                    "give -o the path of a file; to write to a device or pipe, use -o - and redirect stdout".into(),
                ),
                Error::FileNotFound { .. } => Some("check the file name and path".into()),
                Error::EmptyPassphrase => Some(
                    "choose a passphrase, or pass --insecure-empty-passphrase if you really want none".into(),
                ),
                Error::RecoveryKey(_) => Some(
                    "a recovery key is 48 characters starting with \"Es\", usually in 12 groups of 4; check for mistyped characters"
                        .into(),
                ),
                Error::Backup(b) => Some(hint_for_backup(b).into()),
                Error::SecretStorage(_) => Some(
                    "give the Security Key or Security Phrase of this account's secret storage".into(),
                ),
                Error::Client(c) => Some(client_hint(c)),
                Error::ClientStore(c) => Some(hint_for_client_store(c).into()),
                Error::Recovery(r) => Some(hint_for_recovery(r).into()),
                Error::Interrupted => Some(
                    "stopped by Ctrl-C: no partial file was kept and the store's changes were rolled back; run the command again to finish"
                        .into(),
                ),
                Error::Io { .. } => Some("check the path, permissions and free space".into()),
                Error::Device(d) => Some(hint_for_device(d)),
            };
            return (code_of_kind(e.kind()), hint);
        }
        if let Some(s) = cause.downcast_ref::<StoreError>() {
            return (code_of_kind(s.kind()), Some(hint_for_store(s).into()));
        }
        if let Some(d) = cause.downcast_ref::<mxkeys::device::DeviceError>() {
            return (code_of_kind(d.kind()), Some(hint_for_device(d)));
        }
        // The library's own error types reach here unwrapped when a command uses `?` on them
        // directly (e.g. `client.whoami()?`), not only inside `mxkeys::Error`.
        if let Some(e) = cause.downcast_ref::<mxkeys::client::ClientError>() {
            let h = client_hint(e);
            return (code_of_kind(e.kind()), (!h.is_empty()).then_some(h));
        }
        if let Some(e) = cause.downcast_ref::<mxkeys::recovery::RecoveryError>() {
            return (code_of_kind(e.kind()), Some(hint_for_recovery(e).into()));
        }
        if let Some(e) = cause.downcast_ref::<ClientStoreError>() {
            return (
                code_of_kind(e.kind()),
                Some(hint_for_client_store(e).into()),
            );
        }
        if let Some(e) = cause.downcast_ref::<mxkeys::backup::BackupError>() {
            return (code_of_kind(e.kind()), Some(hint_for_backup(e).into()));
        }
        if let Some(e) = cause.downcast_ref::<mxkeys::secret_storage::SecretStorageError>() {
            return (
                code_of_kind(e.kind()),
                Some(
                    "give the Security Key or Security Phrase of this account's secret storage"
                        .into(),
                ),
            );
        }
        if let Some(e) = cause.downcast_ref::<mxkeys::recovery_key::RecoveryKeyError>() {
            return (
                code_of_kind(e.kind()),
                Some("a recovery key is 48 characters starting with \"Es\", usually in 12 groups of 4; check for mistyped characters".into()),
            );
        }
    }
    (Code::Failure, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_hint_says_when() {
        // 2026-12-01 23:33:11 UTC.
        let now = 1_796_168_000 - 1_796_168_000 % 86_400 + 23 * 3600 + 33 * 60 + 11;
        assert_eq!(
            retry_hint(600, now),
            "the server asks to wait; run the command again in 10 min (after 23:44 UTC)"
        );
        assert_eq!(
            retry_hint(45, now),
            "the server asks to wait; run the command again in 45 s (after 23:34 UTC)"
        );
        assert_eq!(
            retry_hint(3 * 3600, now),
            "the server asks to wait; run the command again in 3 h (after 02:34 UTC)"
        );
    }
}
