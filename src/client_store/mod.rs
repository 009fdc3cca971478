//! Keys out of other clients' own databases, read-only.
//!
//! Bots, bridges and terminal clients keep their Megolm sessions in their SDK's store and
//! often have no export button. This module finds out what kind of store a path is
//! ([`detect`]), what it holds ([`inspect`]), and reads its inbound group sessions as
//! [`ExportedSession`]s ([`read_sessions`]) so that they can go into the mxkeys store, an
//! export file or the backup.
//!
//! The client's files are never opened for writing: every reader works on a private copy of
//! the database and its `-wal`/`-shm` companions ([`snapshot`]), so that SQLite's recovery of
//! a write-ahead log, or a migration, can never touch the original.
//!
//! Kinds: [`nio`] (matrix-nio: matrix-commander, nio bots; pantalaimon's `pan.db` is the same
//! schema with several accounts), [`matrix_sdk`] (matrix-rust-sdk's SQLite crypto store) and
//! [`mautrix`] (mautrix-go's SQL crypto store: the mautrix bridges, gomuks).

#[cfg(feature = "matrix-sdk-store")]
pub mod matrix_sdk;
pub mod mautrix;
pub mod nio;
pub mod pickle;
mod rows;
pub mod snapshot;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::session::ExportedSession;

/// The kinds of client store mxkeys reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// matrix-nio's SQLite store, `{user}_{device}.db` (matrix-commander, nio bots).
    Nio,
    /// pantalaimon's `pan.db`: nio's schema, one database for all its accounts.
    Pantalaimon,
    /// matrix-rust-sdk's SQLite crypto store (`matrix-sdk-crypto.sqlite3`).
    MatrixSdk,
    /// mautrix-go's SQL crypto store (the mautrix bridges, gomuks), in SQLite.
    Mautrix,
}

impl Kind {
    /// The name used on the command line and in output.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Nio => "nio",
            Kind::Pantalaimon => "pantalaimon",
            Kind::MatrixSdk => "matrix-sdk",
            Kind::Mautrix => "mautrix",
        }
    }

    /// Parse a `--client-store-kind` value.
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "nio" | "matrix-nio" => Some(Kind::Nio),
            "pantalaimon" => Some(Kind::Pantalaimon),
            "matrix-sdk" | "matrix-sdk-sqlite" => Some(Kind::MatrixSdk),
            "mautrix" | "mautrix-go" => Some(Kind::Mautrix),
            _ => None,
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a client store could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ClientStoreError {
    /// Nothing at the path.
    #[error("{0}: no such file or directory")]
    NotFound(String),
    /// The path is not a store of a kind mxkeys reads.
    #[error("{path}: not a client store mxkeys can read ({reason})")]
    UnknownKind {
        /// The path.
        path: String,
        /// What was found instead.
        reason: String,
    },
    /// SQLite cannot read the file: not a database, truncated or damaged.
    #[error("{path}: not a readable SQLite database ({reason})")]
    Unreadable {
        /// The path.
        path: String,
        /// SQLite's words.
        reason: String,
    },
    /// The store names several accounts and none was chosen.
    #[error("{path} holds {count} accounts ({list}); choose one")]
    WhichAccount {
        /// The path.
        path: String,
        /// How many.
        count: usize,
        /// Their user ids and devices.
        list: String,
    },
    /// The chosen account is not in the store.
    #[error("{path} holds no account {user}")]
    NoSuchAccount {
        /// The path.
        path: String,
        /// The user asked for.
        user: String,
    },
    /// The pickle key does not open the store's sessions.
    #[error("{path}: the pickle key does not decrypt the store's sessions")]
    WrongPickleKey {
        /// The path.
        path: String,
    },
    /// A matrix-sdk store sealed with a passphrase that was not given, or not this one.
    #[error(
        "{path}: the store is sealed with a passphrase, and none was given or it is not this one"
    )]
    WrongPassphrase {
        /// The path.
        path: String,
    },
    /// The store's schema is newer than mxkeys knows.
    #[error("{path}: {kind} store schema version {found}; mxkeys reads versions up to {known}")]
    NewerSchema {
        /// The path.
        path: String,
        /// The kind.
        kind: Kind,
        /// The version found.
        found: i64,
        /// The newest version read.
        known: i64,
    },
    /// The database is damaged (truncated, not SQLite, missing tables).
    #[error("{path}: damaged {kind} store: {reason}")]
    Damaged {
        /// The path.
        path: String,
        /// The kind.
        kind: Kind,
        /// What is wrong.
        reason: String,
    },
    /// Copying the store failed.
    #[error("copying {path}: {source}")]
    Copy {
        /// The path.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl ClientStoreError {
    /// [`ClientStoreError::Damaged`] for the store of `kind` at `file`.
    pub(crate) fn damaged(file: &Path, kind: Kind, e: impl std::fmt::Display) -> Self {
        ClientStoreError::Damaged {
            path: file.display().to_string(),
            kind,
            reason: e.to_string(),
        }
    }

    /// The broad class.
    pub fn kind(&self) -> crate::ErrorKind {
        use crate::ErrorKind as K;
        match self {
            ClientStoreError::NotFound(_) => K::NotFound,
            ClientStoreError::UnknownKind { .. }
            | ClientStoreError::Damaged { .. }
            | ClientStoreError::Unreadable { .. } => K::InvalidInput,
            ClientStoreError::NewerSchema { .. } => K::InvalidInput,
            ClientStoreError::WhichAccount { .. } | ClientStoreError::NoSuchAccount { .. } => {
                K::Usage
            }
            ClientStoreError::WrongPickleKey { .. } | ClientStoreError::WrongPassphrase { .. } => {
                K::WrongSecret
            }
            ClientStoreError::Copy { .. } => K::Other,
        }
    }
}

