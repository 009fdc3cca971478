//! Room keys out of the machine's store into the key store, each with where it came from.
//!
//! Source labels (the `source` column of the key store, shown by `list`):
//! - `direct:@user:DEVICE`: an `m.room_key` the sending device shared with this device;
//! - `forwarded:@user:DEVICE`: an `m.forwarded_room_key` one of the user's own verified
//!   devices sent in answer to a request (the crate accepts no other);
//! - `dehydrated:DEVICE`: read from the account's dehydrated device;
//! - `device`: held by the device, origin not recorded (copied again on open).
//!
//! The key store's merge rule decides which copy is kept: a copy never replaces a better one.

use std::collections::HashMap;

use matrix_sdk_crypto::OlmMachine;
use matrix_sdk_crypto::olm::ExportedRoomKey;
use matrix_sdk_crypto::store::types::RoomKeyInfo;

use super::{Device, DeviceError};
use crate::session::ExportedSession;
use crate::store::{MergeCounts, Store};

/// Label of a key whose origin was not seen (found on reconcile).
pub const SOURCE_DEVICE: &str = "device";

/// (room, session) → source label, for the keys of one batch.
pub type Sources = HashMap<(String, String), String>;

/// Convert the crate's export of a key into the session model (checked as any import is).
fn to_session(key: &ExportedRoomKey) -> Option<ExportedSession> {
    let json = zeroize::Zeroizing::new(serde_json::to_vec(key).ok()?);
    match ExportedSession::from_json(&json) {
        Ok(s) => Some(s),
        Err(e) => {
            log::warn!("skipping a key the device holds: {e:?}");
            None
        }
    }
}

/// Export the machine's copies of `infos`.
pub async fn export(
    machine: &OlmMachine,
    infos: &[RoomKeyInfo],
) -> Result<Vec<ExportedSession>, DeviceError> {
    let mut out = Vec::with_capacity(infos.len());
    for i in infos {
        let held = machine
            .store()
            .get_inbound_group_session(&i.room_id, &i.session_id)
            .await?;
        if let Some(held) = held
            && let Some(s) = to_session(&held.export().await)
        {
            out.push(s);
        }
    }
    Ok(out)
}

/// Merge `sessions` into the key store in one transaction, labelling each with its source
/// from `sources` (else `default`).
pub fn merge(
    store: &mut Store,
    sessions: Vec<ExportedSession>,
    sources: &Sources,
    default: &str,
) -> Result<MergeCounts, DeviceError> {
    let mut tx = store.merge_tx()?;
    for s in sessions {
        let label = sources
            .get(&(s.room_id.clone(), s.session_id.clone()))
            .map(String::as_str)
            .unwrap_or(default);
        tx.set_source(label);
        tx.merge_batch(vec![s], &mut |_, _| {})?;
    }
    Ok(tx.commit()?)
}

/// Copy every key the machine holds (unchanged copies merge as "unchanged").
pub fn copy_all(dev: &Device, store: &mut Store) -> Result<MergeCounts, DeviceError> {
    let keys = dev.block_on(async {
        let all = dev.machine().store().get_inbound_group_sessions().await?;
        let mut out = Vec::with_capacity(all.len());
        for s in all {
            if let Some(s) = to_session(&s.export().await) {
                out.push(s);
            }
        }
        Ok::<_, DeviceError>(out)
    })?;
    merge(store, keys, &Sources::new(), SOURCE_DEVICE)
}
