//! `--client-store`: keys out of stores written by real clients (fixtures/client-stores/, made
//! with matrix-nio 0.26.0 and pantalaimon 0.10.5 from PyPI and with mautrix-go v0.15.4; see
//! fixtures/README.md; and
//! matrix-sdk SQLite stores written here by matrix-sdk-crypto 0.18 itself), compared exactly
//! with what each client's own export wrote for the same store; the client's files never
//! modified; damaged and hostile stores get one-line errors and no output.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
// In the shared helper tree, but linked only here: it pulls in matrix-sdk-crypto.
#[cfg(feature = "matrix-sdk-store")]
#[path = "common/sdk_store.rs"]
mod sdk_store;

use std::path::{Path, PathBuf};

use common::cli::assert_error;
use common::{Env, PASS, element, fixture, session_set, text};
use serde_json::Value;

const NIO_EXPORT_PASS: &str = "nio export passphrase";
const PAN_EXPORT_PASS: &str = "pan export passphrase";
const NIO_DB: &str = "@niobot:localhost_NIODEVICE.db";

/// A copy of a fixture store directory in the test's work directory.
fn copy_store(env: &Env, name: &str) -> PathBuf {
    let from = fixture(&format!("client-stores/{name}"));
    let to = env.path(name);
    std::fs::create_dir_all(&to).unwrap();
    for e in std::fs::read_dir(&from).unwrap() {
        let e = e.unwrap();
        if e.path().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
    to
}

/// The sessions of a client's own export file (its own armor, read by the independent
/// decryptor of the tests).
fn client_export(name: &str, pass: &str) -> Vec<Value> {
    let armored = std::fs::read(fixture(&format!("client-stores/{name}"))).unwrap();
    let pt = element::open(&element::unarmor(&armored), pass.as_bytes())
        .unwrap()
        .plaintext;
    serde_json::from_slice(&pt).unwrap()
}

/// No extra flags for [`run_export`].
const NO_FLAGS: &[&str] = &[];

/// `mxkeys [--json] export --client-store STORE -o OUT --rounds 1000` with the fixtures'
/// passphrase (no mxkeys store) and `extra` flags.
fn run_export<S: AsRef<std::ffi::OsStr>>(
    env: &Env,
    json: bool,
    store: &Path,
    out: &Path,
    extra: &[S],
) -> std::process::Output {
    env.cmd()
        .args(if json { &["--json"][..] } else { &[][..] })
        .args(["export", "--client-store"])
        .arg(store)
        .arg("-o")
        .arg(out)
        .args(["--rounds", "1000", "--passphrase-file"])
        .arg(env.pass_file())
        .args(extra)
        .output()
        .unwrap()
}

/// `mxkeys export --client-store STORE -o OUT` (no mxkeys store), then the file's sessions.
fn export_client_store(env: &Env, store: &Path, extra: &[&str]) -> (Value, Vec<Value>) {
    let out = env.path("out.txt");
    let _ = std::fs::remove_file(&out);
    let o = run_export(env, true, store, &out, extra);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(common::mode(&out), 0o600);
    let pt = element::decrypt_file(&out, PASS.as_bytes()).plaintext;
    (report, serde_json::from_slice(&pt).unwrap())
}

/// Every file under a directory with its bytes and modification time.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>, std::time::SystemTime)> {
    let mut v: Vec<_> = common::all_bytes_under(dir)
        .into_iter()
        .map(|(p, b)| {
            let m = std::fs::metadata(&p).unwrap().modified().unwrap();
            (p, b, m)
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn inspect_says_what_kind_whose_and_how_many() {
    let env = Env::new();
    let store = copy_store(&env, "nio-default");
    let v = inspect_json(&env, &store, &[]);
    assert_eq!(v["kind"], "nio");
    assert_eq!(v["schema_version"], 2);
    assert_eq!(v["account"]["user_id"], "@niobot:localhost");
    assert_eq!(v["account"]["device_id"], "NIODEVICE");
    assert_eq!(v["sessions"], 5);
    assert_eq!(v["rooms"], 5);
    assert!(v["client_store"].as_str().unwrap().ends_with(NIO_DB));
    // Human form, on the database file itself; no pickle key is needed to inspect.
    let t = inspect_text(&env, &store.join(NIO_DB));
    assert!(
        t.contains("kind:               nio (schema version 2)"),
        "{t}"
    );
    assert!(
        t.contains("account:            @niobot:localhost device NIODEVICE"),
        "{t}"
    );
    assert!(t.contains("inbound sessions:   5 in 5 rooms"), "{t}");
    // pantalaimon: both accounts, and one of them when chosen.
    let pan = copy_store(&env, "pantalaimon");
    let v = inspect_json(&env, &pan, &[]);
    assert_eq!(v["kind"], "pantalaimon");
    assert_eq!(v["accounts"].as_array().unwrap().len(), 2);
    assert_eq!(v["account"], Value::Null);
    assert_eq!(v["sessions"], 3);
    let v = inspect_json(&env, &pan, &["--client-store-user", "@bob:localhost"]);
    assert_eq!(v["account"]["device_id"], "PANBOB");
    assert_eq!(v["sessions"], 1);
}

#[test]
fn nio_stores_export_exactly_what_nio_exports() {
    let env = Env::new();
    let nio_default = client_export("nio-default.export.txt", NIO_EXPORT_PASS);
    assert_eq!(nio_default.len(), 5);
    let store = copy_store(&env, "nio-default");
    let (report, ours) = export_client_store(&env, &store, &[]);
    assert_eq!(report["kind"], "nio");
    assert_eq!(report["sessions"], 5);
    assert_eq!(report["rejected"], 0);
    assert_eq!(session_set(&ours), session_set(&nio_default));
    // The three imported from Element are the Element file's sessions, key for key (nio does
    // not keep the shared-history flag, so neither export has it).
    let element = common::read_sessions(&fixture("export/plaintext/element-three.json"));
    let ours_set = session_set(&ours);
    for (k, mut v) in session_set(&element) {
        v.insert("<shared>".into(), Value::Bool(false));
        assert_eq!(ours_set.get(&k), Some(&v), "{k:?}");
    }

    // A custom pickle key: refused without it (12, no output), exact with it.
    let custom = copy_store(&env, "nio-custom-key");
    let out = env.path("custom.txt");
    let o = run_export(&env, false, &custom, &out, NO_FLAGS);
    assert_error(
        &o,
        12,
        "the pickle key does not decrypt the store's sessions",
        "--client-store-passphrase-file",
    );
    assert!(!out.exists());
    let pk = env.write_secret("pickle-key.txt", "bot pickle key 42\n");
    let (_, ours) = export_client_store(
        &env,
        &custom,
        &["--client-store-passphrase-file", pk.to_str().unwrap()],
    );
    assert_eq!(
        session_set(&ours),
        session_set(&client_export("nio-custom-key.export.txt", NIO_EXPORT_PASS))
    );
}

#[test]
fn pantalaimon_libolm_pickles_per_account() {
    let env = Env::new();
    let pan = copy_store(&env, "pantalaimon");
    // Two accounts: choose one.
    let out = env.path("pan.txt");
    let o = run_export(&env, false, &pan, &out, NO_FLAGS);
    assert_error(&o, 2, "holds 2 accounts", "--client-store-user");
    assert!(!out.exists());
    for (user, device) in [
        ("@alice:localhost", "PANALICE"),
        ("@bob:localhost", "PANBOB"),
    ] {
        let (report, ours) =
            export_client_store(&env, &pan.join("pan.db"), &["--client-store-user", user]);
        assert_eq!(report["kind"], "pantalaimon");
        let theirs = client_export(&format!("pantalaimon-{device}.export.txt"), PAN_EXPORT_PASS);
        assert_eq!(session_set(&ours), session_set(&theirs), "{user}");
    }
    // USER/DEVICE works too; an unknown account is named.
    let (_, ours) = export_client_store(
        &env,
        &pan,
        &["--client-store-user", "@bob:localhost/PANBOB"],
    );
    assert_eq!(ours.len(), 1);
    let o = run_export(
        &env,
        false,
        &pan,
        &out,
        &["--client-store-user", "@carol:localhost"],
    );
    assert_error(
        &o,
        2,
        "holds no account @carol:localhost",
        "mxkeys inspect --client-store",
    );
}

#[test]
fn import_into_the_store_in_one_transaction_and_the_client_files_stay_untouched() {
    let env = Env::new();
    env.init_store();
    let store = copy_store(&env, "nio-default");
    let pan = copy_store(&env, "pantalaimon");
    let before = (snapshot(&store), snapshot(&pan));
    let o = env
        .scmd()
        .args(["--json", "import", "--client-store"])
        .arg(&store)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["read"].as_u64(), v["imported"].as_u64()),
        (Some(5), Some(5))
    );
    assert_eq!(v["libolm_pickles"], 0);
    // Each session's source is the client store.
    let list = env.list_json();
    for r in list["rooms"].as_array().unwrap() {
        let from = r["sources"].as_object().unwrap();
        assert_eq!(from.len(), 1, "{r}");
        let k = from.keys().next().unwrap();
        assert!(
            k.starts_with("client-store:nio:") && k.ends_with(NIO_DB),
            "{k}"
        );
    }
    // Again: nothing new.
    let o = env
        .scmd()
        .args(["--json", "import", "--client-store"])
        .arg(&store)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["imported"].as_u64(), v["unchanged"].as_u64()),
        (Some(0), Some(5))
    );
    let o = env
        .scmd()
        .args([
            "--json",
            "import",
            "--client-store-user",
            "@alice:localhost",
            "--client-store",
        ])
        .arg(&pan)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["imported"].as_u64(), v["libolm_pickles"].as_u64()),
        (Some(2), Some(2))
    );
    // The store now holds exactly nio's and pantalaimon's (alice's) sessions.
    let mut expected = session_set(&client_export("nio-default.export.txt", NIO_EXPORT_PASS));
    expected.extend(session_set(&client_export(
        "pantalaimon-PANALICE.export.txt",
        PAN_EXPORT_PASS,
    )));
    assert_eq!(session_set(&env.export_sessions("all.txt", &[])), expected);
    // inspect, import and export never changed a byte or a modification time of the
    // client's files, nor left a -wal or -shm beside them.
    export_client_store(&env, &store, &[]);
    env.cmd()
        .args(["inspect", "--client-store"])
        .arg(&pan)
        .assert()
        .success();
    assert_eq!((snapshot(&store), snapshot(&pan)), before);
}

