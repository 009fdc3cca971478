//! Secrets from the user's other devices (`m.secret.request` / `m.secret.send`): the backup key
//! (`m.megolm_backup.v1`) and the cross-signing keys.
//!
//! The machine sends the requests to all of the user's devices and accepts an answer only when
//! it matches a request and comes, over Olm, from one of the user's own devices that it
//! considers verified; the cross-signing keys it imports itself (when they match the account's
//! public identity), the backup key it leaves in its inbox, where this module takes it.

use std::time::Duration;

use ruma::events::secret::request::SecretName;
use zeroize::Zeroizing;

use super::{Device, DeviceError, sync, transport};
use crate::client::Client;

/// What a wait for secrets brought.
#[derive(Debug, Default)]
pub struct Received {
    /// Whether any request went out (false: the device already had everything).
    pub asked: bool,
    /// The backup keys received (unpadded base64 private keys), newest last.
    pub backup_keys: Vec<Zeroizing<String>>,
    /// The devices that sent an `m.secret.send` this device accepted (`@user:DEVICE`).
    pub answered_by: Vec<String>,
    /// Whether the device now holds the private self-signing key.
    pub has_self_signing: bool,
    /// Whether the device now holds the private master key.
    pub has_master: bool,
    /// Room keys that arrived meanwhile (copied by the caller).
    pub batches: Vec<sync::Batch>,
}

/// Ask the user's other devices for the missing secrets, then sync until the backup key has
/// arrived or `wait` has passed (`cancelled` is polled between syncs).
pub fn request(
    dev: &Device,
    client: &Client,
    wait: Duration,
    cancelled: &dyn Fn() -> bool,
) -> Result<Received, DeviceError> {
    let m = dev.machine();
    let asked = dev.block_on(async {
        m.update_tracked_users([m.user_id()]).await?;
        transport::flush(m, client).await?;
        let asked = m.query_missing_secrets_from_other_sessions().await?;
        transport::flush(m, client).await?;
        Ok::<_, DeviceError>(asked)
    })?;
    let mut out = Received {
        asked,
        ..Received::default()
    };
    sync::until(dev, client, wait, cancelled, |batch| {
        if let Some(b) = batch {
            out.answered_by.extend(b.secret_senders.iter().cloned());
            out.batches.push(b);
        }
        let keys = dev.block_on(m.store().get_secrets_from_inbox(&SecretName::RecoveryKey))?;
        if keys.is_empty() {
            return Ok(false);
        }
        out.backup_keys = keys;
        Ok(true)
    })?;
    let status = dev.block_on(m.cross_signing_status());
    out.has_self_signing = status.has_self_signing;
    out.has_master = status.has_master;
    Ok(out)
}

/// The backup keys waiting in the device's inbox (sent by a verified own device, unasked for
/// or after a request that timed out).
pub fn inbox_backup_keys(dev: &Device) -> Result<Vec<Zeroizing<String>>, DeviceError> {
    Ok(dev.block_on(
        dev.machine()
            .store()
            .get_secrets_from_inbox(&SecretName::RecoveryKey),
    )?)
}

/// Keep `key` (a backup key that matched the backup) in the machine too, so it is not asked
/// for again, and empty the inbox.
pub fn settle_backup_key(dev: &Device, key_b64: &str, version: &str) -> Result<(), DeviceError> {
    let m = dev.machine();
    dev.block_on(async {
        let k = matrix_sdk_crypto::store::types::BackupDecryptionKey::from_base64(key_b64)
            .map_err(|e| {
                DeviceError::Protocol(format!("the backup key received is not a key: {e}"))
            })?;
        m.backup_machine()
            .save_decryption_key(Some(k), Some(version.to_string()))
            .await?;
        m.store()
            .delete_secrets_from_inbox(&SecretName::RecoveryKey)
            .await?;
        Ok(())
    })
}
