//! The reference for `mxkeys import` (issue 11): what Element X, Fractal and iamb do with a key
//! export file, through matrix-sdk-crypto 0.18 and matrix-sdk-sqlite 0.18. Decrypt the file with
//! `decrypt_room_key_export`, open a `SqliteCryptoStore` in a fresh directory, put an
//! `OlmMachine` on it and hand every key to `import_exported_room_keys`. One process per run, so
//! hyperfine times it end to end beside `mxkeys import`.
//!
//! usage: sdk-import EXPORT_FILE PASSPHRASE_FILE STORE_DIR [STORE_PASSPHRASE_FILE]
//! STORE_DIR must not exist yet (the run makes it); without STORE_PASSPHRASE_FILE the store is
//! unencrypted, with it the store's values are sealed by the SDK's StoreCipher as in Element X.
use matrix_sdk_crypto::{OlmMachine, decrypt_room_key_export};
use matrix_sdk_sqlite::SqliteCryptoStore;

fn read_secret(p: &str) -> String {
    let s = std::fs::read_to_string(p).expect("secret file");
    s.strip_suffix('\n').unwrap_or(&s).to_string()
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 4 {
        eprintln!("usage: sdk-import EXPORT_FILE PASSPHRASE_FILE STORE_DIR [STORE_PASSPHRASE_FILE]");
        std::process::exit(2);
    }
    let dir = std::path::Path::new(&a[3]);
    assert!(!dir.exists(), "store dir must be fresh");
    let store_pass = a.get(4).map(|p| read_secret(p));
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
    rt.block_on(async {
        let f = std::fs::File::open(&a[1]).expect("export file");
        let keys = decrypt_room_key_export(std::io::BufReader::new(f), &read_secret(&a[2]))
            .expect("decrypt");
        let n = keys.len();
        let store = SqliteCryptoStore::open(dir, store_pass.as_deref()).await.expect("store");
        let user = ruma::UserId::parse("@bench:localhost").expect("user");
        let device: ruma::OwnedDeviceId = "BENCHDEVICE".into();
        let machine = OlmMachine::with_store(&user, &device, store, None).await.expect("machine");
        let r = machine.store().import_exported_room_keys(keys, |_, _| {}).await.expect("import");
        assert_eq!(r.imported_count, n);
        eprintln!("sdk-import: imported {} of {n} sessions", r.imported_count);
    });
}
