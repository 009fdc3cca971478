//! matrix-nio's SQLite store (and the detection of every SQLite kind, [`detect`]) (matrix-commander, nio bots) and pantalaimon's `pan.db`, which is
//! nio's schema with one row in `accounts` per proxied account.
//!
//! Tables read: `storeversion(version)`, `accounts(id, user_id, device_id)`,
//! `megolminboundsessions(session_id, sender_key, account_id, fp_key, room_id, session)` and
//! `forwardedchains(sender_key, session_id)`. The `session` column is a pickle: vodozemac's
//! under SHA-256 of the pickle key (nio 0.26 and later), or libolm's (older nio, pantalaimon);
//! see [`super::pickle`]. The pickle key is nio's `AsyncClientConfig.pickle_key`, by default
//! `DEFAULT_KEY`.

use std::collections::BTreeSet;
use std::path::Path;

use rusqlite::{Connection, OptionalExtension};

use super::rows::{PickledRow, RowReader};
use super::snapshot::Snapshot;
use super::{Account, ClientStoreError, Kind, OpenOptions, ReadSummary, StoreInfo};
use crate::session::ExportedSession;

/// nio's default pickle key.
pub const DEFAULT_PICKLE_KEY: &str = "DEFAULT_KEY";
/// The newest `storeversion` read (nio 0.20 to 0.26 write 2).
pub const KNOWN_SCHEMA: i64 = 2;

fn connect(snap: &Snapshot, file: &Path, kind: Kind) -> Result<Connection, ClientStoreError> {
    snap.connect()
        .map_err(|e| ClientStoreError::damaged(file, kind, e))
}

/// Which kind's tables the copy has (nio's, pantalaimon's, matrix-sdk's or mautrix-go's)?
/// `None` when it is SQLite without any of them; an error when it is not a database at all.
pub fn detect(snap: &Snapshot, file: &Path) -> Result<Option<Kind>, ClientStoreError> {
    let unreadable = |e: rusqlite::Error| ClientStoreError::Unreadable {
        path: file.display().to_string(),
        reason: e.to_string(),
    };
    let c = snap.connect().map_err(unreadable)?;
    let tables: BTreeSet<String> = match c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .and_then(|mut s| {
            s.query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<BTreeSet<String>>>()
        }) {
        Ok(t) => t,
        Err(e) => return Err(unreadable(e)),
    };
    if tables.contains("inbound_group_session") && tables.contains("kv") {
        return Ok(Some(Kind::MatrixSdk));
    }
    if tables.contains("crypto_megolm_inbound_session") && tables.contains("crypto_account") {
        return Ok(Some(Kind::Mautrix));
    }
    if tables.contains("megolminboundsessions") && tables.contains("accounts") {
        // pantalaimon adds its own tables to nio's in the same file.
        let pan = tables.contains("servers") || tables.contains("pansyncTokens");
        return Ok(Some(if pan { Kind::Pantalaimon } else { Kind::Nio }));
    }
    Ok(None)
}

fn schema_version(
    c: &Connection,
    file: &Path,
    kind: Kind,
) -> Result<Option<i64>, ClientStoreError> {
    let v: Option<i64> = c
        .query_row("SELECT MAX(version) FROM storeversion", [], |r| r.get(0))
        .optional()
        .map_err(|e| ClientStoreError::damaged(file, kind, e))?
        .flatten();
    if let Some(found) = v
        && found > KNOWN_SCHEMA
    {
        return Err(ClientStoreError::NewerSchema {
            path: file.display().to_string(),
            kind,
            found,
            known: KNOWN_SCHEMA,
        });
    }
    Ok(v)
}

fn accounts(
    c: &Connection,
    file: &Path,
    kind: Kind,
) -> Result<Vec<(i64, Account)>, ClientStoreError> {
    let mut s = c
        .prepare("SELECT id, user_id, device_id FROM accounts ORDER BY user_id, device_id")
        .map_err(|e| ClientStoreError::damaged(file, kind, e))?;
    let rows = s
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                Account {
                    user_id: r.get(1)?,
                    device_id: r.get(2)?,
                },
            ))
        })
        .and_then(|r| r.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(|e| ClientStoreError::damaged(file, kind, e))?;
    Ok(rows)
}

