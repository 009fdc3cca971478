//! mxkeys as a Matrix device: an Olm identity for the store's login, held by matrix-sdk-crypto's
//! `OlmMachine` over its own SQLite crypto store in `<store>/device/`, sealed with a random key
//! that the key store keeps among its sealed secrets (so the store passphrase unlocks it, and
//! nothing new is remembered).
//!
//! The machine is sans-I/O and async: every call runs on a current-thread Tokio runtime (the
//! crate calls `tokio::spawn` and timers), and its requests go out through mxkeys' blocking
//! client ([`transport`]). Only [`Device::create`] makes an identity; every other command of
//! mxkeys works with a plain login, as before.
//!
//! What the device receives (room keys, forwarded keys, secrets) lands first in the machine's
//! store, in the same transaction as the sync position; [`keys`] then copies room keys into the
//! key store with their source, and a copy is made again on every open ([`Device::reconcile`]),
//! so a process killed between the two loses nothing.

pub mod keys;
pub mod rehydrate;
pub mod requests;
pub mod sas;
pub mod secrets;
pub mod sync;
pub mod transport;
pub mod verify;

use std::path::{Path, PathBuf};
use std::time::Duration;

use matrix_sdk_crypto::OlmMachine;
use matrix_sdk_sqlite::SqliteCryptoStore;
use ruma::{OwnedDeviceId, OwnedUserId};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::ErrorKind;
use crate::client::{Client, ClientError};
use crate::store::{Store, StoreError};

/// The machine's directory inside the key store.
pub const DIR: &str = "device";
/// The sealed secret holding the key of the machine's crypto store.
pub const STORE_KEY_SECRET: &str = "device_store_key";
/// The sealed secret naming the device (user and device id).
pub const RECORD_SECRET: &str = "device";
/// How long the machine waits for a `/keys/query` it needs before answering (ours is sent
/// before it is asked, so this is only a bound).
const QUERY_WAIT: Duration = Duration::from_secs(10);

/// A failure of the device.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The store has no device (`mxkeys device create` makes one).
    #[error("this key store has no device")]
    NoDevice,
    /// `device create` on a store that already has one.
    #[error("this key store already has device {device_id}")]
    Exists {
        /// Its id.
        device_id: String,
    },
    /// The device belongs to another login than the store's current one.
    #[error(
        "the store's device is {device_id} of {user_id}, but the login is device {login_device} of {login_user}"
    )]
    OtherLogin {
        /// The device's user.
        user_id: String,
        /// The device's id.
        device_id: String,
        /// The login's user.
        login_user: String,
        /// The login's device.
        login_device: String,
    },
    /// The key store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The homeserver failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The machine or its store failed.
    #[error("the device's crypto store failed: {0}")]
    Crypto(String),
    /// The homeserver sent something the protocol does not allow, or the machine refused it.
    #[error("{0}")]
    Protocol(String),
    /// The account has no cross-signing identity to verify the device with.
    #[error("the account has no cross-signing keys in its secret storage")]
    NoCrossSigning,
    /// The dehydrated device could not be opened.
    #[error("the dehydrated device could not be opened: {0}")]
    Dehydration(String),
    /// Interrupted (Ctrl-C).
    #[error("interrupted")]
    Interrupted,
}

impl DeviceError {
    /// The broad class (exit codes).
    pub fn kind(&self) -> ErrorKind {
        match self {
            DeviceError::NoDevice => ErrorKind::NotFound,
            DeviceError::Exists { .. } | DeviceError::OtherLogin { .. } => ErrorKind::Usage,
            DeviceError::Store(e) => e.kind(),
            DeviceError::Client(e) => e.kind(),
            DeviceError::Crypto(_) => ErrorKind::Other,
            DeviceError::Protocol(_) => ErrorKind::InvalidInput,
            DeviceError::NoCrossSigning => ErrorKind::NotFound,
            DeviceError::Dehydration(_) => ErrorKind::WrongSecret,
            DeviceError::Interrupted => ErrorKind::Interrupted,
        }
    }
}

macro_rules! crypto_from {
    ($($t:ty),*) => {$(
        impl From<$t> for DeviceError {
            fn from(e: $t) -> Self {
                DeviceError::Crypto(e.to_string())
            }
        }
    )*};
}
crypto_from!(
    matrix_sdk_crypto::CryptoStoreError,
    matrix_sdk_crypto::OlmError,
    matrix_sdk_crypto::MegolmError,
    matrix_sdk_crypto::SignatureError,
    matrix_sdk_sqlite::OpenStoreError
);

/// Which device the store holds (kept sealed in the key store).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    /// The account.
    pub user_id: String,
    /// The device id (the login's).
    pub device_id: String,
    /// When it was created (ms since the epoch).
    pub created_ms: u64,
}

/// A current-thread runtime for the machine's async calls.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, DeviceError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| DeviceError::Crypto(format!("starting the async runtime: {e}")))
}

