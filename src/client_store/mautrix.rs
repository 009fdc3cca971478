//! mautrix-go's SQL crypto store (`crypto.NewSQLCryptoStore`: the mautrix bridges, gomuks,
//! bots on mautrix-go), in SQLite.
//!
//! Tables read: `crypto_version(version, compat)`, `crypto_account(account_id, device_id)` and
//! `crypto_megolm_inbound_session(account_id, session_id, sender_key, signing_key, room_id,
//! session, forwarding_chains, withheld_code, …)`; from schema 14 on also `key_backup_version`,
//! from 19 on `key_source` (`direct`, `forward`, `import`, `backup`). Schemas 10 (mautrix-go
//! v0.15) to 21 (current) are read; mautrix's own rule for newer ones is followed: a store of a
//! newer version whose `compat` is still one mxkeys knows is read, any other is refused.
//!
//! `session` is a libolm pickle (libolm through cgo, or goolm's compatible format) encrypted
//! with the pickle key's bytes ([`super::pickle`]); mautrix has no default pickle key (a bridge's
//! is in its configuration or code). `forwarding_chains` is the chain joined with commas. A row
//! without a session is a withheld notice (`m.room_key.withheld`) or a session the client
//! deleted (`com.beeper.redacted` and the other redaction codes): counted as withheld, not read.
//! The account is `crypto_account.account_id` (a user id for gomuks and bots; the bridge bot's
//! id, or empty, for bridges); a store may hold several.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension};

use super::rows::{PickledRow, RowReader};
use super::snapshot::Snapshot;
use super::{Account, ClientStoreError, Kind, OpenOptions, ReadSummary, StoreInfo};
use crate::session::ExportedSession;

/// The newest `crypto_version` read (mautrix-go v0.15 writes 10; the current one 21).
pub const KNOWN_SCHEMA: i64 = 21;

const KIND: Kind = Kind::Mautrix;

fn damaged(file: &Path, e: impl std::fmt::Display) -> ClientStoreError {
    ClientStoreError::damaged(file, KIND, e)
}

/// The store's schema version, refused when newer than mxkeys reads and not compatible with
/// one it reads.
fn schema_version(c: &Connection, file: &Path) -> Result<Option<i64>, ClientStoreError> {
    let has = |table: &str| -> Result<bool, ClientStoreError> {
        c.query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [table],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n > 0)
        .map_err(|e| damaged(file, e))
    };
    if !has("crypto_version")? {
        return Ok(None);
    }
    let compat_column = columns(c, file, "crypto_version")?
        .iter()
        .any(|c| c == "compat");
    let sql = if compat_column {
        "SELECT version, compat FROM crypto_version LIMIT 1"
    } else {
        "SELECT version, NULL FROM crypto_version LIMIT 1"
    };
    let row: Option<(Option<i64>, Option<i64>)> = c
        .query_row(sql, [], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map_err(|e| damaged(file, e))?;
    let Some((Some(version), compat)) = row else {
        return Ok(None);
    };
    if version > KNOWN_SCHEMA && compat.unwrap_or(version) > KNOWN_SCHEMA {
        return Err(ClientStoreError::NewerSchema {
            path: file.display().to_string(),
            kind: KIND,
            found: version,
            known: KNOWN_SCHEMA,
        });
    }
    Ok(Some(version))
}

