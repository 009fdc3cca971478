//! The local key store: the "device" whose keys mxkeys holds.
//!
//! One SQLite database in a private directory (0700; files 0600). Session keys are sealed at
//! rest: each row's JSON is encrypted with XChaCha20-Poly1305 under a random 256-bit data key,
//! with the row's room and session id as associated data (so rows cannot be swapped). The data
//! key is itself wrapped under a key derived from the store passphrase with PBKDF2-HMAC-SHA512
//! (salt and rounds stored beside it); unwrapping it is the key check, so a wrong store
//! passphrase fails before any row is read. Room ids, session ids, sender keys and first known
//! indexes are stored in the clear so that listing and filtering need no key.
//!
//! Layout: `sessions` holds one small row of metadata per session, found through an index on
//! an 8-byte hash of (room id, session id); the sealed session itself lives in `session_data`
//! under the same row id. Listing and filtering read only the metadata; the index stays small
//! enough to be cached, so imports stay linear in the number of sessions.
//!
//! Writers hold an exclusive lock on `lock` in the store directory for their whole run, so
//! two writers never interleave (the second gets [`StoreError::Busy`]); readers rely on
//! SQLite's WAL snapshots. Every import is one SQLite transaction.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use rayon::prelude::*;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params, params_from_iter};
use zeroize::Zeroizing;

use crate::ErrorKind;
use crate::kdf::pbkdf2_sha512;
use crate::secret::{Key32, Passphrase};
use crate::session::{ExportedSession, Ordering};

/// Database file name inside the store directory.
pub const DB_FILE: &str = "keys.sqlite3";
/// Lock file name inside the store directory.
pub const LOCK_FILE: &str = "lock";
/// Default PBKDF2 rounds for the store passphrase.
pub const DEFAULT_KDF_ROUNDS: u32 = 500_000;
/// Version 2 adds `sessions.source` (where each held copy came from); version-1 stores are
/// migrated when opened for writing, and read as they are otherwise.
const SCHEMA_VERSION: i64 = 2;
const KEY_AAD: &[u8] = b"mxkeys store data key v1";
const ROW_AAD: &[u8] = b"mxkeys session v1";
const SECRET_AAD: &[u8] = b"mxkeys secret v1";
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// There is no store at the path.
    #[error("no key store at {0}")]
    NotFound(String),
    /// `init` on an existing store.
    #[error("a key store already exists at {0}")]
    AlreadyExists(String),
    /// Another process holds the store.
    #[error("the key store is busy: another mxkeys process is using it")]
    Busy,
    /// The store passphrase did not unwrap the data key.
    #[error("wrong store passphrase")]
    WrongPassphrase,
    /// The store's content does not authenticate or parse.
    #[error("the key store is damaged: {0}")]
    Corrupt(String),
    /// Written by a newer version of mxkeys.
    #[error("the key store has schema version {0}, newer than this mxkeys understands")]
    NewerSchema(i64),
    /// SQLite failed.
    #[error("key store database: {0}")]
    Sqlite(rusqlite::Error),
    /// File-system failure.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        if let rusqlite::Error::SqliteFailure(f, _) = &e
            && matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            )
        {
            return StoreError::Busy;
        }
        StoreError::Sqlite(e)
    }
}

impl StoreError {
    /// Broad class for exit codes.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::NotFound(_) => ErrorKind::NotFound,
            StoreError::AlreadyExists(_) => ErrorKind::Other,
            StoreError::Busy => ErrorKind::Busy,
            StoreError::WrongPassphrase => ErrorKind::WrongSecret,
            StoreError::Corrupt(_) => ErrorKind::InvalidInput,
            StoreError::NewerSchema(_) | StoreError::Sqlite(_) => ErrorKind::Other,
            StoreError::Io(_, e) if e.kind() == std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            StoreError::Io(..) => ErrorKind::Other,
        }
    }
}

type StoreResult<T> = std::result::Result<T, StoreError>;

/// How the store is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read only; no lock taken.
    Read,
    /// Read and write; holds the exclusive store lock until dropped.
    Write,
}

/// How a store is protected at rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protection {
    /// Rows sealed under a key derived from the store passphrase.
    Sealed,
    /// Rows stored in the clear (`--insecure-no-store-passphrase`).
    Unsealed,
}

/// Encrypts and decrypts rows.
struct Sealer {
    cipher: Option<XChaCha20Poly1305>,
    prefix: [u8; 16],
    counter: AtomicU64,
}

impl Sealer {
    fn new(key: Option<&Key32>) -> StoreResult<Sealer> {
        let mut prefix = [0u8; 16];
        crate::fs::fill_random(&mut prefix).map_err(|e| StoreError::Io("random".into(), e))?;
        Ok(Sealer {
            cipher: key.map(|k| XChaCha20Poly1305::new(k.expose_secret().into())),
            prefix,
            counter: AtomicU64::new(0),
        })
    }

    /// A unique nonce: a random per-process prefix and a counter.
    fn nonce(&self) -> [u8; NONCE_LEN] {
        let mut n = [0u8; NONCE_LEN];
        n[..16].copy_from_slice(&self.prefix);
        let c = self.counter.fetch_add(1, AtomicOrdering::Relaxed);
        n[16..].copy_from_slice(&c.to_be_bytes());
        n
    }

    fn seal(&self, aad: &[u8], plaintext: &[u8]) -> StoreResult<Vec<u8>> {
        let Some(cipher) = &self.cipher else {
            return Ok(plaintext.to_vec());
        };
        let nonce = self.nonce();
        let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = cipher
            .encrypt_inout_detached(&XNonce::from(nonce), aad, (&mut out[NONCE_LEN..]).into())
            .map_err(|_| StoreError::Corrupt("sealing failed".into()))?;
        out.extend_from_slice(&tag);
        Ok(out)
    }