/// How to open a client store.
#[derive(Default)]
pub struct OpenOptions {
    /// Force a kind instead of detecting it.
    pub kind: Option<Kind>,
    /// The key the client sealed its store or pickles with (nio, mautrix: the pickle key;
    /// `None` means the client's default, and mautrix has none).
    pub key: Option<crate::secret::Passphrase>,
    /// Which account, for stores holding several (pantalaimon): a user id, optionally
    /// `USER/DEVICE`.
    pub user: Option<String>,
}

impl std::fmt::Debug for OpenOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenOptions")
            .field("kind", &self.kind)
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("user", &self.user)
            .finish()
    }
}

/// One account of a store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Account {
    /// User id.
    pub user_id: String,
    /// Device id.
    pub device_id: String,
}

/// What a client store holds.
#[derive(Debug, Clone, Serialize)]
pub struct StoreInfo {
    /// The database file read.
    pub path: PathBuf,
    /// Its kind.
    pub kind: Kind,
    /// The client's schema version.
    pub schema_version: Option<i64>,
    /// Every account in the store.
    pub accounts: Vec<Account>,
    /// The account read (the only one, or the chosen one).
    pub account: Option<Account>,
    /// Inbound group sessions of that account.
    pub sessions: u64,
    /// In how many rooms.
    pub rooms: u64,
    /// Does reading the sessions need a key (nio: always a pickle key, with a default)?
    pub needs_key: bool,
}

/// What reading a store's sessions found besides the sessions.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReadSummary {
    /// Sessions read.
    pub sessions: u64,
    /// Rows that could not be read (damaged pickles, wrong session ids), with why.
    pub rejected: Vec<RejectedRow>,
    /// Sessions whose pickles were libolm's (older clients).
    pub libolm_pickles: u64,
    /// Sessions the client marks as imported (from a file or a backup, not received).
    pub imported_by_client: u64,
    /// Sessions the client marks as backed up.
    pub backed_up_by_client: u64,
    /// Withheld notices the client keeps (`m.room_key.withheld`), when the store has them.
    pub withheld: Option<u64>,
}

/// A row that was skipped.
#[derive(Debug, Clone, Serialize)]
pub struct RejectedRow {
    /// The room, when the row has one.
    pub room_id: String,
    /// The session id the row names.
    pub session_id: String,
    /// Why.
    pub reason: String,
}

/// The database's file name in a matrix-sdk store directory.
pub const MATRIX_SDK_DATABASE: &str = "matrix-sdk-crypto.sqlite3";

/// Most rejected rows listed one by one.
pub const MAX_REJECTED_LISTED: usize = 100;

