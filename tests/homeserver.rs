//! Integration tests of server-side key backup against a REAL Synapse (issue 3).
//!
//! The server comes from `scripts/test-homeserver.sh` (`run -- cargo test`, or `start` and the
//! printed exports), which sets MXKEYS_TEST_HOMESERVER and MXKEYS_TEST_REGISTRATION_SECRET.
//! Without them every test prints a skip line and passes, unless MXKEYS_TEST_DISALLOW_SKIP=1
//! (as `scripts/test.sh` and CI set it), which turns a missing server into a failure.
//!
//! Every test registers its own users, so the tests run in parallel on one server. The real
//! `mxkeys` binary is run with a clean environment; the tests check exit codes, JSON counts,
//! messages, and what the server holds afterwards, read back raw.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mxkeys::backup::{AuthData, BackupDecryptionKey, SignatureState};
use mxkeys::secret::{Key32, Passphrase};
use mxkeys::secret_storage::{self, PassphraseInfo, SecretStorageKey};
use serde_json::{Value, json};

use common::backup_cipher::{b64e, independent_decrypt};
use common::fault_proxy::{Action, FaultProxy};
use common::megolm::GenSession;
use common::synapse::{Api, Hs, User, require_hs};
use common::{Env, Run, contains_bytes, fixture, fixture_json, manifest_passphrase};

const KEYS_PATH: &str = "/_matrix/client/v3/room_keys/keys";
const VERSION_PATH: &str = "/_matrix/client/v3/room_keys/version";
/// How long a stalling proxy says nothing: far longer than any client timeout in these tests.
const STALL: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------------
// Helpers

/// A recovery key file (base58, 0600) for a raw 32-byte key.
fn recovery_key_file(env: &Env, name: &str, key: &Key32) -> PathBuf {
    env.write_secret(name, format!("{}\n", &*mxkeys::recovery_key::encode(key)))
}

/// The key in a recovery key file.
fn read_recovery_key(path: &Path) -> BackupDecryptionKey {
    let text = std::fs::read_to_string(path).unwrap();
    BackupDecryptionKey::new(mxkeys::recovery_key::decode(&text).unwrap())
}