pub(crate) fn ids(
    user_id: &str,
    device_id: &str,
) -> Result<(OwnedUserId, OwnedDeviceId), DeviceError> {
    let user = OwnedUserId::try_from(user_id)
        .map_err(|e| DeviceError::Protocol(format!("bad user id {user_id:?}: {e}")))?;
    Ok((user, OwnedDeviceId::from(device_id)))
}

/// The device's record in `store`, if it has one.
pub fn record(store: &Store) -> Result<Option<Record>, DeviceError> {
    match store.get_secret(RECORD_SECRET)? {
        None => Ok(None),
        Some(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|_| StoreError::Corrupt("the device record does not parse".into()).into()),
    }
}

fn machine_dir(store: &Store) -> PathBuf {
    store.dir().join(DIR)
}

/// The open device: the machine, its runtime and the client it talks through.
pub struct Device {
    rt: tokio::runtime::Runtime,
    /// Always `Some` until dropped: the machine's SQLite pool must be dropped inside the
    /// runtime (its connections are closed on the runtime's blocking pool).
    machine: Option<OlmMachine>,
    record: Record,
}

impl Drop for Device {
    fn drop(&mut self) {
        let _entered = self.rt.enter();
        drop(self.machine.take());
    }
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("record", &self.record)
            .finish_non_exhaustive()
    }
}

/// The crypto store's files are made (or kept) readable by the owner only, before SQLite opens
/// them: SQLite gives its -wal and -shm files the database's mode.
fn private_files(dir: &Path) -> Result<(), DeviceError> {
    let db = dir.join(crate::client_store::MATRIX_SDK_DATABASE);
    crate::fs::ensure_private_file(&db).map_err(|e| StoreError::Io(db.display().to_string(), e))?;
    let entries =
        std::fs::read_dir(dir).map_err(|e| StoreError::Io(dir.display().to_string(), e))?;
    for e in entries.flatten() {
        let p = e.path();
        if p.is_file() {
            crate::fs::ensure_private_file(&p)
                .map_err(|e| StoreError::Io(p.display().to_string(), e))?;
        }
    }
    Ok(())
}

async fn open_machine(dir: &Path, key: &[u8; 32], r: &Record) -> Result<OlmMachine, DeviceError> {
    private_files(dir)?;
    let store = SqliteCryptoStore::open_with_key(dir, Some(key)).await?;
    let (user, device) = ids(&r.user_id, &r.device_id)?;
    let machine = OlmMachine::with_store(&user, &device, store, None).await?;
    // mxkeys asks for keys only when told to (`device request-keys`); it never decrypts
    // room events here, so automatic requests would only be noise. It does answer the
    // user's own verified devices (the crate checks that), as Element Web does.
    machine.set_room_key_requests_enabled(false);
    machine.set_room_key_forwarding_enabled(true);
    Ok(machine)
}

fn store_key(store: &Store) -> Result<Option<Zeroizing<[u8; 32]>>, DeviceError> {
    let Some(k) = store.get_secret(STORE_KEY_SECRET)? else {
        return Ok(None);
    };
    let arr: [u8; 32] = k
        .as_slice()
        .try_into()
        .map_err(|_| StoreError::Corrupt("the device's store key is not 32 bytes".into()))?;
    Ok(Some(Zeroizing::new(arr)))
}

impl Device {
    /// Make the device for the login `user_id`/`device_id`: a new Olm account in a new crypto
    /// store, its keys uploaded. The store must be open for writing.
    pub fn create(
        store: &Store,
        client: &Client,
        user_id: &str,
        device_id: &str,
    ) -> Result<Device, DeviceError> {
        if let Some(r) = record(store)? {
            return Err(DeviceError::Exists {
                device_id: r.device_id,
            });
        }
        // The key first: a run killed after this and before the record finds it again.
        let key = match store_key(store)? {
            Some(k) => k,
            None => {
                let mut k = Zeroizing::new([0u8; 32]);
                crate::fs::fill_random(&mut k[..])
                    .map_err(|e| StoreError::Io("random".into(), e))?;
                store.put_secret(STORE_KEY_SECRET, &k[..])?;
                k
            }
        };
        let dir = machine_dir(store);
        crate::fs::create_private_dir(&dir)
            .map_err(|e| StoreError::Io(dir.display().to_string(), e))?;
        let record = Record {
            user_id: user_id.to_string(),
            device_id: device_id.to_string(),
            created_ms: now_ms(),
        };
        let rt = runtime()?;
        let machine = rt.block_on(open_machine(&dir, &key, &record))?;
        let dev = Device {
            rt,
            machine: Some(machine),
            record,
        };
        dev.block_on(async {
            let m = dev.machine();
            transport::flush(m, client).await?;
            m.update_tracked_users([m.user_id()]).await?;
            transport::flush(m, client).await?;
            Ok::<_, DeviceError>(())
        })?;
        let json = Zeroizing::new(
            serde_json::to_vec(&dev.record)
                .map_err(|e| DeviceError::Crypto(format!("recording the device: {e}")))?,
        );
        store.put_secret(RECORD_SECRET, &json)?;
        Ok(dev)
    }