    fn open(&self, aad: &[u8], sealed: &[u8]) -> StoreResult<Zeroizing<Vec<u8>>> {
        let Some(cipher) = &self.cipher else {
            return Ok(Zeroizing::new(sealed.to_vec()));
        };
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(StoreError::Corrupt("a sealed row is too short".into()));
        }
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let (ct, tag) = rest.split_at(rest.len() - TAG_LEN);
        let mut buf = Zeroizing::new(ct.to_vec());
        let mut n = [0u8; NONCE_LEN];
        n.copy_from_slice(nonce);
        let mut t = [0u8; TAG_LEN];
        t.copy_from_slice(tag);
        cipher
            .decrypt_inout_detached(&XNonce::from(n), aad, (&mut buf[..]).into(), &t.into())
            .map_err(|_| StoreError::Corrupt("a sealed row does not authenticate".into()))?;
        Ok(buf)
    }
}

fn row_aad(room_id: &str, session_id: &str) -> Vec<u8> {
    let mut a = Vec::with_capacity(ROW_AAD.len() + room_id.len() + session_id.len() + 2);
    a.extend_from_slice(ROW_AAD);
    a.push(0);
    a.extend_from_slice(room_id.as_bytes());
    a.push(0);
    a.extend_from_slice(session_id.as_bytes());
    a
}

/// What happened to one incoming session during a merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// New to the store.
    Imported,
    /// Replaced a copy with a higher first known index.
    Improved,
    /// The store already had this copy or a better one.
    Unchanged,
    /// Same id but the ratchets do not connect: the held copy was kept.
    Conflict,
}

/// Counts of a merge.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct MergeCounts {
    /// New sessions.
    pub imported: u64,
    /// Sessions replaced by a better copy.
    pub improved: u64,
    /// Sessions already held as well or better.
    pub unchanged: u64,
    /// Same-id sessions whose ratchets do not connect.
    pub conflicts: u64,
}

impl MergeCounts {
    /// Count one outcome.
    pub fn add(&mut self, o: Outcome) {
        match o {
            Outcome::Imported => self.imported += 1,
            Outcome::Improved => self.improved += 1,
            Outcome::Unchanged => self.unchanged += 1,
            Outcome::Conflict => self.conflicts += 1,
        }
    }
}

/// Which sessions to read.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    /// Only these rooms (all when empty).
    pub rooms: Vec<String>,
    /// Only these session ids (all when empty).
    pub sessions: Vec<String>,
    /// Read in (room, session) order even when nothing is filtered out. A backup upload wants
    /// this: Synapse's cost for one PUT grows with the number of rooms in it, so keys grouped
    /// by room make each room appear in one request instead of in every one.
    pub by_room: bool,
}

/// One room in a listing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RoomSummary {
    /// The room.
    pub room_id: String,
    /// Sessions held for it.
    pub sessions: u64,
    /// Lowest first known index among them.
    pub min_first_index: u32,
    /// Highest first known index among them.
    pub max_first_index: u32,
    /// Where the held copies came from, with how many each (`unknown`: stored before mxkeys
    /// recorded sources).
    pub sources: std::collections::BTreeMap<String, u64>,
    /// How many of them were forwarded to mxkeys' device by another device (source
    /// `forwarded:...`).
    pub forwarded: u64,
}

/// One held session, without its key.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionSummary {
    /// The room.
    pub room_id: String,
    /// The session id.
    pub session_id: String,
    /// The first message index the held copy decrypts.
    pub first_index: u32,
    /// Where the held copy came from (`unknown` before sources were recorded).
    pub source: String,
    /// It was forwarded to mxkeys' device by another device in answer to a request.
    pub forwarded: bool,
}

/// Is a source label one of a forwarded key?
pub fn is_forwarded_source(source: &str) -> bool {
    source.starts_with("forwarded:")
}

/// Facts about a store, none secret.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoreInfo {
    /// Directory.
    pub path: PathBuf,
    /// Sealed or not.
    pub protection: Protection,
    /// PBKDF2 rounds of the store passphrase (sealed stores).
    pub kdf_rounds: Option<u32>,
    /// Number of sessions.
    pub sessions: u64,
    /// Number of rooms.
    pub rooms: u64,
}

/// An open key store.
pub struct Store {
    conn: Connection,
    sealer: Sealer,
    dir: PathBuf,
    protection: Protection,
    kdf_rounds: Option<u32>,
    _lock: Option<File>,
    has_source: bool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn io_err(ctx: impl Into<String>) -> impl FnOnce(std::io::Error) -> StoreError {
    let ctx = ctx.into();
    move |e| StoreError::Io(ctx, e)
}

fn lock(dir: &Path) -> StoreResult<File> {
    let path = dir.join(LOCK_FILE);
    crate::fs::ensure_private_file(&path).map_err(io_err(format!("{}", path.display())))?;
    let f = File::options()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(io_err(format!("{}", path.display())))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Busy),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(StoreError::Io(format!("locking {}", path.display()), e))
        }
    }
}

/// Page size of new stores. A sealed session is 600-900 bytes; 16 KiB pages hold about 18 of
/// them, so a big import writes a quarter as many pages through the WAL as with 4 KiB pages.
const PAGE_SIZE: i64 = 16384;

fn configure(conn: &Connection) -> StoreResult<()> {
    conn.busy_timeout(std::time::Duration::from_secs(2))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // 16 MiB of page cache (negative = KiB): big imports touch the index at random; this keeps
    // them fast while staying well inside the 64 MiB memory budget.
    conn.pragma_update(None, "cache_size", CACHE_KIB)?;
    Ok(())
}

