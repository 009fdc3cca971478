//! The account's dehydrated device (MSC3814): other people's devices send room keys to it
//! while the user has no device online. Rehydrating opens it with the dehydration key (kept in
//! secret storage under `org.matrix.msc3814`), reads the to-device messages queued for it page
//! by page and takes the room keys they carry. The dehydrated device stays on the server as it
//! was (nothing is deleted or replaced), so a run that is killed loses nothing: the next one
//! reads the same messages again.
//!
//! No device of mxkeys is needed: the device is opened by a machine that lives in memory for
//! the run and is never uploaded.

use base64::Engine as _;
use matrix_sdk_crypto::store::types::DehydratedDeviceKey;
use matrix_sdk_crypto::{DecryptionSettings, OlmMachine, TrustRequirement};
use ruma::events::AnyToDeviceEvent;
use ruma::serde::Raw;
use zeroize::Zeroizing;

use super::{DeviceError, ids, keys, runtime};
use crate::client::Client;
use crate::session::ExportedSession;

/// The secret-storage name of the dehydration key.
pub const SECRET_NAME: &str = "org.matrix.msc3814";
/// Most pages read (a guard against a server that never ends the list).
const MAX_PAGES: usize = 100_000;

/// The 32-byte dehydration key from its secret-storage form (unpadded base64).
pub fn key_from_secret(secret: &str) -> Result<Zeroizing<[u8; 32]>, DeviceError> {
    let bytes = Zeroizing::new(
        base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(secret.trim().trim_end_matches('='))
            .map_err(|_| {
                DeviceError::Dehydration(
                    "the dehydration key in secret storage is not base64".into(),
                )
            })?,
    );
    let arr: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
        DeviceError::Dehydration(format!(
            "the dehydration key in secret storage is {} bytes, not 32",
            bytes.len()
        ))
    })?;
    Ok(Zeroizing::new(arr))
}

/// Takes the keys of one page (with the dehydrated device's id) and stores them.
pub type KeySink<'a> = dyn FnMut(&str, Vec<ExportedSession>) -> Result<(), DeviceError> + 'a;

/// What rehydrating found.
#[derive(Debug, Default)]
pub struct Summary {
    /// The dehydrated device's id.
    pub device_id: String,
    /// Pages of messages read.
    pub pages: usize,
    /// Messages read.
    pub events: usize,
    /// Room keys taken.
    pub keys: usize,
}

/// Open the account's dehydrated device and hand the room keys of each page to `on_keys`
/// (the caller stores them, one transaction per page). `Ok(None)`: the account has none.
pub fn rehydrate(
    client: &Client,
    user_id: &str,
    key: &[u8; 32],
    cancelled: &dyn Fn() -> bool,
    on_keys: &mut KeySink<'_>,
) -> Result<Option<Summary>, DeviceError> {
    let Some(dd) = client.dehydrated_device()? else {
        return Ok(None);
    };
    let rt = runtime()?;
    // An in-memory machine that only opens the dehydrated device; its own id is never sent.
    let (user, _) = ids(user_id, "MXKEYSREHYDRATE")?;
    let dd_id = ruma::OwnedDeviceId::from(dd.device_id.as_str());
    let settings = DecryptionSettings {
        sender_device_trust_requirement: TrustRequirement::Untrusted,
    };
    let mut summary = Summary {
        device_id: dd.device_id.clone(),
        ..Summary::default()
    };
    rt.block_on(async {
        let holder = OlmMachine::new(&user, "MXKEYSREHYDRATE".into()).await;
        let data = Raw::from_json(
            serde_json::value::to_raw_value(&dd.device_data)
                .map_err(|e| DeviceError::Protocol(format!("the dehydrated device's data: {e}")))?,
        );
        let pickle_key = DehydratedDeviceKey::from_bytes(key);
        let device = holder
            .dehydrated_devices()
            .rehydrate(&pickle_key, &dd_id, data)
            .await
            .map_err(|e| {
                // The crate's words ("aead::Error") go to the log; the user gets what they mean.
                log::debug!("rehydrating {}: {e}", dd.device_id);
                DeviceError::Dehydration(format!(
                    "device {} does not open with the dehydration key in secret storage (it was sealed with another key, or its data is damaged)",
                    dd.device_id
                ))
            })?;
        let mut from: Option<String> = None;
        for _ in 0..MAX_PAGES {
            if cancelled() {
                return Err(DeviceError::Interrupted);
            }
            let page = client.dehydrated_events(&dd.device_id, from.as_deref())?;
            let n = page.events.len();
            let events: Vec<Raw<AnyToDeviceEvent>> = page
                .events
                .iter()
                .filter_map(|e| serde_json::value::to_raw_value(e).ok().map(Raw::from_json))
                .collect();
            summary.pages += 1;
            summary.events += n;
            let infos = device
                .receive_events(events, &settings)
                .await
                .map_err(|e| DeviceError::Crypto(e.to_string()))?;
            let found = keys::export(&holder, &infos).await?;
            summary.keys += found.len();
            on_keys(&dd.device_id, found)?;
            match page.next_batch {
                Some(next) if n > 0 && from.as_deref() != Some(next.as_str()) => from = Some(next),
                _ => break,
            }
        }
        Ok::<_, DeviceError>(())
    })?;
    Ok(Some(summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_32_bytes_of_base64() {
        let b = base64::engine::general_purpose::STANDARD_NO_PAD.encode([7u8; 32]);
        assert_eq!(*key_from_secret(&b).unwrap(), [7u8; 32]);
        assert!(key_from_secret("not base64!").is_err());
        let short = base64::engine::general_purpose::STANDARD_NO_PAD.encode([7u8; 16]);
        assert!(key_from_secret(&short).is_err());
    }
}
