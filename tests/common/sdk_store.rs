//! matrix-rust-sdk SQLite crypto stores written by matrix-sdk-crypto 0.18 itself, as Element X,
//! Fractal and iamb write them: an `OlmMachine` on a `SqliteCryptoStore` (with or without a
//! passphrase) that imports export-format sessions through `import_exported_room_keys`; the
//! SDK's own `export_room_keys` of the same store is what mxkeys must read back exactly.

use std::path::Path;

use matrix_sdk_crypto::OlmMachine;
use matrix_sdk_crypto::olm::ExportedRoomKey;
use matrix_sdk_sqlite::SqliteCryptoStore;
use serde_json::Value;

/// The store's account.
pub const USER: &str = "@sdkbot:localhost";
/// Its device.
pub const DEVICE: &str = "SDKDEVICE";

/// Make a store in `dir` holding `sessions` (export-format JSON); return the SDK's own export
/// of it (JSON values, as `export_room_keys` gives them).
pub fn make(dir: &Path, passphrase: Option<&str>, sessions: &[Value]) -> Vec<Value> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = SqliteCryptoStore::open(dir, passphrase).await.unwrap();
        let user = ruma::UserId::parse(USER).unwrap();
        let device: ruma::OwnedDeviceId = DEVICE.into();
        let machine = OlmMachine::with_store(&user, &device, store, None)
            .await
            .unwrap();
        let keys: Vec<ExportedRoomKey> = sessions
            .iter()
            .map(|s| serde_json::from_value(s.clone()).unwrap())
            .collect();
        let r = machine
            .store()
            .import_exported_room_keys(keys, |_, _| {})
            .await
            .unwrap();
        assert_eq!(r.imported_count, sessions.len());
        let exported = machine.store().export_room_keys(|_| true).await.unwrap();
        drop(machine);
        exported
            .iter()
            .map(|k| serde_json::to_value(k).unwrap())
            .collect()
    })
}