/// `(room_id, session_id, session_key)` of every session of a plaintext export array.
fn key_set(sessions: &Value) -> BTreeSet<(String, String, String)> {
    sessions
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["room_id"].as_str().unwrap().to_string(),
                s["session_id"].as_str().unwrap().to_string(),
                s["session_key"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// A plaintext fixture (`fixtures/export/plaintext/NAME.json`).
fn plaintext(name: &str) -> Value {
    fixture_json(&format!("export/plaintext/{name}.json"))
}

/// Decrypt an export file with `mxkeys decrypt`; the plaintext array.
fn decrypt_export(env: &Env, file: &Path, pass: &Path) -> Value {
    let out = env.path(&format!(
        "{}.plain.json",
        file.file_name().unwrap().to_string_lossy()
    ));
    let _ = std::fs::remove_file(&out);
    env.run(
        env.cmd()
            .arg("decrypt")
            .arg(file)
            .arg("-o")
            .arg(&out)
            .arg("--passphrase-file")
            .arg(pass),
    )
    .ok();
    serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap()
}

/// Write sessions (a JSON array) as an export file with `mxkeys encrypt` (1000 rounds).
fn encrypt_export(env: &Env, name: &str, sessions: &Value) -> PathBuf {
    let json = env.write(
        &format!("{name}.json"),
        serde_json::to_vec(sessions).unwrap(),
    );
    let out = env.path(&format!("{name}.txt"));
    let pass = env.pass_file();
    env.run(
        env.cmd()
            .arg("encrypt")
            .arg(&json)
            .arg("-o")
            .arg(&out)
            .arg("--rounds")
            .arg("1000")
            .arg("--passphrase-file")
            .arg(&pass),
    )
    .ok();
    out
}

/// A user with a logged-in store and a backup made by `mxkeys backup create -o rk.txt`.
struct Account {
    user: User,
    env: Env,
    api: Api,
    version: String,
    rk: PathBuf,
    key: BackupDecryptionKey,
}

fn account_with_backup(hs: &Hs, prefix: &str) -> Account {
    let user = hs.register(prefix);
    let env = Env::for_homeserver(&hs.base);
    env.init_and_login(&user);
    let rk = env.path("rk.txt");
    let r = env
        .smx_p(&["--json", "backup", "create"], &[("-o", &rk)])
        .ok();
    let version = r.json()["version"].as_str().unwrap().to_string();
    let key = read_recovery_key(&rk);
    Account {
        api: hs.api(&user),
        user,
        env,
        version,
        rk,
        key,
    }
}

/// An upload of export file `file` with the store's login (extra args before the file).
fn upload(env: &Env, extra: &[&str], file: Option<&Path>) -> Run {
    let mut c = env.scmd();
    c.args(["--json", "backup", "upload"]).args(extra);
    if let Some(f) = file {
        c.arg(f).arg("--passphrase-file").arg(env.pass_file());
    }
    env.run(&mut c)
}

/// Mode bits of a file.
fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

// ---------------------------------------------------------------------------------------------
// 1. Login, logout, one-shot tokens, credentials rejected, unreachable

#[test]
fn login_seals_the_token_and_logout_revokes_it() {
    let hs = require_hs!();
    let user = hs.register("login");
    // Through a (pass-through) proxy, to learn the token the server hands mxkeys.
    let proxy = FaultProxy::start(&hs.base);
    let env = Env::for_homeserver(&proxy.url());
    env.init_store();
    let r = env
        .login_with(&user, &["-vvv"], &["--device-name", "mxkeys-test"])
        .ok()
        .stderr_has("Logged in as");
    let login = proxy
        .seen()
        .into_iter()
        .find(|s| s.method == "POST" && s.path.ends_with("/login"))
        .expect("a login request");
    assert_eq!(login.status, 200);
    let token = serde_json::from_slice::<Value>(&login.response).unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(token.len() > 10);
    // The token (and the password) appear in no output, even at -vvv ...
    for secret in [&token, &user.password] {
        assert!(!r.all_output().contains(secret.as_str()), "{}", r.stderr);
    }
    // ... and not in any file of the store, nor anywhere under HOME.
    for dir in [env.store(), env.home()] {
        for (p, bytes) in common::all_bytes_under(&dir) {
            assert!(
                !contains_bytes(&bytes, token.as_bytes()),
                "the access token is in {} in the clear",
                p.display()
            );
            assert!(!contains_bytes(&bytes, user.password.as_bytes()));
        }
    }
    // The stored login works, and says nothing secret at -vvv either.
    let r = env.smx(&["-vvv", "--json", "backup", "info"]).code(10);
    assert!(!r.all_output().contains(&token));
    assert_eq!(
        Api::new(&hs.base, Some(&token)).whoami_status(),
        200,
        "the token mxkeys keeps is live"
    );

    // The token is revoked behind mxkeys's back: the next command says so (14) with a hint.
    Api::new(&hs.base, Some(&token)).ok("POST", "logout", Some(&json!({})));
    env.smx(&["backup", "info"])
        .code(14)
        .stderr_has("rejected the credentials")
        .stderr_has("hint: log in again");

    // Log in again, then `mxkeys logout`: the server revokes the token, the store forgets it.
    env.login(&user).ok().stderr_has("replacing the login");
    let second = proxy
        .seen()
        .into_iter()
        .rev()
        .find(|s| s.method == "POST" && s.path.ends_with("/login"))
        .unwrap();
    let token2 = serde_json::from_slice::<Value>(&second.response).unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(token, token2);
    let r = env.smx(&["--json", "logout"]).ok();
    assert_eq!(r.json()["logged_out"], true);
    assert!(!r.all_output().contains(&token2));
    assert_eq!(Api::new(&hs.base, Some(&token2)).whoami_status(), 401);
    // The revoked token, given one-shot: 14 with a hint.
    let tf = env.token_file("old-token.txt", &token2);
    env.run(
        env.cmd()
            .args(["backup", "info", "--homeserver", &hs.base])
            .arg("--access-token-file")
            .arg(&tf),
    )
    .code(14)
    .stderr_has("hint:");
    // The store no longer holds a login.
    let r = env.smx(&["backup", "info"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("not logged in"), "{}", r.stderr);
}

#[test]
fn wrong_password_is_rejected_with_14() {
    let hs = require_hs!();
    let user = hs.register("badpw");
    let env = Env::for_homeserver(&hs.base);
    env.init_store();
    let pw = env.write_secret("password.txt", "not-the-password\n");
    env.smx_p(
        &["login", "--user", &user.user_id, "--homeserver", &hs.base],
        &[("--password-file", &pw)],
    )
    .code(14)
    .stderr_has("rejected the credentials")
    .stderr_has("hint:");
    // Nothing was stored: the store has no login.
    let r = env.smx(&["backup", "info"]);
    assert!(r.stderr.contains("not logged in"), "{}", r.stderr);
}

#[test]
fn one_shot_token_without_a_store() {
    let hs = require_hs!();
    let user = hs.register("oneshot");
    let api = hs.api(&user);
    let key = BackupDecryptionKey::random().unwrap();
    let public = key.public_key();
    let version = api.create_version(&key.public_key_base64());
    let mut sessions: Vec<GenSession> = (0..3)
        .map(|i| GenSession::new(&format!("!oneshot{i}:localhost")))
        .collect();
    for s in sessions.iter_mut() {
        let d = s.backup_data(&public, 0, 0);
        api.put_key(&version, &s.room_id, &s.session_id, &d);
    }

    let env = Env::for_homeserver(&hs.base);
    let tok = env.token_file("token.txt", &user.token);
    let r = env
        .run(
            env.cmd()
                .args(["-vvv", "--json", "backup", "info", "--homeserver", &hs.base])
                .arg("--access-token-file")
                .arg(&tok),
        )
        .ok();
    let info = r.json();
    assert_eq!(info["version"], version.as_str());
    assert_eq!(info["count"], 3);
    assert_eq!(info["public_key"], key.public_key_base64().as_str());
    assert!(!r.all_output().contains(&user.token));

    let rk = recovery_key_file(&env, "rk.txt", key.expose_secret());
    let out = env.path("keys.txt");
    let pass = env.pass_file();
    let r = env
        .run(
            env.cmd()
                .args([
                    "-vvv",
                    "--json",
                    "backup",
                    "download",
                    "--homeserver",
                    &hs.base,
                ])
                .args(["--rounds", "1000"])
                .arg("--access-token-file")
                .arg(&tok)
                .arg("--recovery-key-file")
                .arg(&rk)
                .arg("--passphrase-file")
                .arg(&pass)
                .arg("-o")
                .arg(&out),
        )
        .ok();
    assert!(!r.all_output().contains(&user.token));
    let j = r.json();
    assert_eq!(j["sessions"], 3, "{j}");
    assert_eq!(j["unlocked_with"], "backup_recovery_key");
    assert_eq!(mode(&out), 0o600);
    let got = key_set(&decrypt_export(&env, &out, &pass));
    let want: BTreeSet<_> = sessions
        .iter_mut()
        .map(|s| (s.room_id.clone(), s.session_id.clone(), s.key_at(0)))
        .collect();
    assert_eq!(got, want);
    // No store was made anywhere.
    assert!(!env.store().exists());
    assert!(
        std::fs::read_dir(env.xdg_data_home())
            .unwrap()
            .next()
            .is_none(),
        "a default store was created"
    );

    // An invalid token: 14, with a hint, and the bad token is not echoed.
    let bad = env.token_file("bad.txt", "syt_bm90LWEtdG9rZW4_invalidinvalid_0abcde");
    let r = env
        .run(
            env.cmd()
                .args(["backup", "info", "--homeserver", &hs.base])
                .arg("--access-token-file")
                .arg(&bad),
        )
        .code(14)
        .stderr_has("hint:");
    assert!(!r.stderr.contains("invalidinvalid"));
}

#[test]
fn unreachable_homeserver_exits_15_after_retries() {
    let hs = require_hs!();
    let _ = hs;
    // A port that was just free: nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}");
    let env = Env::for_homeserver(&url);
    let tok = env.token_file("token.txt", "syt_whatever");
    let r = env
        .run(
            env.cmd()
                .args(["-v", "backup", "info", "--homeserver", &url])
                .args(["--attempts", "3"])
                .arg("--access-token-file")
                .arg(&tok),
        )
        .code(15)
        .stderr_has("cannot reach the homeserver")
        .stderr_has("hint:");
    assert_eq!(
        r.stderr.matches("retrying").count(),
        2,
        "3 attempts = 2 retries:\n{}",
        r.stderr
    );
    // The waits are the short test backoff (MXKEYS_RETRY_BASE_MS=5 caps each at 40 ms; the
    // default backoff starts at 250 ms), read from what mxkeys says rather than from the clock.
    let waits: Vec<u64> = r
        .stderr
        .split("retrying in ")
        .skip(1)
        .map(|t| t.split(" ms").next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(waits.len(), 2, "{}", r.stderr);
    assert!(waits.iter().all(|&w| w <= 40), "{waits:?}");
}

// ---------------------------------------------------------------------------------------------
// 2. backup create / info / replace; stale versions

#[test]
fn create_info_replace_and_stale_versions() {
    let hs = require_hs!();
    let user = hs.register("create");
    let api = hs.api(&user);
    let env = Env::for_homeserver(&hs.base);
    env.init_and_login(&user);

    // No secret storage: the recovery key is printed once, with a warning about trust.
    let r = env.smx(&["backup", "create"]).ok();
    let line = r.stdout.trim();
    assert_eq!(line.lines().count(), 1, "{}", r.stdout);
    assert!(line.starts_with("Es"), "{line}");
    let k1 = BackupDecryptionKey::new(mxkeys::recovery_key::decode(line).unwrap());
    assert!(r.stderr.contains("Element will not trust"), "{}", r.stderr);
    assert!(r.stderr.contains("shown once"), "{}", r.stderr);
    let info = env.smx(&["--json", "backup", "info"]).ok().json();
    let v1 = info["version"].as_str().unwrap().to_string();
    assert_eq!(info["public_key"], k1.public_key_base64().as_str());
    assert_eq!(info["count"], 0);
    assert_eq!(info["current"], true);
    assert_eq!(info["key_in_store"], true);
    assert_eq!(info["signed_by_master_key"], false);
    let (_, raw) = api.version(None);
    assert_eq!(raw["version"], v1.as_str());
    assert_eq!(
        raw["auth_data"]["public_key"],
        k1.public_key_base64().as_str()
    );

    // Replacing the backup without --yes and without a terminal: exit 2, nothing created.
    let rk2 = env.path("rk2.txt");
    env.smx_p(&["backup", "create"], &[("-o", &rk2)])
        .code(2)
        .stderr_has("--yes");
    assert!(!rk2.exists());
    assert_eq!(api.version(None).1["version"], v1.as_str());

    // With --yes: version 2, its key in a 0600 file, not on stdout.
    let r = env
        .smx_p(&["--json", "backup", "create", "--yes"], &[("-o", &rk2)])
        .ok();
    let j = r.json();
    let v2 = j["version"].as_str().unwrap().to_string();
    assert_ne!(v1, v2);
    assert_eq!(mode(&rk2), 0o600);
    let k2 = read_recovery_key(&rk2);
    assert_eq!(j["public_key"], k2.public_key_base64().as_str());
    assert_eq!(j["stored_in_secret_storage"], false);
    assert!(
        !r.stdout
            .contains(&*mxkeys::recovery_key::encode(k2.expose_secret()))
    );
    let info = env.smx(&["--json", "backup", "info"]).ok().json();
    assert_eq!(info["version"], v2.as_str());
    let old = env
        .smx(&["--json", "backup", "info", "--version", &v1])
        .ok()
        .json();
    assert_eq!(old["current"], false);

    // In human form with -o, the last words name the file rather than claim it was shown.
    let rk3 = env.path("rk3.txt");
    let r = env
        .smx_p(&["backup", "create", "--yes"], &[("-o", &rk3)])
        .ok();
    assert!(r.stdout.trim().is_empty(), "{}", r.stdout);
    assert!(!r.stderr.contains("shown once"), "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("The recovery key is in {}", rk3.display())),
        "{}",
        r.stderr
    );
    let v3 = env.smx(&["--json", "backup", "info"]).ok().json()["version"]
        .as_str()
        .unwrap()
        .to_string();

    // Uploading to the old version: refused before anything is sent (11).
    let one = fixture("export/element-one.txt");
    upload(&env, &["--version", &v1], Some(&one))
        .code(11)
        .stderr_has("not the current one");
    assert_eq!(api.count(&v1), 0);
    assert_eq!(api.count(&v2), 0);
    assert_eq!(api.count(&v3), 0);

    // Synapse's answer to a PUT to the old version: 403 M_WRONG_ROOM_KEYS_VERSION whose
    // current_version is the version we sent (the quirk mxkeys must not trust).
    let mut s = GenSession::new("!stale:localhost");
    let d = s.backup_data(&k1.public_key(), 0, 0);
    let (status, body) = api.put_keys(
        &v1,
        &json!({"rooms": {s.room_id.clone(): {"sessions": {s.session_id.clone(): d}}}}),
    );
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["errcode"], "M_WRONG_ROOM_KEYS_VERSION");
    assert_eq!(
        body["current_version"],
        v1.as_str(),
        "Synapse's quirk changed"
    );
}

#[test]
fn backup_version_replaced_during_upload_exits_11() {
    let hs = require_hs!();
    let user = hs.register("race");
    let api = Arc::new(hs.api(&user));
    let proxy = FaultProxy::start(&hs.base);
    let env = Env::for_homeserver(&proxy.url());
    env.init_and_login(&user);
    let rk = env.path("rk.txt");
    let v1 = env
        .smx_p(&["--json", "backup", "create"], &[("-o", &rk)])
        .ok()
        .json()["version"]
        .as_str()
        .unwrap()
        .to_string();
    // Another client makes a new backup right before mxkeys's first PUT reaches the server.
    let other = BackupDecryptionKey::random().unwrap().public_key_base64();
    let made = Arc::new(std::sync::Mutex::new(None::<String>));
    let hook = {
        let (api, made) = (api.clone(), made.clone());
        Arc::new(move || {
            *made.lock().unwrap() = Some(api.create_version(&other));
        })
    };
    proxy.rule("PUT", KEYS_PATH, 1, Action::HookThenPass(hook));
    let r = upload(&env, &[], Some(&fixture("export/element-three.txt")))
        .code(11)
        .stderr_has(&format!("backup version {v1} is no longer the current one"))
        .stderr_has(r#""hint":"another client made a new backup"#);
    let v2 = made.lock().unwrap().clone().expect("the hook ran");
    assert_ne!(v1, v2);
    // Synapse's current_version (= v1) was not believed: no message calls v1 current.
    assert!(!r.stderr.contains(&format!("current one is {v1}")));
    // Not retried, and nothing was stored in either version.
    assert_eq!(proxy.count("PUT", KEYS_PATH), 1);
    let refused = proxy
        .seen()
        .into_iter()
        .find(|s| s.method == "PUT")
        .unwrap();
    assert_eq!(refused.status, 403);
    assert_eq!(api.count(&v1), 0);
    assert_eq!(api.count(&v2), 0);
}

// ---------------------------------------------------------------------------------------------
// 3. Upload and download: files, the store, re-upload, dry run, filters, status

#[test]
fn upload_and_download_a_thousand_keys() {
    let hs = require_hs!();
    let a = account_with_backup(&hs, "thousand");
    let env = &a.env;
    let thousand = fixture("export/element-thousand.txt");
    assert_eq!(
        manifest_passphrase("element-thousand"),
        common::PASS,
        "fixture passphrase"
    );

    // From an export file.
    let r = upload(env, &[], Some(&thousand)).ok();
    let up_time = r.elapsed;
    let j = r.json();
    assert_eq!(j["considered"], 1000, "{j}");
    assert_eq!(j["new"], 1000);
    assert_eq!(j["sent"], 1000);
    assert_eq!(j["skipped"], 0);
    assert_eq!(j["server_count"], 1000);
    assert!(j["requests"].as_u64().unwrap() >= 2, "800 rooms: two PUTs");
    assert_eq!(a.api.count(&a.version), 1000);

    // Again: nothing to send.
    let j = upload(env, &[], Some(&thousand)).ok().json();
    assert_eq!(j["sent"], 0, "{j}");
    assert_eq!(j["skipped"], 1000);
    assert_eq!(j["requests"], 0);
    let etag = a.api.version(Some(&a.version)).1["etag"].clone();

    // From the store.
    env.import_ok(&[&fixture("export/wasm-three.txt")]);
    let j = upload(env, &[], None).ok().json();
    assert_eq!(j["considered"], 3, "{j}");
    assert_eq!(j["sent"], 3);
    assert_eq!(a.api.count(&a.version), 1003);

    // Dry run: reports, sends nothing.
    env.import_ok(&[&fixture("export/element-one.txt")]);
    let etag2 = a.api.version(Some(&a.version)).1["etag"].clone();
    assert_ne!(etag, etag2);
    let j = upload(env, &["--dry-run"], None).ok().json();
    assert_eq!(j["dry_run"], true);
    assert_eq!(j["considered"], 4, "{j}");
    assert_eq!(j["new"], 1);
    assert_eq!(j["skipped"], 3);
    assert_eq!(j["sent"], 0);
    assert_eq!(j["requests"], 0);
    assert_eq!(a.api.count(&a.version), 1003);
    assert_eq!(a.api.version(Some(&a.version)).1["etag"], etag2);
    let r = env.smx(&["backup", "upload", "--dry-run"]).ok();
    assert!(r.stderr.contains("would send 1 keys"), "{}", r.stderr);
    let j = upload(env, &[], None).ok().json();
    assert_eq!(j["sent"], 1, "{j}");
    assert_eq!(a.api.count(&a.version), 1004);

    let mut want = key_set(&plaintext("element-thousand"));
    want.extend(key_set(&plaintext("wasm-three")));
    want.extend(key_set(&plaintext("element-one")));
    assert_eq!(want.len(), 1004);

    // Download into a fresh store (same account, a new login), then export + decrypt.
    let env2 = Env::for_homeserver(&hs.base);
    env2.init_and_login(&a.user);
    let rk2 = env2.write_secret("rk.txt", std::fs::read_to_string(&a.rk).unwrap());
    let r = env2
        .smx_p(
            &["--json", "backup", "download"],
            &[("--recovery-key-file", &rk2)],
        )
        .ok();
    let down_time = r.elapsed;
    let j = r.json();
    assert_eq!(j["fetched"], 1004, "{j}");
    assert_eq!(j["imported"], 1004);
    assert_eq!(j["rejected"], 0);
    assert_eq!(j["unlocked_with"], "backup_recovery_key");
    let list = env2.smx(&["--json", "list"]).ok().json();
    assert_eq!(list["sessions"], 1004);
    let pass2 = env2.pass_file();
    let all = env2.path("all.txt");
    env2.smx_p(
        &["export", "--rounds", "1000"],
        &[("-o", &all), ("--passphrase-file", &pass2)],
    )
    .ok();
    assert_eq!(key_set(&decrypt_export(&env2, &all, &pass2)), want);
    // Downloading again changes nothing (the key is now cached in the store).
    let j = env2.smx(&["--json", "backup", "download"]).ok().json();
    assert_eq!(j["unlocked_with"], "stored_key");
    assert_eq!(j["unchanged"], 1004, "{j}");
    assert_eq!(j["imported"], 0);

    // --room and --session filters, to export files.
    let room = "!CLuRneFiokUYmrGgWm:example.org";
    let in_room: BTreeSet<_> = want.iter().filter(|t| t.0 == room).cloned().collect();
    assert_eq!(in_room.len(), 2);
    let room_out = env2.path("room.txt");
    let j = env2
        .smx_p(
            &[
                "--json", "backup", "download", "--room", room, "--rounds", "1000",
            ],
            &[("-o", &room_out), ("--passphrase-file", &pass2)],
        )
        .ok()
        .json();
    assert_eq!(j["sessions"], 2, "{j}");
    assert_eq!(key_set(&decrypt_export(&env2, &room_out, &pass2)), in_room);
    let picked: Vec<_> = want.iter().step_by(250).cloned().collect();
    let sess_out = env2.path("sessions.txt");
    let mut c = env2.scmd();
    c.args(["--json", "backup", "download", "--rounds", "1000"]);
    for p in &picked {
        c.arg("--session").arg(&p.1);
    }
    c.arg("-o")
        .arg(&sess_out)
        .arg("--passphrase-file")
        .arg(&pass2);
    let j = env2.run(&mut c).ok().json();
    assert_eq!(j["sessions"], picked.len(), "{j}");
    assert_eq!(
        key_set(&decrypt_export(&env2, &sess_out, &pass2)),
        picked.iter().cloned().collect::<BTreeSet<_>>()
    );
    // --room with --session: only that session of that room.
    let one = in_room.iter().next().unwrap().clone();
    let j = env2
        .smx_p(
            &[
                "--json",
                "backup",
                "download",
                "--room",
                room,
                "--session",
                &one.1,
                "--rounds",
                "1000",
                "--force",
            ],
            &[("-o", &sess_out), ("--passphrase-file", &pass2)],
        )
        .ok()
        .json();
    assert_eq!(j["sessions"], 1, "{j}");

    // -o FILE with no store at all (one-shot token).
    let env3 = Env::for_homeserver(&hs.base);
    let tok = env3.token_file("token.txt", &a.user.token);
    let rk3 = env3.write_secret("rk.txt", std::fs::read_to_string(&a.rk).unwrap());
    let pass3 = env3.pass_file();
    let out3 = env3.path("backup.txt");
    let j = env3.download_to_file(&tok, &rk3, &pass3, &out3);
    assert_eq!(j["sessions"], 1004, "{j}");
    assert_eq!(key_set(&decrypt_export(&env3, &out3, &pass3)), want);
    assert!(!env3.store().exists());

    eprintln!(
        "TIMING element-thousand: upload 1000 keys {:.2} s, download 1004 keys into a store {:.2} s",
        up_time.as_secs_f64(),
        down_time.as_secs_f64()
    );
}

#[test]
fn status_counts_a_constructed_situation() {
    let hs = require_hs!();
    let a = account_with_backup(&hs, "status");
    let public = a.key.public_key();
    let mk = |n: usize, tag: &str| -> Vec<GenSession> {
        (0..n)
            .map(|i| GenSession::new(&format!("!{tag}{i}:localhost")))
            .collect()
    };
    let mut only_local = mk(3, "local");
    let mut only_server = mk(2, "server");
    let mut same = mk(4, "same");
    let mut local_better = mk(1, "lbetter");
    let mut server_better = mk(2, "sbetter");

    // The server's side, put there raw.
    let put = |s: &mut GenSession, index: u32| {
        let d = s.backup_data(&public, index, 0);
        a.api.put_key(&a.version, &s.room_id, &s.session_id, &d);
    };
    for s in only_server.iter_mut() {
        put(s, 0);
    }
    for s in same.iter_mut() {
        put(s, 2);
    }
    for s in local_better.iter_mut() {
        put(s, 5);
    }
    for s in server_better.iter_mut() {
        put(s, 0);
    }
    // The store's side, from an export written by `mxkeys encrypt`.
    let mut local = Vec::new();
    for s in only_local.iter_mut() {
        local.push(s.export_entry(0, &[]));
    }
    for s in same.iter_mut() {
        local.push(s.export_entry(2, &[]));
    }
    for s in local_better.iter_mut() {
        local.push(s.export_entry(0, &[]));
    }
    for s in server_better.iter_mut() {
        local.push(s.export_entry(7, &[]));
    }
    let file = encrypt_export(&a.env, "local", &Value::Array(local));
    a.env.import_ok(&[&file]);

    let j = a.env.smx(&["--json", "backup", "status"]).ok().json();
    assert_eq!(
        j["counts"],
        json!({"same": 4, "only_local": 3, "only_server": 2, "local_better": 1, "server_better": 2}),
        "{j}"
    );
    assert_eq!(j["in_sync"], false);
    assert_eq!(j["server_count"], 9);
    assert_eq!(j["upload_would_send"].as_array().unwrap().len(), 4);
    assert_eq!(j["download_would_bring"].as_array().unwrap().len(), 4);
    let lb = j["upload_would_send"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["room_id"] == local_better[0].room_id.as_str())
        .unwrap();
    assert_eq!(lb["local_first_index"], 0);
    assert_eq!(lb["server_first_index"], 5);

    // Upload sends exactly the 4 (3 new, 1 better); download brings the other 4; then in sync.
    let j = upload(&a.env, &[], None).ok().json();
    assert_eq!(
        (j["new"].clone(), j["better"].clone()),
        (json!(3), json!(1)),
        "{j}"
    );
    assert_eq!(j["skipped"], 6);
    let j = a.env.smx(&["--json", "backup", "download"]).ok().json();
    assert_eq!(j["imported"], 2, "{j}");
    assert_eq!(j["improved"], 2);
    let j = a.env.smx(&["--json", "backup", "status"]).ok().json();
    assert_eq!(j["in_sync"], true, "{j}");
    assert_eq!(j["counts"]["same"], 12);
    // The server kept its better copies.
    for s in &server_better {
        let (_, d) = a.api.key(&a.version, &s.room_id, &s.session_id);
        assert_eq!(d["first_message_index"], 0);
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Never degrading the backup (synapse#13704)

#[test]
fn upload_never_degrades_the_backup() {
    let hs = require_hs!();
    let a = account_with_backup(&hs, "degrade");
    let public = a.key.public_key();

    // Control: Synapse alone lets a worse copy win (index 5, forwarded_count 0 replaces
    // index 0, forwarded_count 1), which is why mxkeys must compare first.
    let mut c = GenSession::new("!control:localhost");
    let d0 = c.backup_data(&public, 0, 1);
    a.api.put_key(&a.version, &c.room_id, &c.session_id, &d0);
    let d5 = c.backup_data(&public, 5, 0);
    a.api.put_key(&a.version, &c.room_id, &c.session_id, &d5);
    let (_, held) = a.api.key(&a.version, &c.room_id, &c.session_id);
    assert_eq!(
        held["first_message_index"], 5,
        "synapse#13704 seems fixed: Synapse kept the better key"
    );

    // X: the server has index 0 (forwarded once); we hold index 5, never forwarded.
    let mut x = GenSession::new("!worse:localhost");
    let dx = x.backup_data(&public, 0, 1);
    a.api.put_key(&a.version, &x.room_id, &x.session_id, &dx);
    // Y: the server has index 5; we hold index 0.
    let mut y = GenSession::new("!better:localhost");
    let dy = y.backup_data(&public, 5, 0);
    a.api.put_key(&a.version, &y.room_id, &y.session_id, &dy);

    let file = encrypt_export(
        &a.env,
        "mine",
        &json!([x.export_entry(5, &[]), y.export_entry(0, &[])]),
    );
    let j = upload(&a.env, &[], Some(&file)).ok().json();
    assert_eq!(j["considered"], 2, "{j}");
    assert_eq!(j["skipped"], 1);
    assert_eq!(j["better"], 1);
    assert_eq!(j["new"], 0);
    assert_eq!(j["sent"], 1);

    let (_, held_x) = a.api.key(&a.version, &x.room_id, &x.session_id);
    assert_eq!(held_x["first_message_index"], 0, "degraded: {held_x}");
    assert_eq!(held_x["forwarded_count"], 1);
    assert_eq!(held_x, dx, "the server's copy of X was touched");
    let sx = a
        .key
        .decrypt_session(
            &x.room_id,
            &x.session_id,
            &serde_json::from_value(held_x).unwrap(),
        )
        .unwrap();
    assert_eq!(sx.expose_session_key(), x.key_at(0));

    let (_, held_y) = a.api.key(&a.version, &y.room_id, &y.session_id);
    assert_eq!(held_y["first_message_index"], 0, "not improved: {held_y}");
    assert_eq!(held_y["forwarded_count"], 0);
    let sy = a
        .key
        .decrypt_session(
            &y.room_id,
            &y.session_id,
            &serde_json::from_value(held_y).unwrap(),
        )
        .unwrap();
    assert_eq!(sy.expose_session_key(), y.key_at(0));

    // Running it again sends nothing.
    let j = upload(&a.env, &[], Some(&file)).ok().json();
    assert_eq!(j["sent"], 0, "{j}");
}

#[test]
fn upload_from_files_merges_them_first() {
    let hs = require_hs!();
    let a = account_with_backup(&hs, "fromfiles");
    // Rooms interleaved across two files; s0 appears in both, the second copy worse (index 7);
    // the second file also holds one entry that is not a valid session.
    let mut g: Vec<GenSession> = (0..6)
        .map(|i| GenSession::new(&format!("!r{}:localhost", i % 3)))
        .collect();
    let first: Vec<Value> = g[..4].iter_mut().map(|s| s.export_entry(0, &[])).collect();
    let mut second: Vec<Value> = g[4..].iter_mut().map(|s| s.export_entry(0, &[])).collect();
    second.push(g[0].export_entry(7, &[]));
    let mut bad = g[1].export_entry(0, &[]);
    bad["session_key"] = json!("not a key");
    second.push(bad);
    let f1 = encrypt_export(&a.env, "first", &Value::Array(first));
    // `mxkeys encrypt` would refuse the bad entry: write this file with the library's writer.
    let f2 = a.env.path("second.txt");
    {
        let pass = Passphrase::from_string(common::PASS.to_string());
        let mut w = mxkeys::export::ExportWriter::new(Vec::new(), &pass, 1000).unwrap();
        w.write_plaintext(Value::Array(second).to_string().as_bytes())
            .unwrap();
        std::fs::write(&f2, w.finish().unwrap()).unwrap();
    }
    let mut c = a.env.scmd();
    c.args(["--json", "backup", "upload"])
        .arg(&f1)
        .arg(&f2)
        .arg("--passphrase-file")
        .arg(a.env.pass_file());
    // One rejected entry: a partial success (3).
    let j = a.env.run(&mut c).code(3).json();
    assert_eq!(j["rejected"], 1, "{j}");
    assert_eq!(j["considered"], 6, "{j}");
    assert_eq!(j["new"], 6, "{j}");
    assert_eq!(j["sent"], 6, "{j}");
    assert_eq!(a.api.key_map(&a.version).len(), 6);
    for s in &g {
        let (status, k) = a.api.key(&a.version, &s.room_id, &s.session_id);
        assert_eq!(status, 200, "{} missing", s.session_id);
        assert_eq!(k["first_message_index"], 0, "not the best copy: {k}");
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Trust

#[test]
fn upload_only_to_a_trusted_backup() {
    let hs = require_hs!();
    let a = account_with_backup(&hs, "trust");
    let env = &a.env;
    let three = fixture("export/wasm-three.txt");
    let one = fixture("export/element-one.txt");
    let public1 = a.key.public_key_base64();

    // A wrong recovery key: 16, nothing sent.
    let wrong = BackupDecryptionKey::random().unwrap();
    let wrong_file = recovery_key_file(env, "wrong.txt", wrong.expose_secret());
    let mut c = env.scmd();
    c.args(["backup", "upload"])
        .arg(&three)
        .arg("--passphrase-file")
        .arg(env.pass_file())
        .arg("--recovery-key-file")
        .arg(&wrong_file);
    env.run(&mut c)
        .code(16)
        .stderr_has("nothing was uploaded")
        .stderr_has("hint:");
    assert_eq!(a.api.count(&a.version), 0);

    // One-shot, no store, no secret: untrusted (16) ...
    let env1 = Env::for_homeserver(&hs.base);
    let tok = env1.token_file("token.txt", &a.user.token);
    let pass1 = env1.pass_file();
    let oneshot = |extra: &[&str]| {
        env1.run(
            env1.cmd()
                .args(["--json", "backup", "upload", "--homeserver", &hs.base])
                .args(extra)
                .arg(&three)
                .arg("--passphrase-file")
                .arg(&pass1)
                .arg("--access-token-file")
                .arg(&tok),
        )
    };
    oneshot(&[]).code(16);
    // ... a wrong pinned key: 16 ...
    oneshot(&["--trust-public-key", &wrong.public_key_base64()]).code(16);
    assert_eq!(a.api.count(&a.version), 0);
    // ... the right pinned key: uploads without any secret.
    let j = oneshot(&["--trust-public-key", &public1]).ok().json();
    assert_eq!(j["sent"], 3, "{j}");
    assert_eq!(a.api.count(&a.version), 3);

    // The right recovery key, given: works.
    let mut c = env.scmd();
    c.args(["--json", "backup", "upload"])
        .arg(&one)
        .arg("--passphrase-file")
        .arg(env.pass_file())
        .arg("--recovery-key-file")
        .arg(&a.rk);
    let j = env.run(&mut c).ok().json();
    assert_eq!(j["sent"], 1, "{j}");
    assert!(
        j["trusted_by"].as_str().unwrap().contains("recovery key"),
        "{j}"
    );
    assert_eq!(a.api.count(&a.version), 4);

    // The server swaps the backup's key: a new version whose public key only an attacker knows.
    let attacker = BackupDecryptionKey::random().unwrap();
    let v2 = a.api.create_version(&attacker.public_key_base64());
    let gen_file = {
        let mut s = GenSession::new("!fresh:localhost");
        encrypt_export(env, "fresh", &json!([s.export_entry(0, &[])]))
    };
    // With the user's old recovery key: 16.
    let mut c = env.scmd();
    c.args(["backup", "upload"])
        .arg(&gen_file)
        .arg("--passphrase-file")
        .arg(env.pass_file())
        .arg("--recovery-key-file")
        .arg(&a.rk);
    env.run(&mut c).code(16).stderr_has("nothing was uploaded");
    // With the key cached in the store (no secret given): 16.
    upload(env, &[], Some(&gen_file)).code(16);
    upload(env, &[], None).code(16);
    // Pinned to the old public key: 16.
    upload(env, &["--trust-public-key", &public1], Some(&gen_file)).code(16);
    // Nothing encrypted to the attacker's key reached the server.
    assert_eq!(a.api.count(&v2), 0);
    assert_eq!(a.api.keys(&v2), json!({"rooms": {}}));
    assert_eq!(a.api.count(&a.version), 4);
}

// ---------------------------------------------------------------------------------------------
// 6. Secret storage, set up the way Element sets it up

struct Ssss {
    key: SecretStorageKey,
    key_id: String,
    backup: BackupDecryptionKey,
    version: String,
    master_public: String,
}

/// Secret storage as Element makes it: a key (random, or from a phrase with 1000 PBKDF2
/// iterations) with its description and key check, the default key, the backup key in
/// `m.megolm_backup.v1`, a cross-signing master key in `m.cross_signing.master` and published,
/// and a backup version signed by that master key.
fn element_secret_storage(api: &Api, user: &User, phrase: Option<&str>) -> Ssss {
    let (key, info) = match phrase {
        None => (SecretStorageKey::random().unwrap(), None),
        Some(p) => {
            let info = PassphraseInfo::new(1000).unwrap();
            let k = SecretStorageKey::from_passphrase(&Passphrase::from_string(p.into()), &info)
                .unwrap();
            (k, Some(info))
        }
    };
    let key_id = secret_storage::new_key_id().unwrap();
    let desc = key.describe(None, info).unwrap();
    api.put_account_data(
        &user.user_id,
        &format!("m.secret_storage.key.{key_id}"),
        &serde_json::to_value(&desc).unwrap(),
    );
    api.put_account_data(
        &user.user_id,
        "m.secret_storage.default_key",
        &json!({ "key": key_id }),
    );

    let master = vodozemac::Ed25519SecretKey::new();
    let seed = master.to_bytes();
    let master_public = master.public_key().to_base64();
    let enc = key
        .encrypt("m.cross_signing.master", &b64e(&seed[..]))
        .unwrap();
    api.put_account_data(
        &user.user_id,
        "m.cross_signing.master",
        &json!({"encrypted": {key_id.clone(): enc}}),
    );
    api.upload_master_key(user, &master_public);

    let backup = BackupDecryptionKey::random().unwrap();
    let mut auth = AuthData::new(&backup.public_key());
    auth.sign(&user.user_id, &seed).unwrap();
    let version = api.create_version_with(serde_json::to_value(&auth).unwrap());
    let enc = key
        .encrypt(
            secret_storage::MEGOLM_BACKUP_SECRET,
            &secret_storage::backup_key_to_secret(&backup),
        )
        .unwrap();
    api.put_account_data(
        &user.user_id,
        secret_storage::MEGOLM_BACKUP_SECRET,
        &json!({"encrypted": {key_id.clone(): enc}}),
    );
    Ssss {
        key,
        key_id,
        backup,
        version,
        master_public,
    }
}

/// Put `n` generated sessions into `version`; their (room, session, key).
fn seed_backup(
    api: &Api,
    version: &str,
    public: &mxkeys::backup::BackupPublicKey,
    tag: &str,
    n: usize,
) -> BTreeSet<(String, String, String)> {
    let mut set = BTreeSet::new();
    for i in 0..n {
        let mut s = GenSession::new(&format!("!{tag}{i}:localhost"));
        let d = s.backup_data(public, 0, 0);
        api.put_key(version, &s.room_id, &s.session_id, &d);
        set.insert((s.room_id.clone(), s.session_id.clone(), s.key_at(0)));
    }
    set
}

#[test]
fn secret_storage_security_key() {
    let hs = require_hs!();
    let user = hs.register("ssss");
    let api = hs.api(&user);
    let s = element_secret_storage(&api, &user, None);
    let want = seed_backup(&api, &s.version, &s.backup.public_key(), "ssss", 3);

    let env = Env::for_homeserver(&hs.base);
    env.init_and_login(&user);
    let security_key = recovery_key_file(&env, "security-key.txt", s.key.expose_secret());
    let backup_rk = recovery_key_file(&env, "backup-rk.txt", s.backup.expose_secret());

    // `recovery-key check` tells which secret each one is.
    let check = |f: &Path| {
        env.smx_p(
            &["--json", "recovery-key", "check"],
            &[("--recovery-key-file", f)],
        )
    };
    let j = check(&security_key).ok().json();
    assert_eq!(j["kind"], "security_key", "{j}");
    assert_eq!(j["backup_version"], s.version.as_str());
    let j = check(&backup_rk).ok().json();
    assert_eq!(j["kind"], "backup_recovery_key", "{j}");
    let random = recovery_key_file(
        &env,
        "random.txt",
        BackupDecryptionKey::random().unwrap().expose_secret(),
    );
    check(&random).code(12).stderr_has("matches neither");

    // Download with the Security Key (into a store), and with the backup's own key (to a file).
    let j = env
        .smx_p(
            &["--json", "backup", "download"],
            &[("--recovery-key-file", &security_key)],
        )
        .ok()
        .json();
    assert_eq!(j["unlocked_with"], "security_key", "{j}");
    assert_eq!(j["imported"], 3);
    let out = env.path("by-backup-key.txt");
    let pass = env.pass_file();
    let j = env
        .smx_p(
            &["--json", "backup", "download", "--rounds", "1000"],
            &[
                ("--recovery-key-file", &backup_rk),
                ("-o", &out),
                ("--passphrase-file", &pass),
            ],
        )
        .ok()
        .json();
    assert_eq!(j["unlocked_with"], "backup_recovery_key", "{j}");
    assert_eq!(key_set(&decrypt_export(&env, &out, &pass)), want);

    // The backup signed at setup is reported as signed by the master key.
    let info = env.smx(&["--json", "backup", "info"]).ok().json();
    assert_eq!(info["signed_by_master_key"], true, "{info}");
    assert_eq!(info["trusted"], true);

    // A newer backup made outside secret storage: the Security Key now opens a stale copy.
    let newer = BackupDecryptionKey::random().unwrap();
    let v2 = api.create_version(&newer.public_key_base64());
    let r = env
        .smx_p(
            &["backup", "download"],
            &[("--recovery-key-file", &security_key)],
        )
        .code(12)
        .stderr_has("older backup")
        .stderr_has("hint:");
    assert!(r.stderr.contains(&format!("version {v2}")), "{}", r.stderr);
    let r = check(&security_key).code(12);
    assert!(r.stderr.contains("older backup"), "{}", r.stderr);

    // `backup create` with the Security Key: the new key goes into secret storage and the new
    // version is signed with the master key.
    let j = env
        .smx_p(
            &["--json", "backup", "create", "--yes"],
            &[("--recovery-key-file", &security_key)],
        )
        .ok()
        .json();
    assert_eq!(j["stored_in_secret_storage"], true, "{j}");
    assert_eq!(j["signed_by_master_key"], true);
    assert_eq!(j["recovery_key_file"], Value::Null);
    let v3 = j["version"].as_str().unwrap().to_string();
    let (_, raw) = api.version(Some(&v3));
    let stored = api
        .account_data(&user.user_id, secret_storage::MEGOLM_BACKUP_SECRET)
        .unwrap();
    let enc: secret_storage::EncryptedSecret =
        serde_json::from_value(stored["encrypted"][&s.key_id].clone()).unwrap();
    let text = s
        .key
        .decrypt(secret_storage::MEGOLM_BACKUP_SECRET, &enc)
        .unwrap();
    let new_key = secret_storage::backup_key_from_secret(&text).unwrap();
    assert_eq!(
        raw["auth_data"]["public_key"],
        new_key.public_key_base64().as_str()
    );
    let auth: AuthData = serde_json::from_value(raw["auth_data"].clone()).unwrap();
    let master = vodozemac::Ed25519PublicKey::from_base64(&s.master_public).unwrap();
    assert_eq!(
        auth.verify_signature(
            &user.user_id,
            &format!("ed25519:{}", s.master_public),
            &master
        ),
        SignatureState::Valid
    );
    let info = env.smx(&["--json", "backup", "info"]).ok().json();
    assert_eq!(info["version"], v3.as_str());
    assert_eq!(info["signed_by_master_key"], true, "{info}");
    // And the Security Key opens the new backup again.
    let j = check(&security_key).ok().json();
    assert_eq!(j["kind"], "security_key");
    assert_eq!(j["backup_version"], v3.as_str());
}

#[test]
fn secret_storage_security_phrase() {
    let hs = require_hs!();
    let user = hs.register("phrase");
    let api = hs.api(&user);
    let phrase = "correct horse battery staple of the sea";
    let s = element_secret_storage(&api, &user, Some(phrase));
    let want = seed_backup(&api, &s.version, &s.backup.public_key(), "phrase", 2);

    let env = Env::for_homeserver(&hs.base);
    env.init_and_login(&user);
    let phrase_file = env.write_secret("phrase.txt", format!("{phrase}\n"));
    let j = env
        .smx_p(
            &["--json", "recovery-key", "check"],
            &[("--security-phrase-file", &phrase_file)],
        )
        .ok()
        .json();
    assert_eq!(j["kind"], "security_phrase", "{j}");
    let out = env.path("keys.txt");
    let pass = env.pass_file();
    let j = env
        .smx_p(
            &["--json", "backup", "download", "--rounds", "1000"],
            &[
                ("--security-phrase-file", &phrase_file),
                ("-o", &out),
                ("--passphrase-file", &pass),
            ],
        )
        .ok()
        .json();
    assert_eq!(j["unlocked_with"], "security_phrase", "{j}");
    assert_eq!(key_set(&decrypt_export(&env, &out, &pass)), want);
    // The key the phrase derives, written as a Security Key, is recognised as one.
    let sk = recovery_key_file(&env, "derived.txt", s.key.expose_secret());
    let j = env
        .smx_p(
            &["--json", "recovery-key", "check"],
            &[("--recovery-key-file", &sk)],
        )
        .ok()
        .json();
    assert_eq!(j["kind"], "security_key", "{j}");
    // A wrong phrase: 12.
    let bad = env.write_secret("bad.txt", "correct horse battery staple of the lake\n");
    env.smx_p(&["backup", "download"], &[("--security-phrase-file", &bad)])
        .code(12);
    let _ = s.version;
}

// ---------------------------------------------------------------------------------------------
// 7. Interop

#[test]
fn interop_rust_sdk_upload_bodies_download_with_mxkeys() {
    let hs = require_hs!();
    let user = hs.register("sdkinterop");
    let api = hs.api(&user);
    let fx = fixture_json("backup/sdk-backup-upload-3.json");
    let version = api.create_version(fx["public_key"].as_str().unwrap());
    for body in fx["requests"].as_array().unwrap() {
        let (s, v) = api.put_keys(&version, body);
        assert_eq!(s, 200, "{v}");
    }
    assert_eq!(api.count(&version), 3);

    let env = Env::for_homeserver(&hs.base);
    let tok = env.token_file("token.txt", &user.token);
    let rk = env.write_secret(
        "rk.txt",
        format!("{}\n", fx["recovery_key"].as_str().unwrap()),
    );
    let pass = env.pass_file();
    let out = env.path("sdk.txt");
    let j = env.download_to_file(&tok, &rk, &pass, &out);
    assert_eq!(j["sessions"], 3, "{j}");
    assert_eq!(j["rejected"], 0);
    let got = decrypt_export(&env, &out, &pass);
    let want = fixture_json("sessions/sessions-3.json");
    assert_eq!(key_set(&got), key_set(&want));
    let by_id: BTreeMap<String, &Value> = got
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["session_id"].as_str().unwrap().to_string(), s))
        .collect();
    for w in want.as_array().unwrap() {
        let g = by_id[w["session_id"].as_str().unwrap()];
        for f in ["sender_key", "sender_claimed_keys", "algorithm"] {
            assert_eq!(g[f], w[f], "{f}");
        }
    }
    // Each downloaded session decrypts its real event.
    let events = fixture_json("sessions/sessions-3.json.events.json");
    for e in events.as_array().unwrap() {
        let sid = e["session_id"].as_str().unwrap();
        let s =
            mxkeys::session::ExportedSession::from_json(&serde_json::to_vec(by_id[sid]).unwrap())
                .unwrap();
        let (plain, _index) = s
            .decrypt_event(e["event"]["content"]["ciphertext"].as_str().unwrap())
            .expect("the downloaded key decrypts the event");
        let plain: Value = serde_json::from_slice(&plain).unwrap();
        assert_eq!(plain, e["plaintext"]);
    }
}

#[test]
fn interop_mxkeys_upload_decrypts_with_an_independent_implementation() {
    let hs = require_hs!();
    let a = account_with_backup(&hs, "indep");
    let sessions = fixture_json("sessions/sessions-3.json");
    let mut extra = GenSession::new("!indep:localhost");
    let mut all = sessions.as_array().unwrap().clone();
    all.push(extra.export_entry(3, &["forwarder-curve-key"]));
    let file = encrypt_export(&a.env, "s3", &Value::Array(all.clone()));
    let j = upload(&a.env, &[], Some(&file)).ok().json();
    assert_eq!(j["sent"], 4, "{j}");

    let private = *a.key.expose_secret().expose_secret();
    let stored = a.api.key_map(&a.version);
    assert_eq!(stored.len(), 4);
    for s in &all {
        let k = (
            s["room_id"].as_str().unwrap().to_string(),
            s["session_id"].as_str().unwrap().to_string(),
        );
        let d = &stored[&k];
        let plain = independent_decrypt(&private, &d["session_data"]);
        assert_eq!(plain["session_key"], s["session_key"]);
        assert_eq!(plain["sender_key"], s["sender_key"]);
        assert_eq!(plain["algorithm"], "m.megolm.v1.aes-sha2");
        assert_eq!(plain["sender_claimed_keys"], s["sender_claimed_keys"]);
        assert_eq!(
            plain["forwarding_curve25519_key_chain"],
            s["forwarding_curve25519_key_chain"]
        );
        assert!(plain.get("room_id").is_none() && plain.get("session_id").is_none());
        let chain = s["forwarding_curve25519_key_chain"]
            .as_array()
            .unwrap()
            .len();
        assert_eq!(d["forwarded_count"], chain);
        assert_eq!(d["is_verified"], false);
        let index = mxkeys::session::ExportedSession::from_json(&serde_json::to_vec(s).unwrap())
            .unwrap()
            .first_known_index();
        assert_eq!(d["first_message_index"], index);
    }
    assert_eq!(
        stored[&(extra.room_id.clone(), extra.session_id.clone())]["first_message_index"],
        3
    );
}

// ---------------------------------------------------------------------------------------------
// 8. Delete, no backup, offline download from a saved response

#[test]
fn delete_no_backup_and_offline_download() {
    let hs = require_hs!();
    let a = account_with_backup(&hs, "delete");
    let env = &a.env;
    upload(env, &[], Some(&fixture("export/wasm-three.txt"))).ok();
    assert_eq!(a.api.count(&a.version), 3);

    // Save the raw GET /room_keys/keys body, then decrypt it with no network at all.
    let saved = env.write("saved.json", a.api.keys_raw(&a.version));
    let off = Env::for_homeserver("http://127.0.0.1:9");
    let rk = off.write_secret("rk.txt", std::fs::read_to_string(&a.rk).unwrap());
    let pass = off.pass_file();
    let out = off.path("offline.txt");
    let j = off
        .run(
            off.cmd()
                .args(["--json", "backup", "download", "--rounds", "1000"])
                .arg("--from-response")
                .arg(&saved)
                .arg("--recovery-key-file")
                .arg(&rk)
                .arg("--passphrase-file")
                .arg(&pass)
                .arg("-o")
                .arg(&out),
        )
        .ok()
        .json();
    assert_eq!(j["sessions"], 3, "{j}");
    assert_eq!(
        key_set(&decrypt_export(&off, &out, &pass)),
        key_set(&plaintext("wasm-three"))
    );
    // With a wrong key: 12, no output file.
    let wrong = recovery_key_file(
        &off,
        "wrong.txt",
        BackupDecryptionKey::random().unwrap().expose_secret(),
    );
    let out2 = off.path("offline2.txt");
    off.run(
        off.cmd()
            .args(["backup", "download", "--rounds", "1000"])
            .arg("--from-response")
            .arg(&saved)
            .arg("--recovery-key-file")
            .arg(&wrong)
            .arg("--passphrase-file")
            .arg(&pass)
            .arg("-o")
            .arg(&out2),
    )
    .code(12)
    .stderr_has("hint:");
    assert!(!out2.exists());

    // Delete: --yes is required without a terminal.
    env.smx(&["backup", "delete", "--version", &a.version])
        .code(2)
        .stderr_has("--yes");
    assert_eq!(a.api.version(Some(&a.version)).0, 200);
    let j = env
        .smx(&[
            "--json",
            "backup",
            "delete",
            "--version",
            &a.version,
            "--yes",
        ])
        .ok()
        .json();
    assert_eq!(j["deleted"], a.version.as_str());
    assert_eq!(j["keys"], 3);
    assert_eq!(a.api.version(Some(&a.version)).0, 404);
    env.smx(&["backup", "info", "--version", &a.version])
        .code(10)
        .stderr_has("hint:");
    // No backup left at all: download and info say 10.
    env.smx_p(&["backup", "download"], &[("--recovery-key-file", &a.rk)])
        .code(10)
        .stderr_has("no key backup");
    env.smx(&["backup", "info"]).code(10);
    env.smx(&["backup", "delete", "--version", "999", "--yes"])
        .code(10);
}

// ---------------------------------------------------------------------------------------------
// 9. Faults, from a proxy in front of the real Synapse

/// A Matrix 5xx.
fn server_error(status: u16) -> Action {
    Action::matrix_error(status, "M_UNKNOWN", "Internal server error (injected)")
}

#[test]
fn faults_upload_and_download_of_2000_keys() {
    let hs = require_hs!();
    let user = hs.register("faults");
    let api = hs.api(&user);
    let key = BackupDecryptionKey::random().unwrap();
    let public = key.public_key();
    let version = api.create_version(&key.public_key_base64());

    // 2000 sessions over 1200 rooms (so at least three PUTs of at most 500 rooms), held
    // locally at first index i % 7. The server already holds 100 of them at index 0
    // (forwarded once), better than our copies: those must survive the upload untouched.
    const N: usize = 2000;
    let mut gens: Vec<GenSession> = (0..N)
        .map(|i| GenSession::new(&format!("!fault{}:localhost", i % 1200)))
        .collect();
    let local_index = |i: usize| (i % 7) as u32;
    let preseeded: BTreeSet<usize> = (0..N).filter(|i| local_index(*i) > 0).take(100).collect();
    let mut rooms = serde_json::Map::new();
    for &i in &preseeded {
        let g = &mut gens[i];
        let d = g.backup_data(&public, 0, 1);
        rooms
            .entry(g.room_id.clone())
            .or_insert_with(|| json!({"sessions": {}}))["sessions"][g.session_id.clone()] = d;
    }
    let (s, v) = api.put_keys(&version, &json!({ "rooms": rooms }));
    assert_eq!(s, 200, "{v}");
    assert_eq!(api.count(&version), 100);
    let preseeded_before = api.key_map(&version);

    let env = Env::for_homeserver(&hs.base);
    let entries: Vec<Value> = gens
        .iter_mut()
        .enumerate()
        .map(|(i, g)| g.export_entry(local_index(i), &[]))
        .collect();
    let file = encrypt_export(&env, "many", &Value::Array(entries));
    let tok = env.token_file("token.txt", &user.token);
    let rk = recovery_key_file(&env, "rk.txt", key.expose_secret());
    let pass = env.pass_file();

    let proxy = FaultProxy::start(&hs.base);
    let purl = proxy.url();
    // The comparing read breaks mid-body once; the PUTs meet 429, 500, 502, 503, a reset in
    // mid-body after Synapse stored the batch, and a 500 after Synapse stored the batch.
    proxy.rule("GET", KEYS_PATH, 1, Action::ResetMidBody);
    proxy.rule("PUT", KEYS_PATH, 1, Action::too_many_requests(20, 50));
    proxy.rule("PUT", KEYS_PATH, 2, server_error(500));
    proxy.rule("PUT", KEYS_PATH, 4, server_error(502));
    proxy.rule("PUT", KEYS_PATH, 5, Action::ResetMidBody);
    proxy.rule("PUT", KEYS_PATH, 6, server_error(503));
    proxy.rule(
        "PUT",
        KEYS_PATH,
        8,
        Action::ForwardThenRespond {
            status: 500,
            body: json!({"errcode": "M_UNKNOWN", "error": "injected after storing"}).to_string(),
        },
    );
    let up = |extra: &[&str]| {
        env.run(
            env.cmd()
                .args(["--json", "backup", "upload", "--homeserver", &purl])
                .args(extra)
                .arg(&file)
                .arg("--passphrase-file")
                .arg(&pass)
                .arg("--access-token-file")
                .arg(&tok)
                .arg("--recovery-key-file")
                .arg(&rk),
        )
    };
    let r = up(&[]).ok();
    let j = r.json();
    assert_eq!(j["considered"], N, "{j}");
    assert_eq!(j["skipped"], 100);
    assert_eq!(j["new"], N - 100);
    assert_eq!(j["sent"], N - 100);
    assert!(j["requests"].as_u64().unwrap() >= 3, "{j}");
    let seen = proxy.seen();
    let puts: Vec<_> = seen.iter().filter(|s| s.method == "PUT").collect();
    let faults = puts
        .iter()
        .filter(|s| s.action != "pass" && s.action != "hook-then-pass")
        .count();
    assert_eq!(faults, 6, "{puts:#?}");
    assert_eq!(puts.len() as u64, j["requests"].as_u64().unwrap() + 6);
    // The 429's retry_after_ms (50 ms) was honoured: not ignored (the retry came no sooner),
    // and not the header's 20 s (it came in less than half of that, which a busy machine
    // does not need).
    let gap = puts[1].at - puts[0].at;
    assert!(
        gap >= Duration::from_millis(45) && gap < Duration::from_secs(10),
        "{gap:?}"
    );
    assert_eq!(
        seen.iter()
            .filter(|s| s.method == "GET" && s.path.starts_with(KEYS_PATH))
            .count(),
        2,
        "the comparing read was retried once"
    );

    // Every key is in the backup, none degraded (read from Synapse directly).
    let stored = api.key_map(&version);
    assert_eq!(stored.len(), N);
    assert_eq!(api.count(&version), N as u64);
    for (i, g) in gens.iter().enumerate() {
        let d = &stored[&(g.room_id.clone(), g.session_id.clone())];
        if preseeded.contains(&i) {
            assert_eq!(
                d,
                &preseeded_before[&(g.room_id.clone(), g.session_id.clone())],
                "a better key was replaced"
            );
            assert_eq!(d["first_message_index"], 0);
        } else {
            assert_eq!(d["first_message_index"], local_index(i), "session {i}");
            assert_eq!(d["forwarded_count"], 0);
        }
    }

    // Run again: nothing left to send.
    let j = up(&[]).ok().json();
    assert_eq!(j["sent"], 0, "{j}");
    assert_eq!(j["skipped"], N);

    // Download through a 503, a reset in mid-body and a 502: every key, each once.
    proxy.rule("GET", KEYS_PATH, 1, server_error(503));
    proxy.rule("GET", KEYS_PATH, 2, Action::ResetMidBody);
    proxy.rule("GET", KEYS_PATH, 3, server_error(502));
    proxy.clear_seen();
    let out = env.path("down.txt");
    let r = env
        .run(
            env.cmd()
                .args(["--json", "backup", "download", "--homeserver", &purl])
                .args(["--rounds", "1000"])
                .arg("--access-token-file")
                .arg(&tok)
                .arg("--recovery-key-file")
                .arg(&rk)
                .arg("--passphrase-file")
                .arg(&pass)
                .arg("-o")
                .arg(&out),
        )
        .ok();
    let j = r.json();
    assert_eq!(proxy.count("GET", KEYS_PATH), 4);
    assert_eq!(j["fetched"], N, "{j}");
    assert_eq!(j["sessions"], N, "{j}");
    let got = decrypt_export(&env, &out, &pass);
    assert_eq!(got.as_array().unwrap().len(), N, "duplicates in the export");
    let want: BTreeSet<_> = gens
        .iter_mut()
        .enumerate()
        .map(|(i, g)| {
            let idx = if preseeded.contains(&i) {
                0
            } else {
                local_index(i)
            };
            (g.room_id.clone(), g.session_id.clone(), g.key_at(idx))
        })
        .collect();
    assert_eq!(key_set(&got), want);

    // And into a store, through a reset.
    proxy.rule("GET", KEYS_PATH, 1, Action::ResetMidBody);
    env.init_store();
    let j = env
        .run(
            env.scmd()
                .args(["--json", "backup", "download", "--homeserver", &purl])
                .arg("--access-token-file")
                .arg(&tok)
                .arg("--recovery-key-file")
                .arg(&rk),
        )
        .ok()
        .json();
    assert_eq!(j["imported"], N, "{j}");
    assert_eq!(env.smx(&["--json", "list"]).ok().json()["sessions"], N);
}

/// The proxy's "reset" is a real TCP reset in the middle of the body, not a clean close.
#[test]
fn fault_proxy_resets_mid_body() {
    use std::io::{Read, Write};
    let hs = require_hs!();
    let proxy = FaultProxy::start(&hs.base);
    proxy.rule("GET", "/_matrix/client/versions", 1, Action::ResetMidBody);
    let mut s = std::net::TcpStream::connect(proxy.url().trim_start_matches("http://")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    s.write_all(b"GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let err = loop {
        match s.read(&mut buf) {
            Ok(0) => panic!("clean end of stream after {} bytes", got.len()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => break e,
        }
    };
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
    let text = String::from_utf8_lossy(&got);
    if !got.is_empty() {
        // What arrived before the reset: a 200 head announcing more body than was sent.
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert!(body.len() < len, "{} of {len}", body.len());
    }
}

#[test]
fn fault_long_rate_limit_gives_up_quickly() {
    let hs = require_hs!();
    let user = hs.register("ratelimit");
    hs.api(&user)
        .create_version(&BackupDecryptionKey::random().unwrap().public_key_base64());
    let proxy = FaultProxy::start(&hs.base);
    // Ten minutes, in both forms.
    proxy.rule(
        "GET",
        VERSION_PATH,
        1,
        Action::too_many_requests(600, 600_000),
    );
    let env = Env::for_homeserver(&proxy.url());
    let tok = env.token_file("token.txt", &user.token);
    let r = env
        .run(
            env.cmd()
                .args(["backup", "info", "--homeserver", &proxy.url()])
                .arg("--access-token-file")
                .arg(&tok),
        )
        .code(15)
        .stderr_has("rate-limiting")
        .stderr_has("hint:");
    // It gave up at once: it did not wait for the ten minutes, nor for the longest wait it
    // accepts from a server (60 s). Far above what a busy machine needs.
    assert!(r.elapsed < Duration::from_secs(30), "{:?}", r.elapsed);
    assert_eq!(proxy.count("GET", VERSION_PATH), 1);
}

#[test]
fn fault_stalled_server_times_out() {
    let hs = require_hs!();
    let user = hs.register("stall");
    let proxy = FaultProxy::start(&hs.base);
    proxy.rule("GET", VERSION_PATH, 1, Action::Stall(STALL));
    proxy.rule("GET", VERSION_PATH, 2, Action::Stall(STALL));
    let env = Env::for_homeserver(&proxy.url());
    let tok = env.token_file("token.txt", &user.token);
    let start = Instant::now();
    let r = env
        .run(
            env.cmd()
                .args(["backup", "info", "--homeserver", &proxy.url()])
                .args(["--timeout", "1", "--attempts", "2"])
                .arg("--access-token-file")
                .arg(&tok),
        )
        .code(15)
        .stderr_has("hint:");
    // Two attempts of one second, not the stall: under half of it, which no slow machine
    // needs.
    assert!(
        start.elapsed() < STALL / 2,
        "took {:?}: {}",
        start.elapsed(),
        r.stderr
    );
    assert_eq!(proxy.count("GET", VERSION_PATH), 2);
}

#[test]
fn fault_401_and_404_are_not_retried() {
    let hs = require_hs!();
    let user = hs.register("noretry");
    hs.api(&user)
        .create_version(&BackupDecryptionKey::random().unwrap().public_key_base64());
    let proxy = FaultProxy::start(&hs.base);
    let env = Env::for_homeserver(&proxy.url());
    let purl = proxy.url();

    // A token Synapse refuses: one request, 14.
    let bad = env.token_file("bad.txt", "syt_invalid_token_for_the_test");
    env.run(
        env.cmd()
            .args(["backup", "info", "--homeserver", &purl])
            .arg("--access-token-file")
            .arg(&bad),
    )
    .code(14);
    assert_eq!(proxy.seen().len(), 1, "{:#?}", proxy.seen());

    // A 401 in the middle (after whoami passed): still one request for that call, 14.
    proxy.clear_seen();
    proxy.rule(
        "GET",
        VERSION_PATH,
        1,
        Action::matrix_error(401, "M_UNKNOWN_TOKEN", "Invalid access token passed."),
    );
    let tok = env.token_file("token.txt", &user.token);
    env.run(
        env.cmd()
            .args(["backup", "info", "--homeserver", &purl])
            .arg("--access-token-file")
            .arg(&tok),
    )
    .code(14)
    .stderr_has("hint:");
    assert_eq!(proxy.count("GET", VERSION_PATH), 1);

    // 404 on a version: one request, 10.
    proxy.clear_seen();
    env.run(
        env.cmd()
            .args(["backup", "info", "--version", "999", "--homeserver", &purl])
            .arg("--access-token-file")
            .arg(&tok),
    )
    .code(10)
    .stderr_has("no backup version 999");
    assert_eq!(proxy.count("GET", &format!("{VERSION_PATH}/999")), 1);

    // A 503 on creating a version (not forwarded) is retried, and one version results.
    proxy.clear_seen();
    proxy.rule("POST", VERSION_PATH, 1, server_error(503));
    env.init_store();
    let rk = env.path("rk.txt");
    let mut c = env.scmd();
    c.args(["--json", "backup", "create", "--yes", "--homeserver", &purl])
        .arg("--access-token-file")
        .arg(&tok)
        .arg("-o")
        .arg(&rk);
    let j = env.run(&mut c).ok().json();
    assert_eq!(proxy.count("POST", VERSION_PATH), 2);
    let (_, cur) = hs.api(&user).version(None);
    assert_eq!(cur["version"], j["version"]);
}
