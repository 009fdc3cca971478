//! Receiving: one `/sync` at a time, its to-device messages, device-list changes and key counts
//! handed to the machine (`receive_sync_changes`, which stores what they carry together with
//! the sync position), then the new room keys copied into the key store with their sources,
//! and the machine's answers sent.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use matrix_sdk_common::deserialized_responses::ProcessedToDeviceEvent;
use matrix_sdk_crypto::{DecryptionSettings, EncryptionSyncChanges, TrustRequirement};
use ruma::OneTimeKeyAlgorithm;
use ruma::UInt;
use ruma::api::client::sync::sync_events::DeviceLists;
use ruma::events::AnyToDeviceEvent;
use ruma::serde::Raw;
use serde_json::Value;

use super::keys::{self, Sources};
use super::{Device, DeviceError, transport};
use crate::client::Client;
use crate::session::ExportedSession;

/// What one sync brought.
#[derive(Debug, Default)]
pub struct Batch {
    /// To-device messages received.
    pub to_device: usize,
    /// Room keys the machine stored (new or better), exported.
    pub keys: Vec<ExportedSession>,
    /// Their sources.
    pub sources: Sources,
    /// Types of the decrypted to-device events (for the caller's reports).
    pub decrypted_types: Vec<String>,
    /// Senders (`@user:DEVICE`) of the `m.secret.send` messages the machine decrypted.
    pub secret_senders: Vec<String>,
}

/// The sync position the machine stored with the last batch it processed.
pub fn position(dev: &Device) -> Result<Option<String>, DeviceError> {
    Ok(dev.block_on(dev.machine().store().next_batch_token())?)
}

fn label(kind: &str, sender: &str, device: Option<&str>) -> String {
    format!("{kind}:{sender}:{}", device.unwrap_or("?"))
}

/// Room and session of a room-key event's content.
fn key_ids(content: &Value) -> Option<(String, String)> {
    Some((
        content.get("room_id")?.as_str()?.to_string(),
        content.get("session_id")?.as_str()?.to_string(),
    ))
}

/// The device that sent an Olm message, by its Curve25519 key, when the machine did not name
/// it (it names only devices whose keys came signed with the message).
async fn sender_device(
    m: &matrix_sdk_crypto::OlmMachine,
    info: &matrix_sdk_common::deserialized_responses::EncryptionInfo,
) -> Option<String> {
    let matrix_sdk_common::deserialized_responses::AlgorithmInfo::OlmV1Curve25519AesSha2 {
        curve25519_public_key_base64: key,
    } = &info.algorithm_info
    else {
        return None;
    };
    let devices = m.get_user_devices(&info.sender, None).await.ok()?;
    devices
        .devices()
        .find(|d| d.curve25519_key().is_some_and(|k| k.to_base64() == *key))
        .map(|d| d.device_id().to_string())
}

/// Sync once (the server waits up to `timeout_ms` for something new) and process it.
pub fn once(dev: &Device, client: &Client, timeout_ms: u64) -> Result<Batch, DeviceError> {
    let since = position(dev)?;
    let resp = client.sync_device(since.as_deref(), timeout_ms)?;
    process(dev, client, &resp)
}

/// Sync until `step` says the wait is over, or `wait` has passed (`cancelled` is polled
/// between syncs). `step` is asked first with no batch (is it over already?), then with each
/// batch as it is processed.
pub fn until(
    dev: &Device,
    client: &Client,
    wait: Duration,
    cancelled: &dyn Fn() -> bool,
    mut step: impl FnMut(Option<Batch>) -> Result<bool, DeviceError>,
) -> Result<(), DeviceError> {
    let deadline = Instant::now() + wait;
    if step(None)? {
        return Ok(());
    }
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        if cancelled() {
            return Err(DeviceError::Interrupted);
        }
        let batch = once(dev, client, left.as_millis().min(MAX_WAIT_MS) as u64)?;
        if step(Some(batch))? {
            return Ok(());
        }
    }
}

/// Longest single wait on the server inside [`until`].
const MAX_WAIT_MS: u128 = 10_000;

