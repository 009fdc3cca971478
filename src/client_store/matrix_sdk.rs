//! matrix-rust-sdk's SQLite crypto store (`matrix-sdk-crypto.sqlite3`: Element X, Fractal,
//! iamb, bots on matrix-sdk), read through the crate's own public API
//! (`SqliteCryptoStore::open`, `get_inbound_group_sessions`, `InboundGroupSession::export`).
//!
//! Opening runs the crate's forward migrations in place and would never refuse a newer
//! database, so two rules hold: it only ever opens the private copy ([`Snapshot`]), and the
//! schema version (`kv["version"]`, one byte) is checked first with plain SQLite: newer than
//! [`KNOWN_SCHEMA`] is an error, not a migration. A store sealed with a passphrase
//! (`kv["cipher"]` present) needs it for everything but the counts.

use std::path::Path;

use matrix_sdk_crypto::store::CryptoStore;
use matrix_sdk_sqlite::{OpenStoreError, SqliteCryptoStore};
use rusqlite::OptionalExtension;

use super::snapshot::Snapshot;
use super::{Account, ClientStoreError, Kind, OpenOptions, ReadSummary, RejectedRow, StoreInfo};
use crate::session::ExportedSession;

/// The database's file name inside the store directory.
pub const DATABASE_NAME: &str = super::MATRIX_SDK_DATABASE;
/// The newest schema the crate in this build (matrix-sdk-sqlite 0.18.0) migrates to.
pub const KNOWN_SCHEMA: i64 = 17;
/// The oldest schema read (the crate migrates older ones on the copy).
pub const OLDEST_SCHEMA: i64 = 1;

fn damaged(file: &Path, e: impl std::fmt::Display) -> ClientStoreError {
    ClientStoreError::damaged(file, Kind::MatrixSdk, e)
}

/// The schema version and whether the store is sealed, read with plain SQLite from the copy.
fn version_and_seal(snap: &Snapshot, file: &Path) -> Result<(i64, bool), ClientStoreError> {
    let c = snap.connect().map_err(|e| damaged(file, e))?;
    let kv = |k: &str| -> Result<Option<Vec<u8>>, ClientStoreError> {
        c.query_row("SELECT value FROM kv WHERE key = ?1", [k], |r| r.get(0))
            .optional()
            .map_err(|e| damaged(file, e))
    };
    let version = match kv("version")?.as_deref() {
        Some([v]) => i64::from(*v),
        Some(_) => return Err(damaged(file, "the schema version is not one byte")),
        None => return Err(damaged(file, "no schema version in kv")),
    };
    if version > KNOWN_SCHEMA {
        return Err(ClientStoreError::NewerSchema {
            path: file.display().to_string(),
            kind: Kind::MatrixSdk,
            found: version,
            known: KNOWN_SCHEMA,
        });
    }
    Ok((version, kv("cipher")?.is_some()))
}

fn runtime(file: &Path) -> Result<tokio::runtime::Runtime, ClientStoreError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| ClientStoreError::Copy {
            path: file.display().to_string(),
            source: e,
        })
}

/// Open the copy with the crate. A sealed store without the right passphrase fails here.
async fn open_store(
    snap: &Snapshot,
    file: &Path,
    opts: &OpenOptions,
    sealed: bool,
) -> Result<SqliteCryptoStore, ClientStoreError> {
    let pass = match &opts.key {
        Some(k) => Some(
            std::str::from_utf8(k.expose_secret())
                .map_err(|_| ClientStoreError::WrongPassphrase {
                    path: file.display().to_string(),
                })?
                .to_owned(),
        ),
        None if sealed => {
            return Err(ClientStoreError::WrongPassphrase {
                path: file.display().to_string(),
            });
        }
        None => None,
    };
    let pass = zeroize::Zeroizing::new(pass);
    SqliteCryptoStore::open(snap.dir(), pass.as_deref())
        .await
        .map_err(|e| match e {
            OpenStoreError::InitCipher(_) | OpenStoreError::LoadCipher(_) => {
                ClientStoreError::WrongPassphrase {
                    path: file.display().to_string(),
                }
            }
            other => damaged(file, other),
        })
}

/// What the store holds. Without the passphrase of a sealed store: the counts only.
pub fn inspect(
    snap: &Snapshot,
    file: &Path,
    opts: &OpenOptions,
) -> Result<StoreInfo, ClientStoreError> {
    let (version, sealed) = version_and_seal(snap, file)?;
    let c = snap.connect().map_err(|e| damaged(file, e))?;
    let (sessions, rooms) = c
        .query_row(
            "SELECT COUNT(*), COUNT(DISTINCT room_id) FROM inbound_group_session",
            [],
            |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
        )
        .map_err(|e| damaged(file, e))?;
    drop(c);
    let account = if !sealed || opts.key.is_some() {
        let rt = runtime(file)?;
        rt.block_on(async {
            let store = open_store(snap, file, opts, sealed).await?;
            let acc = store.load_account().await.map_err(|e| damaged(file, e))?;
            Ok::<_, ClientStoreError>(acc.map(|a| Account {
                user_id: a.user_id().to_string(),
                device_id: a.device_id().to_string(),
            }))
        })?
    } else {
        None
    };
    Ok(StoreInfo {
        path: file.to_path_buf(),
        kind: Kind::MatrixSdk,
        schema_version: Some(version),
        accounts: account.iter().cloned().collect(),
        account,
        sessions,
        rooms,
        needs_key: sealed,
    })
}

/// Every inbound group session, exported by the crate itself.
pub fn read_sessions(
    snap: &Snapshot,
    file: &Path,
    opts: &OpenOptions,
    f: &mut dyn FnMut(ExportedSession) -> crate::Result<()>,
) -> crate::Result<ReadSummary> {
    let (_, sealed) = version_and_seal(snap, file)?;
    let withheld: Option<u64> = snap.connect().ok().and_then(|c| {
        c.query_row("SELECT COUNT(*) FROM direct_withheld_info", [], |r| {
            r.get::<_, i64>(0)
        })
        .ok()
        .map(|n| n as u64)
    });
    let rt = runtime(file)?;
    let sessions = rt.block_on(async {
        let store = open_store(snap, file, opts, sealed).await?;
        let all = store
            .get_inbound_group_sessions()
            .await
            .map_err(|e| damaged(file, e))?;
        let mut out = Vec::with_capacity(all.len());
        for s in all {
            let imported = s.has_been_imported();
            let backed_up = s.backed_up();
            let room = s.room_id().to_string();
            let id = s.session_id().to_owned();
            out.push((room, id, imported, backed_up, s.export().await));
        }
        Ok::<_, ClientStoreError>(out)
    })?;
    let mut summary = ReadSummary {
        withheld,
        ..ReadSummary::default()
    };
    for (room_id, session_id, imported, backed_up, key) in sessions {
        let json = zeroize::Zeroizing::new(serde_json::to_vec(&key).unwrap_or_default());
        drop(key);
        match ExportedSession::from_json(&json) {
            Ok(s) => {
                summary.sessions += 1;
                summary.imported_by_client += u64::from(imported);
                summary.backed_up_by_client += u64::from(backed_up);
                f(s)?;
            }
            Err(e) => {
                if summary.rejected.len() < super::MAX_REJECTED_LISTED {
                    summary.rejected.push(RejectedRow {
                        room_id,
                        session_id,
                        reason: match e {
                            crate::session::EntryError::Syntax(m) => m,
                            crate::session::EntryError::Invalid(e) => e.to_string(),
                        },
                    });
                }
            }
        }
    }
    Ok(summary)
}