/// The page cache of a connection, in KiB (negative, as SQLite takes it).
const CACHE_KIB: i64 = -16384;
/// The page cache while reading every session: each page is read once (in stored order) or at
/// random among many more pages than any cache holds (in room order), so a large cache only
/// costs memory: 14 MiB of a million-key upload's peak.
const SCAN_CACHE_KIB: i64 = -2048;

/// Shrinks the page cache for a scan and restores it when dropped.
struct ScanCache<'c>(&'c Connection);

impl<'c> ScanCache<'c> {
    fn new(conn: &'c Connection) -> StoreResult<Self> {
        conn.pragma_update(None, "cache_size", SCAN_CACHE_KIB)?;
        Ok(ScanCache(conn))
    }
}

impl Drop for ScanCache<'_> {
    fn drop(&mut self) {
        // Best effort: a failure only leaves the smaller cache in place.
        let _ = self.0.pragma_update(None, "cache_size", CACHE_KIB);
    }
}

fn wrap_kek(passphrase: &Passphrase, salt: &[u8], rounds: u32) -> XChaCha20Poly1305 {
    let kek = pbkdf2_sha512::<32>(passphrase.expose_secret(), salt, rounds);
    XChaCha20Poly1305::new((&*kek).into())
}

/// A store's parameters as found on disk, before unlocking.
#[derive(Debug)]
pub struct Locked {
    conn: Connection,
    dir: PathBuf,
    lock: Option<File>,
    protection: Protection,
    salt: Vec<u8>,
    rounds: u32,
    wrapped: Vec<u8>,
    /// The sessions table has the `source` column (schema 2).
    has_source: bool,
}

impl Locked {
    /// Whether a passphrase is needed.
    pub fn protection(&self) -> Protection {
        self.protection
    }

    /// Unlock with the store passphrase (ignored for an unsealed store). On a wrong
    /// passphrase the locked store is handed back for another try.
    #[allow(
        clippy::result_large_err,
        reason = "the locked store is handed back for another try"
    )]
    pub fn unlock(
        self,
        passphrase: Option<&Passphrase>,
    ) -> std::result::Result<Store, (Locked, StoreError)> {
        match self.protection {
            Protection::Unsealed => match Sealer::new(None) {
                Ok(sealer) => Ok(self.into_store(sealer)),
                Err(e) => Err((self, e)),
            },
            Protection::Sealed => {
                let Some(p) = passphrase else {
                    return Err((self, StoreError::WrongPassphrase));
                };
                let kek = wrap_kek(p, &self.salt, self.rounds);
                if self.wrapped.len() != NONCE_LEN + 32 + TAG_LEN {
                    return Err((
                        self,
                        StoreError::Corrupt("the wrapped store key has the wrong size".into()),
                    ));
                }
                let mut n = [0u8; NONCE_LEN];
                n.copy_from_slice(&self.wrapped[..NONCE_LEN]);
                let mut key = Zeroizing::new([0u8; 32]);
                key.copy_from_slice(&self.wrapped[NONCE_LEN..NONCE_LEN + 32]);
                let mut t = [0u8; TAG_LEN];
                t.copy_from_slice(&self.wrapped[NONCE_LEN + 32..]);
                if kek
                    .decrypt_inout_detached(
                        &XNonce::from(n),
                        KEY_AAD,
                        (&mut key[..]).into(),
                        &t.into(),
                    )
                    .is_err()
                {
                    return Err((self, StoreError::WrongPassphrase));
                }
                let key = Key32::new(*key);
                match Sealer::new(Some(&key)) {
                    Ok(sealer) => Ok(self.into_store(sealer)),
                    Err(e) => Err((self, e)),
                }
            }
        }
    }

    /// Facts about the store (no passphrase needed).
    pub fn info(&self) -> StoreResult<StoreInfo> {
        let rounds = (self.protection == Protection::Sealed).then_some(self.rounds);
        info(&self.conn, &self.dir, self.protection, rounds)
    }

    /// Rooms and session counts (no passphrase needed: ids are stored in the clear).
    pub fn list(&self, rooms: &[String]) -> StoreResult<Vec<RoomSummary>> {
        list(&self.conn, rooms, self.has_source)
    }

    /// Every session's ids, first known index and source (no passphrase needed).
    pub fn list_sessions(&self, rooms: &[String]) -> StoreResult<Vec<SessionSummary>> {
        list_sessions(&self.conn, rooms, self.has_source)
    }

    /// Walk (room, session, first known index) of every session (no passphrase needed).
    pub fn for_each_index(&self, f: &mut dyn FnMut(&str, &str, u32)) -> StoreResult<u64> {
        for_each_index(&self.conn, f)
    }

    fn into_store(self, sealer: Sealer) -> Store {
        Store {
            conn: self.conn,
            sealer,
            dir: self.dir,
            protection: self.protection,
            kdf_rounds: (self.protection == Protection::Sealed).then_some(self.rounds),
            _lock: self.lock,
            has_source: self.has_source,
        }
    }
}

impl Store {
    /// Does a store exist in `dir`?
    pub fn exists(dir: &Path) -> bool {
        dir.join(DB_FILE).is_file()
    }