    /// Open the store's device for the login `login_user`/`login_device`.
    pub fn open(
        store: &Store,
        login_user: &str,
        login_device: &str,
    ) -> Result<Device, DeviceError> {
        let record = record(store)?.ok_or(DeviceError::NoDevice)?;
        if record.user_id != login_user || record.device_id != login_device {
            return Err(DeviceError::OtherLogin {
                user_id: record.user_id,
                device_id: record.device_id,
                login_user: login_user.to_string(),
                login_device: login_device.to_string(),
            });
        }
        let key = store_key(store)?
            .ok_or_else(|| StoreError::Corrupt("the device's store key is missing".into()))?;
        let dir = machine_dir(store);
        if !dir.is_dir() {
            return Err(StoreError::Corrupt(format!(
                "the device's directory {} is missing",
                dir.display()
            ))
            .into());
        }
        let rt = runtime()?;
        let machine = rt.block_on(open_machine(&dir, &key, &record))?;
        Ok(Device {
            rt,
            machine: Some(machine),
            record,
        })
    }

    /// Forget the device locally: its crypto store and the secrets naming it.
    pub fn remove_local(store: &Store) -> Result<bool, DeviceError> {
        let had = record(store)?.is_some();
        store.delete_secret(RECORD_SECRET)?;
        store.delete_secret(STORE_KEY_SECRET)?;
        let dir = machine_dir(store);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .map_err(|e| StoreError::Io(dir.display().to_string(), e))?;
        }
        Ok(had)
    }

    /// Which device this is.
    pub fn record(&self) -> &Record {
        &self.record
    }

    /// The machine (for the submodules).
    #[allow(clippy::expect_used)] // `None` only inside `drop`
    pub(crate) fn machine(&self) -> &OlmMachine {
        self.machine
            .as_ref()
            .expect("the machine is held until the device is dropped")
    }

    /// Run an async call of the machine to completion.
    pub(crate) fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// Send what the machine has queued.
    pub fn flush(&self, client: &Client) -> Result<usize, DeviceError> {
        self.block_on(transport::flush(self.machine(), client))
    }

    /// The device's public identity and what the account's identity says of it.
    pub fn info(&self, client: &Client) -> Result<Info, DeviceError> {
        self.block_on(async {
            let m = self.machine();
            m.update_tracked_users([m.user_id()]).await?;
            transport::flush(m, client).await?;
            // The server's view now (another device may have signed this one since).
            verify::query_own(self, client).await?;
            let keys = m.identity_keys();
            let own = m
                .get_device(m.user_id(), m.device_id(), Some(QUERY_WAIT))
                .await?;
            let status = m.cross_signing_status().await;
            let identity = m.get_identity(m.user_id(), Some(QUERY_WAIT)).await?;
            let backup_key = m.store().load_backup_keys().await?.decryption_key.is_some();
            Ok(Info {
                user_id: self.record.user_id.clone(),
                device_id: self.record.device_id.clone(),
                ed25519: keys.ed25519.to_base64(),
                curve25519: keys.curve25519.to_base64(),
                created_ms: self.record.created_ms,
                cross_signed: own.as_ref().is_some_and(|d| d.is_cross_signed_by_owner()),
                verified: own.as_ref().is_some_and(|d| d.is_verified()),
                account_has_identity: identity.is_some(),
                has_master_key: status.has_master,
                has_self_signing_key: status.has_self_signing,
                has_user_signing_key: status.has_user_signing,
                has_backup_key: backup_key,
            })
        })
    }

    /// Copy every room key the machine holds into the key store (a run killed after the
    /// machine stored a key and before the key store did finds it here).
    pub fn reconcile(&self, store: &mut Store) -> Result<crate::store::MergeCounts, DeviceError> {
        keys::copy_all(self, store)
    }
}

/// What `device info` shows.
#[derive(Debug, Clone, Serialize)]
pub struct Info {
    /// The account.
    pub user_id: String,
    /// The device.
    pub device_id: String,
    /// Its Ed25519 identity key (the fingerprint others compare).
    pub ed25519: String,
    /// Its Curve25519 identity key.
    pub curve25519: String,
    /// When it was created (ms since the epoch).
    pub created_ms: u64,
    /// Signed by the account's self-signing key (the server's view, checked by the machine).
    pub cross_signed: bool,
    /// Trusted by the machine: cross-signed by an identity the machine trusts.
    pub verified: bool,
    /// The account has a cross-signing identity at all.
    pub account_has_identity: bool,
    /// The device holds the private master key.
    pub has_master_key: bool,
    /// The device holds the private self-signing key.
    pub has_self_signing_key: bool,
    /// The device holds the private user-signing key.
    pub has_user_signing_key: bool,
    /// The device holds the backup's private key.
    pub has_backup_key: bool,
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