/// Hand one `/sync` response to the machine.
pub fn process(dev: &Device, client: &Client, resp: &Value) -> Result<Batch, DeviceError> {
    let bad = |what: &str, e: serde_json::Error| {
        DeviceError::Protocol(format!(
            "the homeserver's sync response has a bad {what}: {e}"
        ))
    };
    let next_batch = resp
        .get("next_batch")
        .and_then(Value::as_str)
        .ok_or_else(|| DeviceError::Protocol("the sync response has no next_batch".into()))?
        .to_string();
    let events: Vec<Raw<AnyToDeviceEvent>> = match resp.pointer("/to_device/events") {
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| bad("to_device", e))?,
        None => Vec::new(),
    };
    let lists: DeviceLists = match resp.get("device_lists") {
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| bad("device_lists", e))?,
        None => DeviceLists::default(),
    };
    let counts: BTreeMap<OneTimeKeyAlgorithm, UInt> = match resp.get("device_one_time_keys_count") {
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| bad("key counts", e))?,
        None => BTreeMap::new(),
    };
    let fallback: Option<Vec<OneTimeKeyAlgorithm>> = match resp
        .get("device_unused_fallback_key_types")
    {
        Some(v) => Some(serde_json::from_value(v.clone()).map_err(|e| bad("fallback keys", e))?),
        None => None,
    };
    let n = events.len();
    let settings = DecryptionSettings {
        sender_device_trust_requirement: TrustRequirement::Untrusted,
    };
    dev.block_on(async {
        let m = dev.machine();
        let (processed, infos) = m
            .receive_sync_changes(
                EncryptionSyncChanges {
                    to_device_events: events,
                    changed_devices: &lists,
                    one_time_keys_counts: &counts,
                    unused_fallback_keys: fallback.as_deref(),
                    next_batch_token: Some(next_batch),
                },
                &settings,
            )
            .await?;
        let mut batch = Batch {
            to_device: n,
            ..Batch::default()
        };
        for p in &processed {
            let (raw, info) = match p {
                ProcessedToDeviceEvent::Decrypted {
                    raw,
                    encryption_info,
                } => (raw, Some(encryption_info)),
                ProcessedToDeviceEvent::PlainText(raw) => (raw, None),
                _ => continue,
            };
            let Ok(v) = raw.deserialize_as::<Value>() else {
                continue;
            };
            let ty = v
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let Some(info) = info else { continue };
            batch.decrypted_types.push(ty.clone());
            let found = match &info.sender_device {
                Some(d) => Some(d.to_string()),
                None => sender_device(m, info).await,
            };
            let device = found.as_deref();
            if ty == "m.secret.send" {
                batch
                    .secret_senders
                    .push(format!("{}:{}", info.sender, device.unwrap_or("?")));
            }
            let kind = match ty.as_str() {
                "m.room_key" => "direct",
                "m.forwarded_room_key" => "forwarded",
                _ => continue,
            };
            if let Some(ids) = v.get("content").and_then(key_ids) {
                batch
                    .sources
                    .insert(ids, label(kind, info.sender.as_str(), device));
            }
        }
        for p in &processed {
            if let ProcessedToDeviceEvent::UnableToDecrypt { utd_info, .. } = p {
                log::debug!("a to-device message did not decrypt: {utd_info:?}");
            }
        }
        log::debug!(
            "sync: {} to-device messages, decrypted {:?}, {} room keys stored",
            n,
            batch.decrypted_types,
            infos.len()
        );
        batch.keys = keys::export(m, &infos).await?;
        transport::flush(m, client).await?;
        Ok::<_, DeviceError>(batch)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_name_sender_and_device() {
        assert_eq!(
            label("forwarded", "@a:x", Some("PHONE")),
            "forwarded:@a:x:PHONE"
        );
        assert_eq!(label("direct", "@b:x", None), "direct:@b:x:?");
        assert_eq!(
            key_ids(&serde_json::json!({"room_id": "!r:x", "session_id": "s"})),
            Some(("!r:x".into(), "s".into()))
        );
        assert_eq!(key_ids(&serde_json::json!({"room_id": "!r:x"})), None);
    }
}
