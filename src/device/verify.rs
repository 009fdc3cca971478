//! Verifying the device with the account's cross-signing keys from secret storage (the
//! Security Key or Phrase opens them): the machine imports them after a `/keys/query` of the
//! own user (before that the import only warns), then its self-signing key signs the device and
//! the signature goes to the server. Other devices that trust the account's identity then trust
//! this device too.

use matrix_sdk_crypto::store::types::CrossSigningKeyExport;
use matrix_sdk_crypto::types::requests::AnyOutgoingRequest;
use zeroize::Zeroizing;

use super::{Device, DeviceError, QUERY_WAIT, transport};
use crate::client::Client;
use crate::secret_storage::{EncryptedSecret, SecretStorageKey};

/// The secrets of the cross-signing keys in secret storage.
pub const MASTER: &str = "m.cross_signing.master";
/// See [`MASTER`].
pub const SELF_SIGNING: &str = "m.cross_signing.self_signing";
/// See [`MASTER`].
pub const USER_SIGNING: &str = "m.cross_signing.user_signing";

/// Read secret `name` from the account's secret storage with the opened key `key_id`/`key`
/// (`None` when the account keeps no such secret for that key).
pub fn read_secret(
    client: &Client,
    user_id: &str,
    name: &str,
    key_id: &str,
    key: &SecretStorageKey,
) -> Result<Option<Zeroizing<String>>, crate::Error> {
    let Some(v) = client.account_data(user_id, name)? else {
        return Ok(None);
    };
    let Some(enc) = v.get("encrypted").and_then(|e| e.get(key_id)) else {
        return Ok(None);
    };
    let enc: EncryptedSecret = serde_json::from_value(enc.clone()).map_err(|e| {
        crate::recovery::RecoveryError::BadAccountData(name.to_string(), e.to_string())
    })?;
    Ok(Some(key.decrypt(name, &enc)?))
}

/// What verifying did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// The device was already signed by the account's self-signing key.
    pub already: bool,
    /// The server now shows the device cross-signed.
    pub cross_signed: bool,
}

/// Fetch the own user's keys now (the machine waits for nothing it did not ask).
pub(crate) async fn query_own(dev: &Device, client: &Client) -> Result<(), DeviceError> {
    let m = dev.machine();
    let (txn, req) = m.query_keys_for_users([m.user_id()]);
    transport::send_one(m, client, &txn, &AnyOutgoingRequest::KeysQuery(req)).await
}

/// Sign the device with the cross-signing keys kept in secret storage.
pub fn with_secret_storage(
    dev: &Device,
    client: &Client,
    key_id: &str,
    key: &SecretStorageKey,
) -> Result<Verified, DeviceError> {
    let user = dev.record().user_id.clone();
    let read = |name: &str| -> Result<Option<Zeroizing<String>>, DeviceError> {
        read_secret(client, &user, name, key_id, key).map_err(|e| match e {
            crate::Error::Client(c) => DeviceError::Client(c),
            other => DeviceError::Protocol(other.to_string()),
        })
    };
    let master = read(MASTER)?;
    let self_signing = read(SELF_SIGNING)?.ok_or(DeviceError::NoCrossSigning)?;
    let user_signing = read(USER_SIGNING)?;
    let m = dev.machine();
    dev.block_on(async {
        m.update_tracked_users([m.user_id()]).await?;
        query_own(dev, client).await?;
        let status = m
            .import_cross_signing_keys(CrossSigningKeyExport {
                master_key: master.as_ref().map(|s| s.to_string()),
                self_signing_key: Some(self_signing.to_string()),
                user_signing_key: user_signing.as_ref().map(|s| s.to_string()),
            })
            .await
            .map_err(|e| {
                DeviceError::Protocol(format!(
                    "the cross-signing keys in secret storage do not fit the account's identity: {e}"
                ))
            })?;
        if !status.has_self_signing {
            return Err(DeviceError::Protocol(
                "the self-signing key in secret storage does not fit the account's identity (the server shows another one)".into(),
            ));
        }
        let own = m
            .get_device(m.user_id(), m.device_id(), Some(QUERY_WAIT))
            .await?
            .ok_or_else(|| {
                DeviceError::Protocol("the server does not list this device's keys".into())
            })?;
        let already = own.is_cross_signed_by_owner();
        if !already {
            let req = own.verify().await?;
            let txn = ruma::TransactionId::new();
            transport::send_one(m, client, &txn, &AnyOutgoingRequest::SignatureUpload(req))
                .await?;
            query_own(dev, client).await?;
        }
        let cross_signed = m
            .get_device(m.user_id(), m.device_id(), Some(QUERY_WAIT))
            .await?
            .is_some_and(|d| d.is_cross_signed_by_owner());
        transport::flush(m, client).await?;
        Ok(Verified {
            already,
            cross_signed,
        })
    })
}
