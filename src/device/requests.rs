//! Room-key requests (`m.room_key_request` → `m.forwarded_room_key`) to the user's own devices.
//!
//! The machine builds each request from an encrypted event of the session (`request_room_key`
//! reads only its room, session id and sender key), records it, and later accepts a forwarded
//! key only when it matches a pending request and comes from an own verified device; then it
//! queues the cancellation of that request to the other devices itself.
//!
//! mxkeys often knows a session only by its ids (from `history check`, or given by hand), so
//! the event handed to the machine is made here: the ids, and as ciphertext a well-formed
//! Megolm message of a throw-away session (the machine parses it but never uses it).

use std::collections::BTreeSet;
use std::time::Duration;

use matrix_sdk_crypto::types::events::room::encrypted::EncryptedEvent;
use ruma::serde::Raw;
use serde_json::json;

use super::{Device, DeviceError, sync, transport};
use crate::client::Client;

/// A session to ask for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Wanted {
    /// Its room.
    pub room_id: String,
    /// Its session id.
    pub session_id: String,
    /// The Curve25519 key of the device that created it, when known.
    pub sender_key: Option<String>,
    /// The user who sent its events (to find the key by device when the events do not name it).
    pub sender: Option<String>,
    /// The device its events claim.
    pub device_id: Option<String>,
}

/// What the wait brought.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Requests sent.
    pub sent: usize,
    /// Sessions whose key arrived (room, session).
    pub arrived: BTreeSet<(String, String)>,
    /// Everything received while waiting (the caller copies the keys).
    pub batches: Vec<sync::Batch>,
}

/// A syntactically valid Megolm ciphertext, from a throw-away outbound session.
fn placeholder_ciphertext() -> String {
    let mut s = vodozemac::megolm::GroupSession::new(Default::default());
    s.encrypt("{}").to_base64()
}

fn event_for(
    w: &Wanted,
    user_id: &str,
    ciphertext: &str,
) -> Result<Raw<EncryptedEvent>, DeviceError> {
    let mut content = json!({
        "algorithm": "m.megolm.v1.aes-sha2",
        "session_id": w.session_id,
        "ciphertext": ciphertext,
    });
    if let Some(k) = &w.sender_key {
        content["sender_key"] = json!(k);
    }
    let ev = json!({
        "type": "m.room.encrypted",
        "event_id": format!("$mxkeys-request-{}", w.session_id),
        "sender": user_id,
        "origin_server_ts": super::now_ms(),
        "room_id": w.room_id,
        "content": content,
    });
    serde_json::from_value(ev)
        .map_err(|e| DeviceError::Protocol(format!("session {}: {e}", w.session_id)))
}

/// Send requests for `wanted` to the user's devices, then sync until every key arrived or
/// `wait` has passed (`cancelled` is polled between syncs).
pub fn request(
    dev: &Device,
    client: &Client,
    wanted: &[Wanted],
    wait: Duration,
    cancelled: &dyn Fn() -> bool,
) -> Result<Outcome, DeviceError> {
    let m = dev.machine();
    let ct = placeholder_ciphertext();
    let mut out = Outcome::default();
    dev.block_on(async {
        m.update_tracked_users([m.user_id()]).await?;
        transport::flush(m, client).await?;
        for w in wanted {
            let mut w = w.clone();
            if w.sender_key.is_none()
                && let (Some(u), Some(d)) = (&w.sender, &w.device_id)
                && let Ok(user) = ruma::OwnedUserId::try_from(u.as_str())
            {
                m.update_tracked_users([user.as_ref()]).await?;
                transport::flush(m, client).await?;
                w.sender_key = m
                    .get_device(
                        &user,
                        &ruma::OwnedDeviceId::from(d.as_str()),
                        Some(super::QUERY_WAIT),
                    )
                    .await?
                    .and_then(|dev| dev.curve25519_key())
                    .map(|k| k.to_base64());
            }
            let w = &w;
            let room = ruma::OwnedRoomId::try_from(w.room_id.as_str())
                .map_err(|e| DeviceError::Protocol(format!("bad room id {:?}: {e}", w.room_id)))?;
            let ev = event_for(w, &dev.record().user_id, &ct)?;
            // An earlier run's request for the same session comes back with its old id (and a
            // cancellation of it, not sent: it would race the repeat). The repeat goes out
            // under a new transaction id: Synapse drops a to-device PUT whose transaction id it
            // has seen from this device in the last half hour or so.
            let (_cancel, req) = m.request_room_key(&ev, &room).await?;
            transport::send_fresh(m, client, req.request_id(), req.request()).await?;
            out.sent += 1;
        }
        Ok::<_, DeviceError>(())
    })?;
    let want: BTreeSet<(String, String)> = wanted
        .iter()
        .map(|w| (w.room_id.clone(), w.session_id.clone()))
        .collect();
    sync::until(dev, client, wait, cancelled, |batch| {
        if let Some(b) = batch {
            for s in &b.keys {
                let k = (s.room_id.clone(), s.session_id.clone());
                if want.contains(&k) {
                    out.arrived.insert(k);
                }
            }
            out.batches.push(b);
        }
        Ok(out.arrived.len() >= want.len())
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_made_event_parses_as_the_machine_reads_it() {
        let w = Wanted {
            room_id: "!r:localhost".into(),
            session_id: "abc".into(),
            sender_key: None,
            sender: None,
            device_id: None,
        };
        let raw = event_for(&w, "@a:localhost", &placeholder_ciphertext()).unwrap();
        let ev = raw.deserialize().unwrap();
        let room = ruma::OwnedRoomId::try_from("!r:localhost").unwrap();
        assert!(ev.room_key_info(&room).is_some());
    }
}