/// A writable copy of the nio fixture database, changed by `sql`.
fn altered(env: &Env, name: &str, sql: &str) -> PathBuf {
    let dir = copy_store(env, "nio-default");
    let db = dir.join(NIO_DB);
    run_sql(&db, sql);
    let to = env.path(name);
    std::fs::rename(&db, &to).unwrap();
    to
}

fn export_fails(env: &Env, store: &Path, code: i32, message: &str, hint: &str) {
    let out = env.path("fail.txt");
    let o = run_export(env, false, store, &out, NO_FLAGS);
    assert_error(&o, code, message, hint);
    assert!(
        !out.exists(),
        "an output file was left for {}",
        store.display()
    );
}

#[test]
fn damaged_and_hostile_stores_are_clean_errors() {
    let env = Env::new();
    export_fails(
        &env,
        &env.path("absent"),
        10,
        "no such file or directory",
        "nio's store directory",
    );
    let empty = env.path("empty-dir");
    std::fs::create_dir_all(&empty).unwrap();
    export_fails(
        &env,
        &empty,
        13,
        "a directory without a nio",
        "--client-store-kind",
    );
    let garbage = env.write("garbage.db", vec![0x5au8; 8192]);
    export_fails(
        &env,
        &garbage,
        13,
        "not a readable SQLite database",
        "copy the store again",
    );
    let bytes = std::fs::read(fixture(&format!("client-stores/nio-default/{NIO_DB}"))).unwrap();
    let truncated = env.write("truncated.db", &bytes[..bytes.len() / 3]);
    export_fails(
        &env,
        &truncated,
        13,
        "not a readable SQLite database",
        "truncated or damaged",
    );
    let other = altered(&env, "other.db", "DROP TABLE megolminboundsessions;");
    export_fails(
        &env,
        &other,
        13,
        "no table of a known client",
        "--client-store-kind",
    );
    let newer = altered(&env, "newer.db", "UPDATE storeversion SET version = 99;");
    export_fails(
        &env,
        &newer,
        13,
        "nio store schema version 99; mxkeys reads versions up to 2",
        "newer mxkeys",
    );
    // One garbage pickle: that row is reported and skipped (exit 3), the rest exported.
    let one_bad = altered(
        &env,
        "one-bad.db",
        "UPDATE megolminboundsessions SET session = X'00ff00' WHERE room_id = '!bots:localhost';",
    );
    let out = env.path("partial.txt");
    let o = run_export(&env, true, &one_bad, &out, NO_FLAGS);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["sessions"].as_u64(), v["rejected"].as_u64()),
        (Some(4), Some(1))
    );
    assert_eq!(v["rejections"][0]["room_id"], "!bots:localhost");
    // A pickle of another session under a row's id is refused, not exported under that id.
    let swapped = altered(
        &env,
        "swapped.db",
        "UPDATE megolminboundsessions SET session = (SELECT session FROM megolminboundsessions \
         WHERE room_id = '!ops:localhost') WHERE room_id = '!bots:localhost';",
    );
    let o = run_export(&env, true, &swapped, &env.path("swapped.txt"), NO_FLAGS);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v["rejections"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("the pickle holds session"),
        "{v}"
    );
}