/// The account to read: the only one, or the one `--user` names (`USER` or `USER/DEVICE`).
pub(super) fn choose<K: Clone>(
    all: &[(K, Account)],
    user: Option<&str>,
    file: &Path,
) -> Result<Option<(K, Account)>, ClientStoreError> {
    let list = || {
        all.iter()
            .map(|(_, a)| format!("{} {}", a.user_id, a.device_id))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match user {
        None => match all.len() {
            0 => Ok(None),
            1 => Ok(Some(all[0].clone())),
            n => Err(ClientStoreError::WhichAccount {
                path: file.display().to_string(),
                count: n,
                list: list(),
            }),
        },
        Some(u) => {
            let (uid, dev) = match u.split_once('/') {
                Some((a, b)) => (a, Some(b)),
                None => (u, None),
            };
            let hits: Vec<&(K, Account)> = all
                .iter()
                .filter(|(_, a)| a.user_id == uid && dev.is_none_or(|d| a.device_id == d))
                .collect();
            match hits.len() {
                1 => Ok(Some(hits[0].clone())),
                0 => Err(ClientStoreError::NoSuchAccount {
                    path: file.display().to_string(),
                    user: u.to_string(),
                }),
                n => Err(ClientStoreError::WhichAccount {
                    path: file.display().to_string(),
                    count: n,
                    list: list(),
                }),
            }
        }
    }
}

/// What the store holds; no pickle key needed.
pub fn inspect(
    snap: &Snapshot,
    file: &Path,
    kind: Kind,
    opts: &OpenOptions,
) -> Result<StoreInfo, ClientStoreError> {
    let c = connect(snap, file, kind)?;
    let schema_version = schema_version(&c, file, kind)?;
    let all = accounts(&c, file, kind)?;
    // Inspecting a store of several accounts without choosing one describes them all.
    let chosen = match choose(&all, opts.user.as_deref(), file) {
        Err(ClientStoreError::WhichAccount { .. }) if opts.user.is_none() => None,
        r => r?,
    };
    let (sessions, rooms) = c
        .query_row(
            "SELECT COUNT(*), COUNT(DISTINCT room_id) FROM megolminboundsessions \
             WHERE ?1 IS NULL OR account_id = ?1",
            [chosen.as_ref().map(|(id, _)| *id)],
            |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
        )
        .map_err(|e| ClientStoreError::damaged(file, kind, e))?;
    Ok(StoreInfo {
        path: file.to_path_buf(),
        kind,
        schema_version,
        accounts: all.iter().map(|(_, a)| a.clone()).collect(),
        account: chosen.map(|(_, a)| a),
        sessions,
        rooms,
        needs_key: true,
    })
}

/// Read every inbound session of the chosen account. A wrong pickle key is an error when no
/// row decrypts; single damaged rows are reported in the summary and skipped.
pub fn read_sessions(
    snap: &Snapshot,
    file: &Path,
    kind: Kind,
    opts: &OpenOptions,
    f: &mut dyn FnMut(ExportedSession) -> crate::Result<()>,
) -> crate::Result<ReadSummary> {
    let c = connect(snap, file, kind)?;
    schema_version(&c, file, kind)?;
    let all = accounts(&c, file, kind)?;
    let Some((account_id, _)) = choose(&all, opts.user.as_deref(), file)? else {
        return Ok(ReadSummary::default());
    };
    let key: &[u8] = opts
        .key
        .as_ref()
        .map(|k| k.expose_secret())
        .unwrap_or(DEFAULT_PICKLE_KEY.as_bytes());
    let mut chains = c
        .prepare("SELECT sender_key FROM forwardedchains WHERE session_id = ?1 ORDER BY id")
        .map_err(|e| ClientStoreError::damaged(file, kind, e))?;
    let mut rows = c
        .prepare(
            "SELECT session_id, sender_key, fp_key, room_id, session FROM megolminboundsessions \
             WHERE account_id = ?1 ORDER BY session_id",
        )
        .map_err(|e| ClientStoreError::damaged(file, kind, e))?;
    let mut q = rows
        .query([account_id])
        .map_err(|e| ClientStoreError::damaged(file, kind, e))?;
    let mut reader = RowReader::default();
    while let Some(r) = q
        .next()
        .map_err(|e| ClientStoreError::damaged(file, kind, e))?
    {
        let text = |i: usize| -> String {
            match r.get_ref(i) {
                Ok(rusqlite::types::ValueRef::Text(t)) => String::from_utf8_lossy(t).into_owned(),
                _ => String::new(),
            }
        };
        let (session_id, sender_key, fp_key, room_id) = (text(0), text(1), text(2), text(3));
        let blob: Vec<u8> = match r.get_ref(4) {
            Ok(rusqlite::types::ValueRef::Blob(b) | rusqlite::types::ValueRef::Text(b)) => {
                b.to_vec()
            }
            _ => Vec::new(),
        };
        let row = PickledRow {
            session_id: &session_id,
            room_id: &room_id,
            sender_key: &sender_key,
            claimed_ed25519: &fp_key,
            pickle: &blob,
        };
        let chain = || {
            chains
                .query_map([&session_id], |r| r.get::<_, String>(0))
                .and_then(|r| r.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(|e| ClientStoreError::damaged(file, kind, e))
        };
        if let Some(s) = reader.read(Some(key), &row, chain)? {
            f(s)?;
        }
    }
    Ok(reader.finish(file)?)
}