    /// Create a new store in `dir`. `passphrase` `None` makes an unsealed store.
    pub fn create(dir: &Path, passphrase: Option<&Passphrase>, kdf_rounds: u32) -> StoreResult<()> {
        crate::fs::create_private_dir(dir)
            .map_err(io_err(format!("creating {}", dir.display())))?;
        let _lock = lock(dir)?;
        let db = dir.join(DB_FILE);
        if db.exists() {
            return Err(StoreError::AlreadyExists(dir.display().to_string()));
        }
        // Build the database under a temporary name and rename it into place, so that an
        // interrupted init leaves no half-made store.
        let tmp = dir.join(format!("{DB_FILE}.init"));
        let _ = std::fs::remove_file(&tmp);
        crate::fs::ensure_private_file(&tmp).map_err(io_err(format!("{}", tmp.display())))?;
        {
            let mut conn = Connection::open(&tmp)?;
            conn.pragma_update(None, "page_size", PAGE_SIZE)?;
            let tx = conn.transaction()?;
            tx.execute_batch(
                "CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
                 CREATE TABLE sessions (
                     id INTEGER PRIMARY KEY,
                     key_hash INTEGER NOT NULL,
                     room_id TEXT NOT NULL,
                     session_id TEXT NOT NULL,
                     first_index INTEGER NOT NULL,
                     sender_key TEXT NOT NULL,
                     updated_at INTEGER NOT NULL,
                     source TEXT
                 );
                 CREATE INDEX sessions_by_key ON sessions (key_hash);
                 CREATE TABLE session_data (id INTEGER PRIMARY KEY, data BLOB NOT NULL);
                 CREATE TABLE secrets (name TEXT PRIMARY KEY, data BLOB NOT NULL, updated_at INTEGER NOT NULL);",
            )?;
            let put = |k: &str, v: rusqlite::types::Value| {
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES (?1, ?2)",
                    params![k, v],
                )
            };
            put("schema_version", SCHEMA_VERSION.into())?;
            match passphrase {
                None => {
                    put("protection", "unsealed".to_string().into())?;
                }
                Some(p) => {
                    let mut salt = vec![0u8; 16];
                    crate::fs::fill_random(&mut salt).map_err(io_err("random"))?;
                    let rounds = kdf_rounds.max(1);
                    let kek = wrap_kek(p, &salt, rounds);
                    let key = Key32::random().map_err(io_err("random"))?;
                    let mut nonce = [0u8; NONCE_LEN];
                    crate::fs::fill_random(&mut nonce).map_err(io_err("random"))?;
                    let mut wrapped = Vec::with_capacity(NONCE_LEN + 32 + TAG_LEN);
                    wrapped.extend_from_slice(&nonce);
                    wrapped.extend_from_slice(key.expose_secret());
                    let tag = kek
                        .encrypt_inout_detached(
                            &XNonce::from(nonce),
                            KEY_AAD,
                            (&mut wrapped[NONCE_LEN..]).into(),
                        )
                        .map_err(|_| StoreError::Corrupt("sealing failed".into()))?;
                    wrapped.extend_from_slice(&tag);
                    put("protection", "sealed".to_string().into())?;
                    put("kdf", "pbkdf2-hmac-sha512".to_string().into())?;
                    put("kdf_salt", salt.into())?;
                    put("kdf_rounds", i64::from(rounds).into())?;
                    put("wrapped_key", wrapped.into())?;
                }
            }
            tx.commit()?;
        }
        std::fs::rename(&tmp, &db).map_err(io_err(format!("creating {}", db.display())))?;
        crate::fs::sync_dir(dir);
        Ok(())
    }

    /// Open the store in `dir` (not yet unlocked).
    pub fn open(dir: &Path, access: Access) -> StoreResult<Locked> {
        let db = dir.join(DB_FILE);
        if !db.is_file() {
            return Err(StoreError::NotFound(dir.display().to_string()));
        }
        let lock = match access {
            Access::Write => Some(lock(dir)?),
            Access::Read => None,
        };
        let flags = match access {
            Access::Write => OpenFlags::SQLITE_OPEN_READ_WRITE,
            // Readers still need write access to the WAL index, so open read-write too; they
            // just never start a write transaction.
            Access::Read => OpenFlags::SQLITE_OPEN_READ_WRITE,
        } | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&db, flags)?;
        configure(&conn)?;
        // Files SQLite creates beside the database (-wal, -shm) copy the database's mode.
        let meta = |k: &str| -> StoreResult<Option<rusqlite::types::Value>> {
            conn.query_row("SELECT value FROM meta WHERE key = ?1", [k], |r| r.get(0))
                .optional()
                .map_err(|e| match e {
                    rusqlite::Error::SqliteFailure(f, _)
                        if f.code == rusqlite::ErrorCode::NotADatabase =>
                    {
                        StoreError::Corrupt("not an SQLite database".into())
                    }
                    e => StoreError::from(e),
                })
        };
        use rusqlite::types::Value as V;
        let version = match meta("schema_version")? {
            Some(V::Integer(v)) => v,
            _ => return Err(StoreError::Corrupt("no schema version".into())),
        };
        if version > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema(version));
        }
        if version < 2 && access == Access::Write {
            // Under the lock: add the source column, in one transaction with the version.
            conn.execute_batch(
                "BEGIN IMMEDIATE;
                 ALTER TABLE sessions ADD COLUMN source TEXT;
                 UPDATE meta SET value = 2 WHERE key = 'schema_version';
                 COMMIT;",
            )?;
        }
        let has_source = version >= 2 || access == Access::Write;
        let protection = match meta("protection")? {
            Some(V::Text(t)) if t == "sealed" => Protection::Sealed,
            Some(V::Text(t)) if t == "unsealed" => Protection::Unsealed,
            _ => return Err(StoreError::Corrupt("unknown protection".into())),
        };
        let (salt, rounds, wrapped) = if protection == Protection::Sealed {
            let salt = match meta("kdf_salt")? {
                Some(V::Blob(b)) => b,
                _ => return Err(StoreError::Corrupt("no KDF salt".into())),
            };
            let rounds = match meta("kdf_rounds")? {
                Some(V::Integer(r)) if r >= 1 && r <= i64::from(u32::MAX) => r as u32,
                _ => return Err(StoreError::Corrupt("no KDF rounds".into())),
            };
            let wrapped = match meta("wrapped_key")? {
                Some(V::Blob(b)) => b,
                _ => return Err(StoreError::Corrupt("no wrapped key".into())),
            };
            (salt, rounds, wrapped)
        } else {
            (Vec::new(), 0, Vec::new())
        };
        Ok(Locked {
            conn,
            dir: dir.to_path_buf(),
            lock,
            protection,
            salt,
            rounds,
            wrapped,
            has_source,
        })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Facts about the store.
    pub fn info(&self) -> StoreResult<StoreInfo> {
        info(&self.conn, &self.dir, self.protection, self.kdf_rounds)
    }

    /// Rooms and session counts (reads no key).
    pub fn list(&self, rooms: &[String]) -> StoreResult<Vec<RoomSummary>> {
        list(&self.conn, rooms, self.has_source)
    }

    /// Number of rooms with sessions matching `filter` (reads no key).
    pub fn count_rooms(&self, filter: &Filter) -> StoreResult<u64> {
        self.count_of("COUNT(DISTINCT room_id)", filter)
    }

    /// Number of sessions matching `filter` (reads no key).
    pub fn count(&self, filter: &Filter) -> StoreResult<u64> {
        self.count_of("COUNT(*)", filter)
    }

    fn count_of(&self, what: &str, filter: &Filter) -> StoreResult<u64> {
        let (clause, args) = where_clause(filter);
        let n: i64 = self.conn.query_row(
            &format!("SELECT {what} FROM sessions{clause}"),
            params_from_iter(args.iter()),
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    /// Read every session matching `filter` (see [`Store::for_each_batch`] for the order).
    /// Returns the number of sessions read.
    pub fn for_each_session(
        &self,
        filter: &Filter,
        f: &mut dyn FnMut(ExportedSession) -> crate::Result<()>,
    ) -> crate::Result<u64> {
        self.for_each_batch(filter, &mut |batch| batch.into_iter().try_for_each(&mut *f))
    }

    /// Read every session matching `filter`, in batches unsealed in parallel: all of them in
    /// the order they were stored (a sequential scan), a filtered set or `by_room` in (room,
    /// session) order (the metadata rows are sorted, then each sealed row is fetched by id).
    /// Returns the number of sessions read.
    pub fn for_each_batch(
        &self,
        filter: &Filter,
        f: &mut dyn FnMut(Vec<ExportedSession>) -> crate::Result<()>,
    ) -> crate::Result<u64> {
        let (clause, args) = where_clause(filter);
        let _cache = ScanCache::new(&self.conn)?;
        let sql = if clause.is_empty() && !filter.by_room {
            "SELECT s.room_id, s.session_id, d.data FROM sessions s JOIN session_data d ON d.id = s.id ORDER BY s.id".to_string()
        } else {
            // Sort the small metadata rows first, then fetch each sealed row by its id: the
            // sorter never carries the sealed blobs.
            format!(
                "WITH o AS MATERIALIZED (SELECT s.id, s.room_id, s.session_id FROM sessions s{clause} ORDER BY s.room_id, s.session_id) \
                 SELECT o.room_id, o.session_id, d.data FROM o JOIN session_data d ON d.id = o.id"
            )
        };
        let mut st = self.conn.prepare(&sql).map_err(StoreError::from)?;
        let mut rows = st
            .query(params_from_iter(args.iter()))
            .map_err(StoreError::from)?;
        let mut batch: Vec<(String, String, Vec<u8>)> = Vec::with_capacity(BATCH);
        let mut n = 0u64;
        loop {
            let row = rows.next().map_err(StoreError::from)?;
            let end = row.is_none();
            if let Some(r) = row {
                batch.push((
                    r.get(0).map_err(StoreError::from)?,
                    r.get(1).map_err(StoreError::from)?,
                    r.get(2).map_err(StoreError::from)?,
                ));
            }
            if batch.len() == BATCH || (end && !batch.is_empty()) {
                let sealer = &self.sealer;
                let opened: Vec<ExportedSession> = batch
                    .par_iter()
                    .map(|(room, sid, data)| open_row(sealer, room, sid, data))
                    .collect::<StoreResult<_>>()?;
                batch.clear();
                n += opened.len() as u64;
                f(opened)?;
            }
            if end {
                break;
            }
        }
        Ok(n)
    }

    /// Walk (room, session, first known index) of every session, reading no key.
    pub fn for_each_index(&self, f: &mut dyn FnMut(&str, &str, u32)) -> StoreResult<u64> {
        for_each_index(&self.conn, f)
    }

    /// Look one session up.
    pub fn get(&self, room_id: &str, session_id: &str) -> StoreResult<Option<ExportedSession>> {
        get_row(&self.conn, &self.sealer, room_id, session_id)
    }

    /// Keep a small secret (credentials, a backup key) sealed under `name`.
    pub fn put_secret(&self, name: &str, value: &[u8]) -> StoreResult<()> {
        let aad = [SECRET_AAD, b"\0", name.as_bytes()].concat();
        let data = self.sealer.seal(&aad, value)?;
        self.conn.execute(
            "INSERT INTO secrets (name, data, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at",
            params![name, data, now()],
        )?;
        Ok(())
    }

    /// Read a secret kept with [`Store::put_secret`].
    pub fn get_secret(&self, name: &str) -> StoreResult<Option<Zeroizing<Vec<u8>>>> {
        let data: Option<Vec<u8>> = self
            .conn
            .query_row("SELECT data FROM secrets WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?;
        let aad = [SECRET_AAD, b"\0", name.as_bytes()].concat();
        data.map(|d| self.sealer.open(&aad, &d)).transpose()
    }

    /// Forget a secret; true if there was one.
    pub fn delete_secret(&self, name: &str) -> StoreResult<bool> {
        Ok(self
            .conn
            .execute("DELETE FROM secrets WHERE name = ?1", [name])?
            > 0)
    }

    /// Start a transaction that merges sessions into the store. Nothing is visible to other
    /// readers, and nothing survives a crash, until [`MergeTx::commit`].
    pub fn merge_tx(&mut self) -> StoreResult<MergeTx<'_>> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        Ok(MergeTx {
            tx,
            sealer: &self.sealer,
            counts: MergeCounts::default(),
            source: None,
        })
    }
}