#[cfg(feature = "matrix-sdk-store")]
/// Sessions for the matrix-sdk stores: Element's three, matrix-sdk-crypto-wasm's one, and two
/// made here: one forwarded twice and known from index 3, one with the shared-history flag.
fn sdk_input() -> Vec<Value> {
    use common::megolm::{GenSession, SENDER_KEY};
    let mut v = common::read_sessions(&fixture("export/plaintext/element-three.json"));
    v.extend(common::read_sessions(&fixture(
        "export/plaintext/wasm-one.json",
    )));
    let other = common::megolm::GenSession::new("!x:localhost").sender_key;
    let mut g = GenSession::new("!forwarded:localhost");
    v.push(g.export_entry(3, &[SENDER_KEY, &other]));
    let mut h = GenSession::new("!shared:localhost");
    let mut e = h.export_entry(0, &[]);
    e["m.shared_history"] = Value::Bool(true);
    v.push(e);
    v
}

/// `inspect --client-store` in human form, which must succeed.
fn inspect_text(env: &Env, store: &Path) -> String {
    let o = env
        .cmd()
        .args(["inspect", "--client-store"])
        .arg(store)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    text(&o.stdout)
}

/// Run `sql` on a copied database.
fn run_sql(db: &Path, sql: &str) {
    rusqlite::Connection::open(db)
        .unwrap()
        .execute_batch(sql)
        .unwrap();
}