fn columns(c: &Connection, file: &Path, table: &str) -> Result<Vec<String>, ClientStoreError> {
    let mut s = c
        .prepare("SELECT name FROM pragma_table_info(?1)")
        .map_err(|e| damaged(file, e))?;
    s.query_map([table], |r| r.get::<_, String>(0))
        .and_then(|r| r.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(|e| damaged(file, e))
}

fn accounts(c: &Connection, file: &Path) -> Result<Vec<(String, Account)>, ClientStoreError> {
    let mut s = c
        .prepare("SELECT account_id, device_id FROM crypto_account ORDER BY account_id, device_id")
        .map_err(|e| damaged(file, e))?;
    s.query_map([], |r| {
        let id: String = r.get(0)?;
        Ok((
            id.clone(),
            Account {
                user_id: id,
                device_id: r.get(1)?,
            },
        ))
    })
    .and_then(|r| r.collect::<rusqlite::Result<Vec<_>>>())
    .map_err(|e| damaged(file, e))
}

/// What the store holds; no pickle key needed.
pub fn inspect(
    snap: &Snapshot,
    file: &Path,
    opts: &OpenOptions,
) -> Result<StoreInfo, ClientStoreError> {
    let c = snap.connect().map_err(|e| damaged(file, e))?;
    let schema_version = schema_version(&c, file)?;
    let all = accounts(&c, file)?;
    let chosen = match super::nio::choose(&all, opts.user.as_deref(), file) {
        Err(ClientStoreError::WhichAccount { .. }) if opts.user.is_none() => None,
        r => r?,
    };
    let (sessions, rooms) = c
        .query_row(
            "SELECT COUNT(*), COUNT(DISTINCT room_id) FROM crypto_megolm_inbound_session \
             WHERE session IS NOT NULL AND (?1 IS NULL OR account_id = ?1)",
            [chosen.as_ref().map(|(id, _)| id.as_str())],
            |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
        )
        .map_err(|e| damaged(file, e))?;
    Ok(StoreInfo {
        path: file.to_path_buf(),
        kind: KIND,
        schema_version,
        accounts: all.iter().map(|(_, a)| a.clone()).collect(),
        account: chosen.map(|(_, a)| a),
        sessions,
        rooms,
        needs_key: true,
    })
}

fn text(r: &rusqlite::Row<'_>, i: usize) -> String {
    match r.get_ref(i) {
        Ok(rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t)) => {
            String::from_utf8_lossy(t).into_owned()
        }
        _ => String::new(),
    }
}

/// Read every inbound session of the chosen account. No key, or a key that opens no row, is
/// [`ClientStoreError::WrongPickleKey`]; single damaged rows are reported and skipped.
pub fn read_sessions(
    snap: &Snapshot,
    file: &Path,
    opts: &OpenOptions,
    f: &mut dyn FnMut(ExportedSession) -> crate::Result<()>,
) -> crate::Result<ReadSummary> {
    let c = snap.connect().map_err(|e| damaged(file, e))?;
    schema_version(&c, file)?;
    let all = accounts(&c, file)?;
    let Some((account_id, _)) = super::nio::choose(&all, opts.user.as_deref(), file)? else {
        return Ok(ReadSummary::default());
    };
    let cols = columns(&c, file, "crypto_megolm_inbound_session")?;
    let optional = |name: &str| {
        if cols.iter().any(|c| c == name) {
            name.to_string()
        } else {
            format!("'' AS {name}")
        }
    };
    let sql = format!(
        "SELECT session_id, sender_key, signing_key, room_id, session, forwarding_chains, \
         withheld_code, {}, {} FROM crypto_megolm_inbound_session WHERE account_id = ?1 \
         ORDER BY session_id",
        optional("key_source"),
        optional("key_backup_version"),
    );
    let mut rows = c.prepare(&sql).map_err(|e| damaged(file, e))?;
    let mut q = rows.query([&account_id]).map_err(|e| damaged(file, e))?;
    let key: Option<&[u8]> = opts.key.as_ref().map(|k| k.expose_secret());
    let mut reader = RowReader::new(ReadSummary {
        withheld: Some(0),
        ..ReadSummary::default()
    });
    while let Some(r) = q.next().map_err(|e| damaged(file, e))? {
        let (session_id, sender_key, signing_key, room_id) =
            (text(r, 0), text(r, 1), text(r, 2), text(r, 3));
        let blob: Option<Vec<u8>> = match r.get_ref(4) {
            Ok(rusqlite::types::ValueRef::Blob(b) | rusqlite::types::ValueRef::Text(b)) => {
                Some(b.to_vec())
            }
            _ => None,
        };
        let Some(blob) = blob else {
            if !text(r, 6).is_empty() {
                if let Some(w) = reader.summary.withheld.as_mut() {
                    *w += 1;
                }
            } else {
                reader.reject(
                    &room_id,
                    &session_id,
                    "the row holds no session and no withheld code".into(),
                );
            }
            continue;
        };
        let row = PickledRow {
            session_id: &session_id,
            room_id: &room_id,
            sender_key: &sender_key,
            claimed_ed25519: &signing_key,
            pickle: &blob,
        };
        let chain = || {
            Ok(text(r, 5)
                .split(',')
                .filter(|k| !k.is_empty())
                .map(str::to_string)
                .collect())
        };
        if let Some(s) = reader.read(key, &row, chain)? {
            let source = text(r, 7);
            if source == "import" || source == "backup" {
                reader.summary.imported_by_client += 1;
            }
            if !text(r, 8).is_empty() {
                reader.summary.backed_up_by_client += 1;
            }
            f(s)?;
        }
    }
    Ok(reader.finish(file)?)
}