fn info(
    conn: &Connection,
    dir: &Path,
    protection: Protection,
    kdf_rounds: Option<u32>,
) -> StoreResult<StoreInfo> {
    let (sessions, rooms): (i64, i64) = conn.query_row(
        "SELECT COUNT(*), COUNT(DISTINCT room_id) FROM sessions",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(StoreInfo {
        path: dir.to_path_buf(),
        protection,
        kdf_rounds,
        sessions: sessions as u64,
        rooms: rooms as u64,
    })
}

fn for_each_index(conn: &Connection, f: &mut dyn FnMut(&str, &str, u32)) -> StoreResult<u64> {
    let mut st = conn.prepare("SELECT room_id, session_id, first_index FROM sessions")?;
    let mut rows = st.query([])?;
    let mut n = 0;
    while let Some(r) = rows.next()? {
        let room: String = r.get(0)?;
        let sid: String = r.get(1)?;
        let idx: i64 = r.get(2)?;
        f(&room, &sid, idx as u32);
        n += 1;
    }
    Ok(n)
}

/// ` WHERE room_id IN (?, ...)` for `rooms`; nothing when all rooms are wanted.
fn rooms_filter(rooms: &[String]) -> String {
    if rooms.is_empty() {
        String::new()
    } else {
        format!(" WHERE room_id IN ({})", placeholders(rooms.len()))
    }
}

/// The `source` column, or `unknown` for a store that has none yet (schema 1).
fn source_column(has_source: bool) -> &'static str {
    if has_source {
        "COALESCE(source, 'unknown')"
    } else {
        "'unknown'"
    }
}