fn inspect_json(env: &Env, store: &Path, extra: &[&str]) -> Value {
    let o = env
        .cmd()
        .args(["--json", "inspect", "--client-store"])
        .arg(store)
        .args(extra)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[cfg(feature = "matrix-sdk-store")]
#[test]
fn matrix_sdk_store_without_a_passphrase() {
    let env = Env::new();
    let dir = env.path("sdk-plain");
    let theirs = sdk_store::make(&dir, None, &sdk_input());
    assert_eq!(theirs.len(), 6);
    // The SDK keeps the shared-history flag (a forwarding chain it does not keep on import:
    // its own export of the session has none, and neither has ours).
    assert!(theirs.iter().any(|s| s["room_id"] == "!shared:localhost"
        && common::normalize_session(s)["<shared>"] == Value::Bool(true)));
    let before = snapshot(&dir);
    let v = inspect_json(&env, &dir, &[]);
    assert_eq!(v["kind"], "matrix-sdk");
    assert_eq!(v["schema_version"], 17);
    assert_eq!(v["needs_key"], false);
    assert_eq!(v["account"]["user_id"], sdk_store::USER);
    assert_eq!(v["account"]["device_id"], sdk_store::DEVICE);
    assert_eq!(
        (v["sessions"].as_u64(), v["rooms"].as_u64()),
        (Some(6), Some(6))
    );
    let (report, ours) = export_client_store(&env, &dir, &[]);
    assert_eq!(report["kind"], "matrix-sdk");
    assert_eq!(session_set(&ours), session_set(&theirs));
    // Into the store: every session, which the SDK marks as imported.
    env.init_store();
    let o = env
        .scmd()
        .args(["--json", "import", "--client-store"])
        .arg(dir.join("matrix-sdk-crypto.sqlite3"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (r["imported"].as_u64(), r["imported_by_client"].as_u64()),
        (Some(6), Some(6))
    );
    assert_eq!(
        session_set(&env.export_sessions("all.txt", &[])),
        session_set(&theirs)
    );
    // The SDK migrates on open: only the copy was opened, the store is byte for byte as it was.
    assert_eq!(snapshot(&dir), before);
}

#[cfg(feature = "matrix-sdk-store")]
#[test]
fn matrix_sdk_store_sealed_with_a_passphrase() {
    let env = Env::new();
    let dir = env.path("sdk-sealed");
    let theirs = sdk_store::make(&dir, Some("sdk store passphrase"), &sdk_input());
    // Without the passphrase: the counts, no account.
    let v = inspect_json(&env, &dir, &[]);
    assert_eq!(v["needs_key"], true);
    assert_eq!(v["sessions"], 6);
    assert_eq!(v["account"], Value::Null);
    let out = env.path("sealed.txt");
    for extra in [
        vec![],
        vec![
            "--client-store-passphrase-file".to_string(),
            env.write_secret("wrong.txt", "not it\n")
                .display()
                .to_string(),
        ],
    ] {
        let o = run_export(&env, false, &dir, &out, &extra);
        assert_error(
            &o,
            12,
            "the store is sealed with a passphrase",
            "--client-store-passphrase-file",
        );
        assert!(!out.exists());
    }
    let pass = env.write_secret("sdk-pass.txt", "sdk store passphrase\n");
    let p = pass.to_str().unwrap();
    let v = inspect_json(&env, &dir, &["--client-store-passphrase-file", p]);
    assert_eq!(v["account"]["user_id"], sdk_store::USER);
    let (_, ours) = export_client_store(&env, &dir, &["--client-store-passphrase-file", p]);
    assert_eq!(session_set(&ours), session_set(&theirs));
}

#[cfg(feature = "matrix-sdk-store")]
#[test]
fn matrix_sdk_store_of_a_newer_schema_is_refused_not_migrated() {
    let env = Env::new();
    let dir = env.path("sdk-newer");
    sdk_store::make(&dir, None, &sdk_input()[..1]);
    let c = rusqlite::Connection::open(dir.join("matrix-sdk-crypto.sqlite3")).unwrap();
    c.execute("UPDATE kv SET value = X'12' WHERE key = 'version'", [])
        .unwrap();
    drop(c);
    export_fails(
        &env,
        &dir,
        13,
        "matrix-sdk store schema version 18; mxkeys reads versions up to 17",
        "newer mxkeys",
    );
}

/// A run that was killed leaves its private copy of the client's keys in the temporary
/// directory; the next run removes it (and only copies of runs that are gone, of this user).
#[test]
fn copies_left_by_killed_runs_are_removed_by_the_next_run() {
    let env = Env::new();
    let store = copy_store(&env, "nio-default");
    let tmp = env.path("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    // A copy left by a process that no longer exists (pids never reach this value on Linux),
    // one of a live process (this test), one of an older mxkeys (no pid in its name), and an
    // unrelated directory.
    let stale = tmp.join("mxkeys-client-store-999999999-AbCdEf");
    let live = tmp.join(format!("mxkeys-client-store-{}-GhIjKl", std::process::id()));
    let old = tmp.join("mxkeys-client-store-MnOpQr");
    let other = tmp.join("something-else");
    for d in [&stale, &live, &old, &other] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::write(d.join("keys.db"), b"copied keys").unwrap();
    }
    let o = env
        .cmd()
        .env("TMPDIR", &tmp)
        .args(["--json", "inspect", "--client-store"])
        .arg(&store)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(!stale.exists(), "the killed run's copy is still there");
    for d in [&live, &old, &other] {
        assert!(d.join("keys.db").exists(), "{} was removed", d.display());
    }
    // The run's own copy is gone too.
    let mut names: Vec<String> = std::fs::read_dir(&tmp)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let mut want = vec![
        "mxkeys-client-store-MnOpQr".to_string(),
        live.file_name().unwrap().to_str().unwrap().to_string(),
        "something-else".to_string(),
    ];
    want.sort();
    assert_eq!(names, want);
}

/// mautrix-go's fixture: `fixtures/client-stores/mautrix.db`, written by mautrix-go v0.15.4
/// itself (libolm 3.2.13), with its pickle key in `mautrix-made-by.json`.
const MAUTRIX_PICKLE_KEY: &str = "mautrix fixture pickle key";

/// A copy of the mautrix fixture database, alone in its own directory.
fn copy_mautrix(env: &Env, dir: &str) -> PathBuf {
    let d = env.path(dir);
    std::fs::create_dir_all(&d).unwrap();
    let db = d.join("mautrix.db");
    std::fs::copy(fixture("client-stores/mautrix.db"), &db).unwrap();
    db
}

/// A copy of the mautrix fixture database changed by `sql`.
fn mautrix_altered(env: &Env, name: &str, sql: &str) -> PathBuf {
    let db = copy_mautrix(env, name);
    run_sql(&db, sql);
    db
}

/// What mautrix itself exported for its store (`exportSessionsJSON`, the plaintext of its
/// `ExportKeys`), keyed by session id.
fn mautrix_export() -> std::collections::BTreeMap<String, Value> {
    let v = common::read_sessions(&fixture("client-stores/mautrix.export.json"));
    v.into_iter()
        .map(|s| (s["session_id"].as_str().unwrap().to_string(), s))
        .collect()
}

fn made_by() -> Value {
    serde_json::from_slice(&std::fs::read(fixture("client-stores/mautrix-made-by.json")).unwrap())
        .unwrap()
}

/// Our export of a mautrix store equals mautrix's own, session for session: room, sender
/// key, session key (so the first known index) and forwarding chain.
fn assert_same_as_mautrix(ours: &[Value]) {
    let theirs = mautrix_export();
    assert_eq!(ours.len(), theirs.len());
    for s in ours {
        let id = s["session_id"].as_str().unwrap();
        let t = theirs
            .get(id)
            .unwrap_or_else(|| panic!("{id} not in mautrix's export"));
        for k in ["room_id", "sender_key", "session_key", "algorithm"] {
            assert_eq!(s[k], t[k], "{id} {k}");
        }
        // mautrix writes a missing chain as null.
        let chain = |v: &Value| v.as_array().cloned().unwrap_or_default();
        assert_eq!(
            chain(&s["forwarding_curve25519_key_chain"]),
            chain(&t["forwarding_curve25519_key_chain"]),
            "{id} chain"
        );
    }
}

#[test]
fn mautrix_store_inspect_and_export_exactly_what_mautrix_exports() {
    let env = Env::new();
    let db = copy_mautrix(&env, "mautrix");
    let before = snapshot(db.parent().unwrap());
    let v = inspect_json(&env, &db, &[]);
    assert_eq!(v["kind"], "mautrix");
    assert_eq!(v["schema_version"], 10);
    assert_eq!(v["account"]["user_id"], "@alice:example.org");
    assert_eq!(v["account"]["device_id"], "MAUTRIXDEV");
    assert_eq!(v["accounts"].as_array().unwrap().len(), 1);
    // The withheld notice and the redacted session are rows without a session: not counted.
    assert_eq!(v["sessions"], 6);
    assert_eq!(v["rooms"], 5);
    assert_eq!(v["needs_key"], true);
    // Human form, on the directory holding the one database; no key needed to inspect.
    let t = inspect_text(&env, db.parent().unwrap());
    assert!(
        t.contains("kind:               mautrix (schema version 10)"),
        "{t}"
    );
    assert!(
        t.contains("account:            @alice:example.org device MAUTRIXDEV"),
        "{t}"
    );
    assert!(t.contains("inbound sessions:   6 in 5 rooms"), "{t}");
    assert!(t.contains("mautrix has no default"), "{t}");

    // No pickle key, or a wrong one: refused as nio's wrong key is (12, no output).
    let out = env.path("mautrix.txt");
    let o = run_export(&env, false, &db, &out, NO_FLAGS);
    assert_error(
        &o,
        12,
        "the pickle key does not decrypt the store's sessions",
        "--client-store-passphrase-file",
    );
    assert!(!out.exists());
    let wrong = env.write_secret("wrong-key.txt", "DEFAULT_KEY\n");
    let o = run_export(
        &env,
        false,
        &db,
        &out,
        &["--client-store-passphrase-file", wrong.to_str().unwrap()],
    );
    assert_error(
        &o,
        12,
        "the pickle key does not decrypt the store's sessions",
        "--client-store-passphrase-file",
    );
    assert!(!out.exists());

    // With the key: exactly mautrix's own export.
    assert_eq!(made_by()["pickle_key"], MAUTRIX_PICKLE_KEY);
    let pk = env.write_secret("pickle-key.txt", format!("{MAUTRIX_PICKLE_KEY}\n"));
    let key_flags = ["--client-store-passphrase-file", pk.to_str().unwrap()];
    let (report, ours) = export_client_store(&env, &db, &key_flags);
    assert_eq!(report["kind"], "mautrix");
    assert_eq!(report["sessions"], 6);
    assert_eq!(report["rooms"], 5);
    assert_eq!(report["rejected"], 0);
    assert_eq!(report["withheld"], 2);
    assert_same_as_mautrix(&ours);
    // The forwarded session carries its two-key chain; it is known from index 1.
    let m = made_by();
    let fwd = ours
        .iter()
        .find(|s| s["session_id"] == m["sessions"]["forwarded"])
        .unwrap();
    assert_eq!(
        fwd["forwarding_curve25519_key_chain"],
        m["forwarding_chain"]
    );
    use base64::Engine;
    let key = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(fwd["session_key"].as_str().unwrap())
        .unwrap();
    assert_eq!(key[..5], [1, 0, 0, 0, 1], "exported at index 1");
    // The Element sessions mautrix imported keep their claimed ed25519 key (mautrix's own
    // export leaves it empty), and are Element's keys.
    let element = common::read_sessions(&fixture("export/plaintext/element-three.json"));
    for e in &element {
        let s = ours
            .iter()
            .find(|s| s["session_id"] == e["session_id"])
            .unwrap();
        assert_eq!(s["sender_claimed_keys"], e["sender_claimed_keys"]);
        assert_eq!(s["session_key"], e["session_key"]);
    }
    // --room picks, --client-store-kind forces (both names).
    for kind in ["mautrix", "mautrix-go"] {
        let (_, ours) = export_client_store(
            &env,
            &db,
            &[
                key_flags[0],
                key_flags[1],
                "--client-store-kind",
                kind,
                "--room",
                "!ops:example.org",
            ],
        );
        assert_eq!(ours.len(), 1, "{kind}");
        assert_eq!(ours[0]["session_id"], m["sessions"]["own_ops"]);
    }
    // The key from the environment, like every other secret.
    let out = env.path("env.txt");
    let o = env
        .cmd()
        .env("MXKEYS_CLIENT_STORE_PASSPHRASE", MAUTRIX_PICKLE_KEY)
        .args(["export", "--client-store"])
        .arg(&db)
        .arg("-o")
        .arg(&out)
        .args(["--rounds", "1000", "--passphrase-file"])
        .arg(env.pass_file())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(snapshot(db.parent().unwrap()), before);
}

#[test]
fn mautrix_import_records_its_source_and_leaves_the_files_untouched() {
    let env = Env::new();
    env.init_store();
    let db = copy_mautrix(&env, "mautrix");
    let before = snapshot(db.parent().unwrap());
    let pk = env.write_secret("pickle-key.txt", MAUTRIX_PICKLE_KEY);
    let o = env
        .scmd()
        .args(["--json", "import", "--client-store-passphrase-file"])
        .arg(&pk)
        .arg("--client-store")
        .arg(&db)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["kind"], "mautrix");
    assert_eq!(
        (v["read"].as_u64(), v["imported"].as_u64()),
        (Some(6), Some(6))
    );
    assert_eq!(v["libolm_pickles"], 6);
    assert_eq!(v["withheld"], 2);
    // Schema 10 has no key source: nothing is known as imported by the client.
    assert_eq!(v["imported_by_client"], 0);
    let list = env.list_json();
    let want = format!("client-store:mautrix:{}", db.display());
    for r in list["rooms"].as_array().unwrap() {
        let from = r["sources"].as_object().unwrap();
        assert_eq!(from.keys().collect::<Vec<_>>(), vec![&want], "{r}");
    }
    assert_same_as_mautrix(&env.export_sessions("all.txt", &[]));
    env.cmd()
        .args(["inspect", "--client-store"])
        .arg(&db)
        .assert()
        .success();
    assert_eq!(snapshot(db.parent().unwrap()), before);
}

#[test]
fn mautrix_current_schema_and_damaged_stores() {
    let env = Env::new();
    let pk = env.write_secret("pickle-key.txt", MAUTRIX_PICKLE_KEY);
    let key_flags = ["--client-store-passphrase-file", pk.to_str().unwrap()];
    // The columns mautrix-go's upgrades 11 to 21 add (crypto/sql_store_upgrade at its HEAD),
    // with key sources and a backup version set as a current mautrix sets them.
    let current = mautrix_altered(
        &env,
        "current",
        "ALTER TABLE crypto_account ADD COLUMN key_backup_version TEXT NOT NULL DEFAULT '';
         ALTER TABLE crypto_megolm_inbound_session ADD COLUMN shared_history BOOLEAN;
         ALTER TABLE crypto_megolm_inbound_session ADD COLUMN key_backup_version TEXT NOT NULL DEFAULT '';
         ALTER TABLE crypto_megolm_inbound_session ADD COLUMN key_source TEXT NOT NULL DEFAULT '';
         ALTER TABLE crypto_megolm_inbound_session ADD COLUMN source_user TEXT NOT NULL DEFAULT '';
         UPDATE crypto_megolm_inbound_session SET key_source = 'direct';
         UPDATE crypto_megolm_inbound_session SET key_source = 'import' WHERE forwarding_chains = '' AND sender_key NOT IN (SELECT sender_key FROM crypto_megolm_inbound_session WHERE room_id = '!ops:example.org');
         UPDATE crypto_megolm_inbound_session SET key_source = 'forward' WHERE forwarding_chains LIKE '%,%';
         UPDATE crypto_megolm_inbound_session SET key_backup_version = '1' WHERE room_id = '!bridge:example.org';
         UPDATE crypto_version SET version = 21, compat = 20;",
    );
    let (report, ours) = export_client_store(&env, &current, &key_flags);
    assert_eq!(report["sessions"], 6);
    assert_eq!(report["imported_by_client"], 3);
    assert_same_as_mautrix(&ours);
    assert_eq!(inspect_json(&env, &current, &[])["schema_version"], 21);
    // A newer version that mautrix marks compatible with one mxkeys reads is read.
    let compatible = mautrix_altered(
        &env,
        "compatible",
        "UPDATE crypto_version SET version = 24, compat = 20;",
    );
    let (_, ours) = export_client_store(&env, &compatible, &key_flags);
    assert_eq!(ours.len(), 6);
    // One that is not: refused, never migrated.
    let newer = mautrix_altered(
        &env,
        "newer",
        "UPDATE crypto_version SET version = 99, compat = 99;",
    );
    export_fails(
        &env,
        &newer,
        13,
        "mautrix store schema version 99; mxkeys reads versions up to 21",
        "newer mxkeys",
    );
    // Truncated: as nio's.
    let bytes = std::fs::read(fixture("client-stores/mautrix.db")).unwrap();
    let truncated = env.write("mautrix-truncated.db", &bytes[..bytes.len() / 3]);
    export_fails(
        &env,
        &truncated,
        13,
        "not a readable SQLite database",
        "truncated or damaged",
    );
    // One garbage pickle: that row is reported and skipped (exit 3), the rest exported.
    let one_bad = mautrix_altered(
        &env,
        "one-bad",
        "UPDATE crypto_megolm_inbound_session SET session = X'00ff00' \
         WHERE room_id = '!ops:example.org' AND withheld_code IS NULL;",
    );
    let out = env.path("partial.txt");
    let o = run_export(&env, true, &one_bad, &out, &key_flags);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["sessions"].as_u64(), v["rejected"].as_u64()),
        (Some(5), Some(1))
    );
    assert_eq!(v["rejections"][0]["room_id"], "!ops:example.org");
    // A pickle of another session under a row's id is refused, not exported under that id.
    let swapped = mautrix_altered(
        &env,
        "swapped",
        "UPDATE crypto_megolm_inbound_session SET session = (SELECT session FROM \
         crypto_megolm_inbound_session WHERE room_id = '!bridge:example.org' AND \
         forwarding_chains = '') WHERE room_id = '!ops:example.org' AND withheld_code IS NULL;",
    );
    let o = run_export(&env, true, &swapped, &env.path("swapped.txt"), &key_flags);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v["rejections"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("the pickle holds session"),
        "{v}"
    );
    // Not mautrix's tables any more: an unknown kind.
    let other = mautrix_altered(&env, "other", "DROP TABLE crypto_megolm_inbound_session;");
    export_fails(
        &env,
        &other,
        13,
        "no table of a known client",
        "--client-store-kind",
    );
}
