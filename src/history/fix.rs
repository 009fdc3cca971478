//! `history check --fix`: fetch from the server backup exactly the sessions a check found
//! `in_backup`, one request per session, decrypt them with the backup key and merge them into
//! the store in one transaction (all of them, or none when anything fails).

use serde::Serialize;

use crate::backup::{self, BackupDecryptionKey};
use crate::client::Client;
use crate::progress::{self, Progress};
use crate::store::{MergeCounts, Store};

/// What fetching the helping sessions did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Fetched {
    /// Sessions asked for.
    pub wanted: u64,
    /// Sessions the backup returned.
    pub downloaded: u64,
    /// How the store took them.
    pub merge: MergeCounts,
    /// Sessions the backup key could not decrypt, or that were not valid sessions.
    pub rejected: Vec<Rejected>,
}

/// A session the backup returned that could not be used.
#[derive(Debug, Clone, Serialize)]
pub struct Rejected {
    /// Room.
    pub room_id: String,
    /// Session.
    pub session_id: String,
    /// Why.
    pub reason: String,
}

/// Fetch `wanted` (room, session) pairs from backup `version` into `store`.
pub fn fetch_into_store(
    client: &Client,
    version: &str,
    key: &BackupDecryptionKey,
    wanted: &[(String, String)],
    store: &mut Store,
    progress: &dyn Progress,
) -> crate::Result<Fetched> {
    let mut items = Vec::with_capacity(wanted.len());
    for (room_id, session_id) in wanted {
        progress::check(progress)?;
        client.room_keys(
            version,
            Some(room_id),
            Some(session_id),
            &crate::progress::NoProgress,
            &mut |k| {
                items.push((k.room_id, k.session_id, k.data));
                Ok(())
            },
        )?;
        progress.advance(1);
    }
    let mut out = Fetched {
        wanted: wanted.len() as u64,
        downloaded: items.len() as u64,
        ..Fetched::default()
    };
    let results = backup::decrypt_many(key, &items);
    let mut valid = Vec::with_capacity(results.len());
    for ((room_id, session_id, _), r) in items.into_iter().zip(results) {
        match r {
            Ok(s) => valid.push(s),
            Err(e) => out.rejected.push(Rejected {
                room_id,
                session_id,
                reason: e.to_string(),
            }),
        }
    }
    if !valid.is_empty() {
        let mut tx = store.merge_tx()?;
        tx.set_source(format!("backup:{version}"));
        tx.merge_batch(valid, &mut |_, _| {})?;
        out.merge = tx.commit()?;
    }
    Ok(out)
}