fn list(conn: &Connection, rooms: &[String], has_source: bool) -> StoreResult<Vec<RoomSummary>> {
    let filter = rooms_filter(rooms);
    let source = source_column(has_source);
    let sql = format!(
        "SELECT room_id, {source}, COUNT(*), MIN(first_index), MAX(first_index) FROM sessions{filter} \
         GROUP BY room_id, 2 ORDER BY room_id, 2"
    );
    let mut st = conn.prepare(&sql)?;
    let rows = st.query_map(params_from_iter(rooms.iter()), |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)? as u64,
            r.get::<_, i64>(3)? as u32,
            r.get::<_, i64>(4)? as u32,
        ))
    })?;
    let mut out: Vec<RoomSummary> = Vec::new();
    for row in rows {
        let (room_id, source, n, min, max) = row?;
        match out.last_mut() {
            Some(last) if last.room_id == room_id => {
                last.sessions += n;
                last.min_first_index = last.min_first_index.min(min);
                last.max_first_index = last.max_first_index.max(max);
                if is_forwarded_source(&source) {
                    last.forwarded += n;
                }
                *last.sources.entry(source).or_default() += n;
            }
            _ => out.push(RoomSummary {
                room_id,
                sessions: n,
                min_first_index: min,
                max_first_index: max,
                forwarded: if is_forwarded_source(&source) { n } else { 0 },
                sources: std::collections::BTreeMap::from([(source, n)]),
            }),
        }
    }
    Ok(out)
}