/// The database file behind a path: the file itself, or the one database in a directory
/// (nio's store directory holds `{user}_{device}.db`; pantalaimon's data directory `pan.db`;
/// a matrix-sdk store directory `matrix-sdk-crypto.sqlite3`), with the kind its name says.
fn database_file(path: &Path) -> Result<(PathBuf, Option<Kind>), ClientStoreError> {
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|_| ClientStoreError::NotFound(shown.clone()))?;
    let by_name = |p: &Path| match p.file_name().and_then(|n| n.to_str()) {
        Some("pan.db") => Some(Kind::Pantalaimon),
        Some(MATRIX_SDK_DATABASE) => Some(Kind::MatrixSdk),
        _ => None,
    };
    if meta.is_file() {
        return Ok((path.to_path_buf(), by_name(path)));
    }
    for name in ["pan.db", MATRIX_SDK_DATABASE] {
        let p = path.join(name);
        if p.is_file() {
            let k = by_name(&p);
            return Ok((p, k));
        }
    }
    let mut dbs: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| ClientStoreError::Copy {
            path: shown.clone(),
            source: e,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("db") && p.is_file())
        .collect();
    dbs.sort();
    match dbs.len() {
        1 => Ok((dbs.remove(0), None)),
        0 => Err(ClientStoreError::UnknownKind {
            path: shown,
            reason: "a directory without a nio or mautrix (*.db), pantalaimon (pan.db) or matrix-sdk (matrix-sdk-crypto.sqlite3) database".into(),
        }),
        n => Err(ClientStoreError::UnknownKind {
            path: shown,
            reason: format!(
                "{n} databases in the directory ({}); give the one to read",
                dbs.iter()
                    .filter_map(|p| p.file_name().and_then(|n| n.to_str()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}

/// A store, copied and opened.
pub struct Opened {
    snapshot: snapshot::Snapshot,
    kind: Kind,
    file: PathBuf,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("kind", &self.kind)
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

/// Copy the store behind `path` and find out its kind.
pub fn open(path: &Path, opts: &OpenOptions) -> Result<Opened, ClientStoreError> {
    let (file, hint) = database_file(path)?;
    // matrix-sdk opens its directory by the database's own name.
    let copy_name = if hint == Some(Kind::MatrixSdk) || opts.kind == Some(Kind::MatrixSdk) {
        MATRIX_SDK_DATABASE
    } else {
        "store.db"
    };
    let mut snapshot = snapshot::Snapshot::take(&file, copy_name)?;
    let detected = nio::detect(&snapshot, &file)?;
    let kind = match (opts.kind, detected) {
        (Some(k), _) => k,
        (None, Some(_)) if hint == Some(Kind::Pantalaimon) => Kind::Pantalaimon,
        (None, Some(k)) => k,
        (None, None) => {
            return Err(ClientStoreError::UnknownKind {
                path: file.display().to_string(),
                reason: "no table of a known client (nio's megolminboundsessions, matrix-sdk's inbound_group_session, mautrix's crypto_megolm_inbound_session)".into(),
            });
        }
    };
    if kind == Kind::MatrixSdk && copy_name != MATRIX_SDK_DATABASE {
        snapshot = snapshot::Snapshot::take(&file, MATRIX_SDK_DATABASE)?;
    }
    Ok(Opened {
        snapshot,
        kind,
        file,
    })
}

impl Opened {
    /// The kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The database file that was copied.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// What the store holds (no key needed).
    pub fn inspect(&self, opts: &OpenOptions) -> Result<StoreInfo, ClientStoreError> {
        match self.kind {
            #[cfg(feature = "matrix-sdk-store")]
            Kind::MatrixSdk => matrix_sdk::inspect(&self.snapshot, &self.file, opts),
            #[cfg(not(feature = "matrix-sdk-store"))]
            Kind::MatrixSdk => Err(self.no_sdk()),
            Kind::Mautrix => mautrix::inspect(&self.snapshot, &self.file, opts),
            k => nio::inspect(&self.snapshot, &self.file, k, opts),
        }
    }

    /// Every inbound group session of the chosen account, in session-id order.
    pub fn read_sessions(
        &self,
        opts: &OpenOptions,
        f: &mut dyn FnMut(ExportedSession) -> crate::Result<()>,
    ) -> crate::Result<ReadSummary> {
        match self.kind {
            #[cfg(feature = "matrix-sdk-store")]
            Kind::MatrixSdk => matrix_sdk::read_sessions(&self.snapshot, &self.file, opts, f),
            #[cfg(not(feature = "matrix-sdk-store"))]
            Kind::MatrixSdk => Err(self.no_sdk().into()),
            Kind::Mautrix => mautrix::read_sessions(&self.snapshot, &self.file, opts, f),
            k => nio::read_sessions(&self.snapshot, &self.file, k, opts, f),
        }
    }

    #[cfg(not(feature = "matrix-sdk-store"))]
    fn no_sdk(&self) -> ClientStoreError {
        ClientStoreError::UnknownKind {
            path: self.file.display().to_string(),
            reason: "a matrix-sdk store, and this build has no matrix-sdk store reader (feature matrix-sdk-store)".into(),
        }
    }
}