fn list_sessions(
    conn: &Connection,
    rooms: &[String],
    has_source: bool,
) -> StoreResult<Vec<SessionSummary>> {
    let filter = rooms_filter(rooms);
    let source = source_column(has_source);
    let sql = format!(
        "SELECT room_id, session_id, first_index, {source} FROM sessions{filter} ORDER BY room_id, session_id"
    );
    let mut st = conn.prepare(&sql)?;
    let rows = st.query_map(params_from_iter(rooms.iter()), |r| {
        let source: String = r.get(3)?;
        Ok(SessionSummary {
            room_id: r.get(0)?,
            session_id: r.get(1)?,
            first_index: r.get::<_, i64>(2)? as u32,
            forwarded: is_forwarded_source(&source),
            source,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Rows unsealed or sealed together in parallel.
const BATCH: usize = 2048;

fn placeholders(n: usize) -> String {
    vec!["?"; n].join(",")
}

fn where_clause(filter: &Filter) -> (String, Vec<String>) {
    let mut parts = Vec::new();
    let mut args = Vec::new();
    if !filter.rooms.is_empty() {
        parts.push(format!("room_id IN ({})", placeholders(filter.rooms.len())));
        args.extend(filter.rooms.iter().cloned());
    }
    if !filter.sessions.is_empty() {
        parts.push(format!(
            "session_id IN ({})",
            placeholders(filter.sessions.len())
        ));
        args.extend(filter.sessions.iter().cloned());
    }
    if parts.is_empty() {
        (String::new(), args)
    } else {
        (format!(" WHERE {}", parts.join(" AND ")), args)
    }
}

fn open_row(sealer: &Sealer, room: &str, sid: &str, data: &[u8]) -> StoreResult<ExportedSession> {
    let json = sealer.open(&row_aad(room, sid), data)?;
    let s = ExportedSession::from_stored_json(&json)
        .map_err(|e| StoreError::Corrupt(format!("a stored session does not parse: {e:?}")))?;
    if s.room_id != room || s.session_id != sid {
        return Err(StoreError::Corrupt(
            "a row's ids do not match its content".into(),
        ));
    }
    Ok(s)
}

fn get_row(
    conn: &Connection,
    sealer: &Sealer,
    room_id: &str,
    session_id: &str,
) -> StoreResult<Option<ExportedSession>> {
    let hash = key_hash(room_id, session_id);
    Ok(find_row(conn, sealer, hash, room_id, session_id)?.map(|(_, s)| s))
}

/// A session's row id and content, found through its 8-byte key hash ([`key_hash`]).
fn find_row(
    conn: &Connection,
    sealer: &Sealer,
    hash: i64,
    room_id: &str,
    session_id: &str,
) -> StoreResult<Option<(i64, ExportedSession)>> {
    let row: Option<(i64, Vec<u8>)> = conn
        .prepare_cached(
            "SELECT s.id, d.data FROM sessions s JOIN session_data d ON d.id = s.id
             WHERE s.key_hash = ?1 AND s.room_id = ?2 AND s.session_id = ?3",
        )?
        .query_row(params![hash, room_id, session_id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    row.map(|(id, d)| open_row(sealer, room_id, session_id, &d).map(|s| (id, s)))
        .transpose()
}

/// The indexed lookup key of a session: 64 bits of SHA-256(room id, NUL, session id).
///
/// The index on it stays small (8 bytes an entry) however large the store grows, so imports
/// stay linear; it is not unique, and lookups check the ids themselves.
fn key_hash(room_id: &str, session_id: &str) -> i64 {
    let k = crate::sync::pair_key(room_id, session_id);
    i64::from_be_bytes([k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7]])
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// An open merge transaction.
pub struct MergeTx<'a> {
    tx: rusqlite::Transaction<'a>,
    sealer: &'a Sealer,
    counts: MergeCounts,
    /// Where the sessions merged next come from (recorded with each copy written).
    source: Option<String>,
}

impl std::fmt::Debug for MergeTx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MergeTx")
            .field("counts", &self.counts)
            .finish_non_exhaustive()
    }
}

impl MergeTx<'_> {
    /// Record `source` (e.g. `file:keys.txt`, `backup:3`, `client-store:nio:PATH`) with every
    /// copy written from now on (new sessions, and held ones replaced by a better copy).
    pub fn set_source(&mut self, source: impl Into<String>) {
        self.source = Some(source.into());
    }

    /// Merge a batch of validated sessions, keeping for each (room, session) the copy that
    /// decrypts more; `on_outcome` hears what happened to each, in order.
    pub fn merge_batch(
        &mut self,
        sessions: Vec<ExportedSession>,
        on_outcome: &mut dyn FnMut(&ExportedSession, Outcome),
    ) -> StoreResult<()> {
        // 1. Seal every incoming copy: most are new and will be written as is. This runs on
        //    the caller's (writer) thread, not the rayon pool: the pool is busy validating
        //    the next batch, and waiting behind it stalled the writes.
        let sealed: Vec<Vec<u8>> = sessions
            .iter()
            .map(|s| {
                self.sealer
                    .seal(&row_aad(&s.room_id, &s.session_id), &s.to_json())
            })
            .collect::<StoreResult<_>>()?;
        // 2. In order: look the session up by its key hash (a small, cached index); insert it
        //    when new, otherwise compare with the held copy and replace it when better. Earlier
        //    copies in this batch are already in the transaction, so a duplicate is compared
        //    with the best copy so far.
        let t = now();
        let mut outcomes = Vec::with_capacity(sessions.len());
        {
            let mut ins = self.tx.prepare_cached(
                "INSERT INTO sessions (key_hash, room_id, session_id, first_index, sender_key, updated_at, source)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            let mut ins_data = self
                .tx
                .prepare_cached("INSERT INTO session_data (id, data) VALUES (?1, ?2)")?;
            let mut upd = self.tx.prepare_cached(
                "UPDATE sessions SET first_index = ?2, sender_key = ?3, updated_at = ?4, source = ?5 WHERE id = ?1",
            )?;
            let mut upd_data = self
                .tx
                .prepare_cached("UPDATE session_data SET data = ?2 WHERE id = ?1")?;
            for (s, data) in sessions.iter().zip(&sealed) {
                let index = i64::from(s.first_known_index());
                let hash = key_hash(&s.room_id, &s.session_id);
                let outcome =
                    match find_row(&self.tx, self.sealer, hash, &s.room_id, &s.session_id)? {
                        None => {
                            ins.execute(params![
                                hash,
                                s.room_id,
                                s.session_id,
                                index,
                                s.sender_key,
                                t,
                                self.source
                            ])?;
                            ins_data.execute(params![self.tx.last_insert_rowid(), data])?;
                            Outcome::Imported
                        }
                        Some((id, held)) => match s.compare_to(&held) {
                            Ordering::Better => {
                                upd.execute(params![id, index, s.sender_key, t, self.source])?;
                                upd_data.execute(params![id, data])?;
                                Outcome::Improved
                            }
                            Ordering::Equal | Ordering::Worse => Outcome::Unchanged,
                            Ordering::Unconnected => Outcome::Conflict,
                        },
                    };
                outcomes.push(outcome);
            }
        }
        for (s, o) in sessions.iter().zip(outcomes) {
            self.counts.add(o);
            on_outcome(s, o);
        }
        Ok(())
    }

    /// Counts so far.
    pub fn counts(&self) -> MergeCounts {
        self.counts
    }

    /// Make the merge durable and visible.
    pub fn commit(self) -> StoreResult<MergeCounts> {
        self.tx.commit()?;
        Ok(self.counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use vodozemac::megolm::{GroupSession, InboundGroupSession, SessionConfig};

    fn session(group: &GroupSession, room: &str, index: u32) -> ExportedSession {
        let mut inbound =
            InboundGroupSession::new(&group.session_key(), SessionConfig::version_1());
        let key = inbound.export_at(index).unwrap().to_base64();
        let json = serde_json::json!({
            "algorithm": "m.megolm.v1.aes-sha2",
            "room_id": room,
            "sender_key": "DeHIg4gwhClxzFYcmNntPNF9YtsdZbmMy8+3kzCMXHA",
            "session_id": group.session_id(),
            "session_key": key,
            "sender_claimed_keys": {"ed25519": "x"},
            "forwarding_curve25519_key_chain": [],
            "x.unknown": 1
        });
        ExportedSession::from_json(json.to_string().as_bytes()).unwrap()
    }

    fn pass(s: &str) -> Passphrase {
        Passphrase::from_string(s.into())
    }

    #[test]
    fn sealed_store_round_trip_and_wrong_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        let sd = dir.path().join("store");
        Store::create(&sd, Some(&pass("pw")), 1).unwrap();
        assert_eq!(
            std::fs::metadata(&sd).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(
            std::fs::metadata(sd.join(DB_FILE))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        assert!(matches!(
            Store::create(&sd, None, 1),
            Err(StoreError::AlreadyExists(_))
        ));
        let locked = Store::open(&sd, Access::Write).unwrap();
        let (locked, e) = locked.unlock(Some(&pass("nope"))).unwrap_err();
        assert!(matches!(e, StoreError::WrongPassphrase));
        let mut store = locked.unlock(Some(&pass("pw"))).unwrap();
        let g = GroupSession::new(SessionConfig::version_1());
        let s5 = session(&g, "!a:x", 5);
        let s0 = session(&g, "!a:x", 0);
        let mut tx = store.merge_tx().unwrap();
        tx.merge_batch(vec![s5.clone()], &mut |_, _| {}).unwrap();
        assert_eq!(tx.commit().unwrap().imported, 1);
        let mut outs = Vec::new();
        let mut tx = store.merge_tx().unwrap();
        tx.merge_batch(vec![s5.clone(), s0.clone(), s5.clone()], &mut |_, o| {
            outs.push(o)
        })
        .unwrap();
        tx.commit().unwrap();
        assert_eq!(
            outs,
            vec![Outcome::Unchanged, Outcome::Improved, Outcome::Unchanged]
        );
        assert_eq!(store.get("!a:x", &g.session_id()).unwrap().unwrap(), s0);
        // the key is not stored in the clear
        let raw = std::fs::read(sd.join(DB_FILE)).unwrap();
        let needle = s0.expose_session_key().as_bytes()[..40].to_vec();
        assert!(!raw.windows(needle.len()).any(|w| w == needle));
        // a second writer is refused while this one holds the lock
        assert!(matches!(
            Store::open(&sd, Access::Write),
            Err(StoreError::Busy)
        ));
        drop(store);
        assert!(Store::open(&sd, Access::Write).is_ok());
    }

    #[test]
    fn uncommitted_merge_leaves_store_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        Store::create(dir.path(), None, 1).unwrap();
        let mut store = Store::open(dir.path(), Access::Write)
            .unwrap()
            .unlock(None)
            .unwrap();
        let g = GroupSession::new(SessionConfig::version_1());
        {
            let mut tx = store.merge_tx().unwrap();
            tx.merge_batch(vec![session(&g, "!a:x", 0)], &mut |_, _| {})
                .unwrap();
            // dropped without commit
        }
        assert_eq!(store.info().unwrap().sessions, 0);
    }

    #[test]
    fn insert_then_better_copy_in_one_batch() {
        let dir = tempfile::tempdir().unwrap();
        Store::create(dir.path(), None, 1).unwrap();
        let mut store = Store::open(dir.path(), Access::Write)
            .unwrap()
            .unlock(None)
            .unwrap();
        let g = GroupSession::new(SessionConfig::version_1());
        let mut outs = Vec::new();
        let mut tx = store.merge_tx().unwrap();
        tx.merge_batch(
            vec![
                session(&g, "!a:x", 9),
                session(&g, "!a:x", 3),
                session(&g, "!b:x", 3),
            ],
            &mut |_, o| outs.push(o),
        )
        .unwrap();
        tx.commit().unwrap();
        assert_eq!(
            outs,
            vec![Outcome::Imported, Outcome::Improved, Outcome::Imported]
        );
        let list = store.list(&[]).unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].min_first_index, 3);
        let mut seen = Vec::new();
        store
            .for_each_session(
                &Filter {
                    rooms: vec!["!a:x".into()],
                    ..Filter::default()
                },
                &mut |s| {
                    seen.push(s.first_known_index());
                    Ok(())
                },
            )
            .unwrap();
        assert_eq!(seen, vec![3]);
    }

    #[test]
    fn by_room_reads_grouped_by_room_and_default_reads_in_stored_order() {
        let dir = tempfile::tempdir().unwrap();
        Store::create(dir.path(), None, 1).unwrap();
        let mut store = Store::open(dir.path(), Access::Write)
            .unwrap()
            .unlock(None)
            .unwrap();
        let rooms = ["!c:x", "!a:x", "!b:x", "!a:x", "!c:x", "!b:x", "!a:x"];
        let batch: Vec<_> = rooms
            .iter()
            .map(|r| session(&GroupSession::new(SessionConfig::version_1()), r, 0))
            .collect();
        let mut tx = store.merge_tx().unwrap();
        tx.merge_batch(batch, &mut |_, _| {}).unwrap();
        tx.commit().unwrap();
        let read = |filter: &Filter| {
            let mut seen = Vec::new();
            store
                .for_each_session(filter, &mut |s| {
                    seen.push((s.room_id.clone(), s.session_id.clone()));
                    Ok(())
                })
                .unwrap();
            seen
        };
        let stored: Vec<String> = read(&Filter::default())
            .into_iter()
            .map(|(r, _)| r)
            .collect();
        assert_eq!(stored, rooms);
        let grouped = read(&Filter {
            by_room: true,
            ..Filter::default()
        });
        let mut sorted = grouped.clone();
        sorted.sort();
        assert_eq!(grouped, sorted);
        assert_eq!(grouped.len(), rooms.len());
    }
}
