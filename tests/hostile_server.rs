//! A hostile homeserver (issue 5, part 5): the fault proxy in front of the real Synapse swaps
//! the backup's public key, replays an old backup version, sends oversized, malformed or
//! truncated bodies for every endpoint mxkeys uses, lies about `current_version`, or stalls.
//! The device commands get cases of their own (`hostile_server_device_cases`): a broken or
//! stalled `/sync`, a dehydrated device that does not open, a page of its messages that is
//! not JSON.
//!
//! In every case: the documented exit code with one error line and a hint, no panic, no hang
//! past the timeouts (`--timeout 1 --attempts 2`), bounded memory; the key store unchanged;
//! the real backup on Synapse unchanged; and no key ever encrypted to a key the server
//! controls: every `PUT /room_keys/keys` body the proxy saw decrypts with the user's own key
//! for that version (and most cases must send none at all).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mxkeys::backup::{BackupDecryptionKey, KeyBackupData};
use serde_json::{Value, json};

use common::device::{account, held_sessions, mx_device, verify_with_key};
use common::fault_proxy::{Action, FaultProxy};
use common::megolm::GenSession;
use common::run::{Limits, bounded, resource_problems};
use common::synapse::{Api, User, enc};
use common::{Env, Run, fixture};

const WHOAMI: &str = "/_matrix/client/v3/account/whoami";
const VERSION: &str = "/_matrix/client/v3/room_keys/version";
const KEYS: &str = "/_matrix/client/v3/room_keys/keys";
const KEYS_QUERY: &str = "/_matrix/client/v3/keys/query";

/// How long a stalling proxy says nothing. A case gives up after two attempts of one second
/// (`--timeout 1 --attempts 2`); one that waited for the server would take this long.
const STALL: Duration = Duration::from_secs(120);
/// No case may take half the stall, wall clock: it did not wait for the stalled server. Far
/// above what a slow or busy machine needs (a few seconds).
const CASE_WALL: Duration = Duration::from_secs(60);
/// The limits of every case: CPU time (what the work costs, whatever the machine's load), and
/// a wall-clock guard past the stall, so that a case that waits for the server is seen waiting
/// (and then fails on `CASE_WALL`), not killed.
const LIMITS: Limits = Limits {
    cpu: Duration::from_secs(20),
    address_space: None,
    wall: Duration::from_secs(180),
};
/// Nor grow past this (bodies are capped at 1 MiB, key entries at 256 KiB).
const CASE_RSS_KB: u64 = 96 * 1024;

/// The commands the cases run, all through the proxy with a one-shot token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmd {
    /// `backup info`
    Info,
    /// `backup status` (store)
    Status,
    /// `backup download` into the store, with the current backup's recovery key
    DownloadStore,
    /// `backup download` into the store, with the key cached in the store
    DownloadCached,
    /// `backup download -o FILE` (no store), with the current backup's recovery key
    DownloadFile,
    /// `backup upload` of the store's keys, with the current backup's recovery key
    UploadStore,
    /// `backup upload` of the store's keys, with the key cached in the store
    UploadCached,
    /// `backup upload FILE` (no store), pinned to the current backup's public key
    UploadPinned,
    /// `backup upload FILE` (no store) with the OLD backup's recovery key
    UploadOldKey,
    /// `recovery-key check` with the current backup's recovery key
    Check,
    /// `recovery-key check` with a Security Phrase
    CheckPhrase,
    /// `history check` of the user's room (10 events per page)
    History,
    /// `history check --fix` with the current backup's recovery key
    HistoryFix,
}

struct Rule {
    method: &'static str,
    prefix: String,
    nth: usize,
    action: Action,
}

fn rule(method: &'static str, prefix: impl Into<String>, nth: usize, action: Action) -> Rule {
    Rule {
        method,
        prefix: prefix.into(),
        nth,
        action,
    }
}

/// A fault proxy in front of `base` with `rules` set.
fn proxy_with(base: &str, rules: &[Rule]) -> FaultProxy {
    let proxy = FaultProxy::start(base);
    for r in rules {
        proxy.rule(r.method, &r.prefix, r.nth, r.action.clone());
    }
    proxy
}

struct Case {
    name: String,
    cmd: Cmd,
    rules: Vec<Rule>,
    code: i32,
    message: &'static str,
    /// No `PUT /room_keys/keys` may reach the proxy at all.
    no_put: bool,
}

fn case(
    name: impl Into<String>,
    cmd: Cmd,
    rules: Vec<Rule>,
    code: i32,
    message: &'static str,
) -> Case {
    Case {
        name: name.into(),
        cmd,
        rules,
        code,
        message,
        no_put: true,
    }
}

/// A body of raw bytes, status 200.
fn body(b: impl Into<Vec<u8>>) -> Action {
    Action::RespondBytes {
        status: 200,
        body: Arc::new(b.into()),
    }
}

/// A 5 MB JSON body of the given shape (a huge string inside `prefix` ... `suffix`).
fn huge(prefix: &str, suffix: &str) -> Action {
    let mut b = prefix.as_bytes().to_vec();
    b.extend(std::iter::repeat_n(b'A', 5 * 1024 * 1024));
    b.extend_from_slice(suffix.as_bytes());
    body(b)
}

/// Rewrite the real response's `auth_data.public_key`.
fn swap_public_key(public: String) -> Action {
    Action::Rewrite(Arc::new(move |status, b| {
        let mut v: Value = match serde_json::from_slice(b) {
            Ok(v) => v,
            Err(_) => return (status, b.to_vec()),
        };
        if v.get("auth_data").is_some() {
            v["auth_data"]["public_key"] = json!(public.clone());
        }
        (status, serde_json::to_vec(&v).unwrap())
    }))
}

/// The world: a user with two backup versions (v1 old, v2 current), a store that holds some
/// of v2's keys and its key, and an attacker's key.
struct World {
    user: User,
    api: Api,
    env: Env,
    k1: BackupDecryptionKey,
    v1: String,
    k2: BackupDecryptionKey,
    v2: String,
    attacker: BackupDecryptionKey,
    v1_body: Vec<u8>,
    tok: PathBuf,
    rk1: PathBuf,
    rk2: PathBuf,
    phrase: PathBuf,
    file: PathBuf,
    /// The user's room: two text messages and an event of a session only in v2.
    room: String,
}

fn recovery_key_file(env: &Env, name: &str, k: &BackupDecryptionKey) -> PathBuf {
    env.write_secret(
        name,
        format!("{}\n", &*mxkeys::recovery_key::encode(k.expose_secret())),
    )
}

fn put_sessions(api: &Api, version: &str, key: &BackupDecryptionKey, tag: &str, n: usize) {
    let mut rooms = serde_json::Map::new();
    for i in 0..n {
        let mut g = GenSession::new(&format!("!{tag}{i}:localhost"));
        let d = g.backup_data(&key.public_key(), 0, 0);
        rooms.insert(
            g.room_id.clone(),
            json!({"sessions": {g.session_id.clone(): d}}),
        );
    }
    let (s, v) = api.put_keys(version, &json!({ "rooms": rooms }));
    assert_eq!(s, 200, "{v}");
}

impl World {
    fn new(hs: &common::synapse::Hs) -> World {
        let user = hs.register("hostile");
        let api = hs.api(&user);
        let k1 = BackupDecryptionKey::random().unwrap();
        let v1 = api.create_version(&k1.public_key_base64());
        put_sessions(&api, &v1, &k1, "old", 3);
        let k2 = BackupDecryptionKey::random().unwrap();
        let v2 = api.create_version(&k2.public_key_base64());
        put_sessions(&api, &v2, &k2, "cur", 5);
        let v1_body = api
            .raw("GET", &api.url(&format!("room_keys/version/{v1}")), None)
            .1;
        let env = Env::for_homeserver(&hs.base);
        let tok = env.token_file("token.txt", &user.token);
        let rk1 = recovery_key_file(&env, "rk1.txt", &k1);
        let rk2 = recovery_key_file(&env, "rk2.txt", &k2);
        let phrase = env.write_secret("phrase.txt", "a security phrase\n");
        // The store: element-three (not in the backup), and v2's keys downloaded honestly,
        // which keeps v2's key in the store.
        env.init_store();
        env.import_ok(&[&fixture("export/element-three.txt")]);
        let hsb = hs.base.clone();
        env.smx_p(
            &["backup", "download", "--homeserver", &hsb],
            &[("--access-token-file", &tok), ("--recovery-key-file", &rk2)],
        )
        .ok();
        // More keys in v2 since: a download that succeeded would change the store.
        put_sessions(&api, &v2, &k2, "new", 3);
        // A room whose one encrypted event is of a session only the backup (v2) holds: the
        // check finds it in_backup, and a --fix that succeeded would change the store.
        let room = api.ok(
            "POST",
            "createRoom",
            Some(
                &json!({"initial_state": [{"type": "m.room.encryption", "state_key": "",
                "content": {"algorithm": "m.megolm.v1.aes-sha2"}}]}),
            ),
        )["room_id"]
            .as_str()
            .unwrap()
            .to_string();
        for (i, body) in ["one", "two"].iter().enumerate() {
            api.ok(
                "PUT",
                &format!("rooms/{}/send/m.room.message/t{i}", enc(&room)),
                Some(&json!({"msgtype": "m.text", "body": body})),
            );
        }
        let mut g = GenSession::new(&room);
        let payload = json!({"type": "m.room.message", "room_id": room,
            "content": {"msgtype": "m.text", "body": "secret"}});
        let ciphertext = g.encrypt(&payload.to_string());
        api.ok(
            "PUT",
            &format!("rooms/{}/send/m.room.encrypted/t2", enc(&room)),
            Some(
                &json!({"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": ciphertext,
                "session_id": g.session_id, "sender_key": g.sender_key, "device_id": "OTHER"}),
            ),
        );
        let d = g.backup_data(&k2.public_key(), 0, 0);
        api.put_key(&v2, &room, &g.session_id.clone(), &d);
        World {
            file: fixture("export/element-three.txt"),
            user,
            api,
            env,
            k1,
            v1,
            k2,
            v2,
            attacker: BackupDecryptionKey::random().unwrap(),
            v1_body,
            tok,
            rk1,
            rk2,
            phrase,
            room,
        }
    }

    fn account_data(&self) -> String {
        format!(
            "/_matrix/client/v3/user/{}/account_data/",
            enc(&self.user.user_id)
        )
    }

    fn args(&self, cmd: Cmd, proxy: &str, out_dir: &Path) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        let store = |a: &mut Vec<OsString>| {
            a.extend([
                "--store".into(),
                self.env.store().into(),
                "--store-passphrase-file".into(),
                self.env.store_pass_file().into(),
            ]);
        };
        let net = |a: &mut Vec<OsString>| {
            a.extend([
                "--homeserver".into(),
                proxy.into(),
                "--access-token-file".into(),
                self.tok.clone().into(),
                "--timeout".into(),
                "1".into(),
                "--attempts".into(),
                "2".into(),
            ]);
        };
        let words = |a: &mut Vec<OsString>, w: &[&str]| a.extend(w.iter().map(OsString::from));
        match cmd {
            Cmd::Info => words(&mut a, &["backup", "info"]),
            Cmd::Status => {
                store(&mut a);
                words(&mut a, &["backup", "status"]);
            }
            Cmd::DownloadStore | Cmd::DownloadCached => {
                store(&mut a);
                words(&mut a, &["backup", "download"]);
                if cmd == Cmd::DownloadStore {
                    a.extend(["--recovery-key-file".into(), self.rk2.clone().into()]);
                }
            }
            Cmd::DownloadFile => {
                words(&mut a, &["backup", "download", "--rounds", "1000", "-o"]);
                a.push(out_dir.join("keys.txt").into());
                a.extend(["--passphrase-file".into(), self.env.pass_file().into()]);
                a.extend(["--recovery-key-file".into(), self.rk2.clone().into()]);
            }
            Cmd::UploadStore | Cmd::UploadCached => {
                store(&mut a);
                words(&mut a, &["backup", "upload"]);
                if cmd == Cmd::UploadStore {
                    a.extend(["--recovery-key-file".into(), self.rk2.clone().into()]);
                }
            }
            Cmd::UploadPinned | Cmd::UploadOldKey => {
                words(&mut a, &["backup", "upload"]);
                a.push(self.file.clone().into());
                a.extend(["--passphrase-file".into(), self.env.pass_file().into()]);
                if cmd == Cmd::UploadPinned {
                    a.extend([
                        "--trust-public-key".into(),
                        self.k2.public_key_base64().into(),
                    ]);
                } else {
                    a.extend(["--recovery-key-file".into(), self.rk1.clone().into()]);
                }
            }
            Cmd::Check => {
                words(&mut a, &["recovery-key", "check", "--recovery-key-file"]);
                a.push(self.rk2.clone().into());
            }
            Cmd::CheckPhrase => {
                words(&mut a, &["recovery-key", "check", "--security-phrase-file"]);
                a.push(self.phrase.clone().into());
            }
            Cmd::History | Cmd::HistoryFix => {
                store(&mut a);
                words(&mut a, &["history", "check", "--page-size", "10"]);
                if cmd == Cmd::HistoryFix {
                    a.extend([
                        "--fix".into(),
                        "--recovery-key-file".into(),
                        self.rk2.clone().into(),
                    ]);
                }
            }
        }
        net(&mut a);
        a
    }

    /// What the server holds: the current version, and every key of both versions.
    fn server_state(&self) -> ServerState {
        let (_, cur) = self.api.version(None);
        (
            cur["version"].as_str().unwrap().to_string(),
            self.api.key_map(&self.v1),
            self.api.key_map(&self.v2),
        )
    }
}

/// The current version, and every key of v1 and of v2.
type ServerState = (
    String,
    BTreeMap<(String, String), Value>,
    BTreeMap<(String, String), Value>,
);

/// One case's command, bounded.
fn run(env: &Env, args: &[OsString], cwd: &Path) -> Run {
    bounded(env, cwd, args, &LIMITS)
}

/// What every case's run is checked for: no panic, within [`LIMITS`] and `max_rss_kb`, exit
/// `code` with one error line (holding `message`) and one hint, nothing on stdout, and no wait
/// for a stalled server.
fn outcome_problems(r: &Run, code: i32, message: &str, max_rss_kb: u64) -> Vec<String> {
    let mut p = resource_problems(r, &LIMITS, max_rss_kb);
    if r.code != code {
        p.push(format!("exit {} (expected {code})", r.code));
    }
    let (errs, hints) = r.error_and_hint_lines();
    if errs.len() != 1 || hints.len() != 1 {
        p.push(format!(
            "{} error lines, {} hint lines",
            errs.len(),
            hints.len()
        ));
    } else if !errs[0].contains(message) {
        p.push(format!("error line lacks {message:?}"));
    }
    if !r.stdout.is_empty() {
        p.push(format!("stdout: {}", r.stdout));
    }
    if r.elapsed >= CASE_WALL {
        p.push(format!(
            "took {:?}: it waited for the server instead of giving up",
            r.elapsed
        ));
    }
    p
}

/// The version a `PUT /room_keys/keys?version=V` went to.
fn put_version(path: &str) -> String {
    let q = path.split_once("version=").map(|x| x.1).unwrap_or("");
    q.split('&').next().unwrap_or("").to_string()
}

/// Every session in a PUT body decrypts with the user's key for that version, and with no
/// other (in particular not the attacker's).
fn check_put_body(w: &World, path: &str, body: &[u8]) -> Result<usize, String> {
    let version = put_version(path);
    let key = if version == w.v1 {
        &w.k1
    } else if version == w.v2 {
        &w.k2
    } else {
        return Err(format!(
            "a PUT to version {version:?}, which the user never made"
        ));
    };
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("PUT body: {e}"))?;
    let mut n = 0;
    for (room, r) in v["rooms"].as_object().ok_or("no rooms")? {
        for (sid, d) in r["sessions"].as_object().ok_or("no sessions")? {
            let d: KeyBackupData = serde_json::from_value(d.clone()).map_err(|e| e.to_string())?;
            key.decrypt_session(room, sid, &d)
                .map_err(|e| format!("{room}/{sid} does not decrypt with the user's key: {e}"))?;
            if w.attacker.decrypt(&d.session_data).is_ok() {
                return Err(format!("{room}/{sid} decrypts with the attacker's key"));
            }
            n += 1;
        }
    }
    Ok(n)
}

fn cases(w: &World) -> Vec<Case> {
    use Cmd::*;
    let ad = w.account_data();
    let attacker_pub = w.attacker.public_key_base64();
    let mut v: Vec<Case> = Vec::new();

    // 1. The server swaps the backup's public key for one it controls.
    for cmd in [UploadStore, UploadCached, UploadPinned] {
        v.push(case(
            format!("swapped public key, upload ({cmd:?})"),
            cmd,
            vec![rule(
                "GET",
                VERSION,
                0,
                swap_public_key(attacker_pub.clone()),
            )],
            16,
            "nothing was uploaded",
        ));
    }
    v.push(case(
        "swapped public key, download with the recovery key",
        DownloadStore,
        vec![rule(
            "GET",
            VERSION,
            0,
            swap_public_key(attacker_pub.clone()),
        )],
        12,
        "matches neither",
    ));
    v.push(case(
        "swapped public key, download with the cached key",
        DownloadCached,
        vec![rule(
            "GET",
            VERSION,
            0,
            swap_public_key(attacker_pub.clone()),
        )],
        12,
        "does not belong to backup version",
    ));
    v.push(case(
        "swapped public key, recovery-key check",
        Check,
        vec![rule(
            "GET",
            VERSION,
            0,
            swap_public_key(attacker_pub.clone()),
        )],
        12,
        "matches neither",
    ));
    // 2. The server replays the old version (v1) as the current one.
    let replay = || rule("GET", VERSION, 0, body(w.v1_body.clone()));
    v.push(case(
        "replayed old version, upload with the current key",
        UploadStore,
        vec![replay()],
        16,
        "nothing was uploaded",
    ));
    v.push(case(
        "replayed old version, upload with the cached current key",
        UploadCached,
        vec![replay()],
        16,
        "nothing was uploaded",
    ));
    v.push(case(
        "replayed old version, upload pinned to the current key",
        UploadPinned,
        vec![replay()],
        16,
        "nothing was uploaded",
    ));
    let mut c = case(
        "replayed old version, upload with the old version's key",
        UploadOldKey,
        vec![replay()],
        11,
        "is no longer the current one",
    );
    c.no_put = false; // sent to v1, encrypted to the user's own old key; Synapse refuses it
    v.push(c);
    v.push(case(
        "replayed old version, download with the current key",
        DownloadStore,
        vec![replay()],
        12,
        "matches neither",
    ));
    // 3. Lies about current_version in M_WRONG_ROOM_KEYS_VERSION.
    for (what, current) in [
        ("a version that does not exist", "999".to_string()),
        ("the old version", w.v1.clone()),
        ("the version it just refused", w.v2.clone()),
    ] {
        let mut c = case(
            format!("M_WRONG_ROOM_KEYS_VERSION naming {what} as current"),
            UploadStore,
            vec![rule(
                "PUT",
                KEYS,
                0,
                Action::Respond {
                    status: 403,
                    headers: vec![],
                    body: json!({
                        "errcode": "M_WRONG_ROOM_KEYS_VERSION",
                        "error": "Wrong backup version.",
                        "current_version": current,
                    })
                    .to_string(),
                },
            )],
            11,
            "is no longer the current one",
        );
        c.no_put = false; // one PUT, answered by the proxy (never stored), never retried
        v.push(c);
    }
    // 4. Oversized bodies (5 MB): refused at 1 MiB (a key entry at 256 KiB).
    for (what, method, prefix, cmd, b) in [
        (
            "whoami",
            "GET",
            WHOAMI.to_string(),
            Info,
            huge(r#"{"user_id": "@"#, r#""}"#),
        ),
        (
            "the backup version",
            "GET",
            VERSION.to_string(),
            Info,
            huge(r#"{"algorithm": ""#, r#""}"#),
        ),
        (
            "the backup version (download)",
            "GET",
            VERSION.to_string(),
            DownloadStore,
            huge(r#"{"auth_data": {"x": ""#, r#""}}"#),
        ),
        (
            "the backup's keys",
            "GET",
            KEYS.to_string(),
            DownloadStore,
            huge(
                r#"{"rooms": {"!r:x": {"sessions": {"s": {"first_message_index": 0, "forwarded_count": 0, "is_verified": false, "session_data": {"ephemeral": "x", "mac": "x", "ciphertext": ""#,
                r#""}}}}}}"#,
            ),
        ),
        (
            "the backup's keys (status)",
            "GET",
            KEYS.to_string(),
            Status,
            huge(r#"{"rooms": {"!"#, r#"": {}}}"#),
        ),
        (
            "the keys upload response",
            "PUT",
            KEYS.to_string(),
            UploadStore,
            huge(r#"{"etag": ""#, r#"", "count": 1}"#),
        ),
        (
            "account data",
            "GET",
            ad.clone(),
            Check,
            huge(r#"{"key": ""#, r#""}"#),
        ),
        (
            "the user's keys (info)",
            "POST",
            KEYS_QUERY.to_string(),
            Info,
            huge(r#"{"master_keys": {"x": ""#, r#""}}"#),
        ),
    ] {
        let mut c = case(
            format!("5 MB body for {what}"),
            cmd,
            vec![rule(method, prefix, 0, b)],
            15,
            "larger than",
        );
        c.no_put = method != "PUT";
        v.push(c);
    }
    // 5. Malformed 200 bodies for every endpoint used: garbage, wrong shapes, truncated JSON.
    for (what, method, prefix, cmd, b, code, msg) in [
        ("whoami: garbage", "GET", WHOAMI.to_string(), Info, &b"<html>hello</html>"[..], 15, "invalid response"),
        ("whoami: an array", "GET", WHOAMI.to_string(), Info, b"[]", 15, "invalid response"),
        ("whoami: no user_id", "GET", WHOAMI.to_string(), Info, b"{}", 15, "invalid response"),
        ("whoami: truncated", "GET", WHOAMI.to_string(), UploadStore, br#"{"user_id": "@ho"#, 15, "invalid response"),
        ("whoami: user_id a number", "GET", WHOAMI.to_string(), DownloadStore, br#"{"user_id": 5}"#, 15, "invalid response"),
        ("version: garbage", "GET", VERSION.to_string(), Info, b"\x00\x01\x02garbage", 15, "invalid response"),
        ("version: an array", "GET", VERSION.to_string(), UploadStore, b"[]", 15, "invalid response"),
        ("version: empty object", "GET", VERSION.to_string(), DownloadStore, b"{}", 15, "invalid response"),
        ("version: truncated", "GET", VERSION.to_string(), UploadCached, br#"{"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": {"public_key": "#, 15, "invalid response"),
        ("version: count a string", "GET", VERSION.to_string(), Status, br#"{"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": {}, "count": "5", "etag": "1", "version": "1"}"#, 15, "invalid response"),
        ("version: unknown algorithm", "GET", VERSION.to_string(), UploadStore, br#"{"algorithm": "m.megolm_backup.v2", "auth_data": {}, "count": 5, "etag": "1", "version": "1"}"#, 13, "which mxkeys does not support"),
        ("version: auth_data without public_key", "GET", VERSION.to_string(), UploadStore, br#"{"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": {}, "count": 5, "etag": "1", "version": "1"}"#, 15, "auth_data"),
        ("version: public_key not base64", "GET", VERSION.to_string(), UploadPinned, br#"{"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": {"public_key": "!!!"}, "count": 5, "etag": "1", "version": "1"}"#, 13, "public"),
        ("keys: garbage", "GET", KEYS.to_string(), DownloadStore, b"not json", 15, "invalid response"),
        ("keys: an array", "GET", KEYS.to_string(), DownloadCached, b"[]", 15, "invalid response"),
        ("keys: no rooms", "GET", KEYS.to_string(), UploadStore, b"{}", 15, "invalid response"),
        ("keys: rooms a number", "GET", KEYS.to_string(), Status, br#"{"rooms": 5}"#, 15, "invalid response"),
        ("keys: truncated", "GET", KEYS.to_string(), DownloadFile, br#"{"rooms": {"!r:x": {"sessions": {"s": {"first_mes"#, 15, "invalid response"),
        ("keys: an entry of the wrong shape", "GET", KEYS.to_string(), DownloadStore, br#"{"rooms": {"!r:x": {"sessions": {"s": {"first_message_index": "zero"}}}}}"#, 15, "invalid response"),
        ("keys upload: garbage", "PUT", KEYS.to_string(), UploadStore, b"garbage", 15, "invalid response"),
        ("keys upload: no count", "PUT", KEYS.to_string(), UploadStore, br#"{"etag": "1"}"#, 15, "invalid response"),
        ("keys upload: truncated", "PUT", KEYS.to_string(), UploadPinned, br#"{"etag": "1", "cou"#, 15, "invalid response"),
        ("account data: garbage", "GET", ad.clone(), Check, b"garbage", 15, "invalid response"),
        ("account data: an array", "GET", ad.clone(), DownloadStore, b"[1]", 15, "invalid response"),
        ("account data: encrypted a number", "GET", format!("{ad}m.megolm_backup.v1"), Check, br#"{"encrypted": 5}"#, 13, "is malformed"),
        ("keys/query: garbage", "POST", KEYS_QUERY.to_string(), Info, b"garbage", 15, "invalid response"),
    ] {
        let mut c = case(
            format!("malformed 200 body, {what}"),
            cmd,
            vec![rule(method, prefix, 0, body(b.to_vec()))],
            code,
            msg,
        );
        c.no_put = method != "PUT";
        v.push(c);
    }
    // Hostile work: secret storage asking for 4 billion PBKDF2 iterations.
    v.push(case(
        "secret storage asking for 4,000,000,000 PBKDF2 iterations",
        CheckPhrase,
        vec![
            rule(
                "GET",
                format!("{ad}m.secret_storage.default_key"),
                0,
                body(&br#"{"key": "HOSTILE"}"#[..]),
            ),
            rule(
                "GET",
                format!("{ad}m.secret_storage.key.HOSTILE"),
                0,
                body(
                    json!({
                        "algorithm": "m.secret_storage.v1.aes-hmac-sha2",
                        "passphrase": {"algorithm": "m.pbkdf2", "salt": "salt", "iterations": 4_000_000_000u32},
                    })
                    .to_string()
                    .into_bytes(),
                ),
            ),
        ],
        13,
        "more than the limit",
    ));
    // 6. A server that stalls: before answering, or in the middle of a body.
    for (what, method, prefix, cmd, action) in [
        (
            "whoami",
            "GET",
            WHOAMI.to_string(),
            Info,
            Action::Stall(STALL),
        ),
        (
            "the backup version",
            "GET",
            VERSION.to_string(),
            UploadStore,
            Action::Stall(STALL),
        ),
        (
            "the backup's keys",
            "GET",
            KEYS.to_string(),
            DownloadStore,
            Action::Stall(STALL),
        ),
        (
            "the keys upload",
            "PUT",
            KEYS.to_string(),
            UploadStore,
            Action::Stall(STALL),
        ),
        (
            "account data",
            "GET",
            ad.clone(),
            Check,
            Action::Stall(STALL),
        ),
        (
            "the middle of the backup's keys",
            "GET",
            KEYS.to_string(),
            DownloadStore,
            Action::StallMidBody(STALL),
        ),
        (
            "the middle of the backup version",
            "GET",
            VERSION.to_string(),
            Info,
            Action::StallMidBody(STALL),
        ),
    ] {
        let mut c = case(
            format!("stall in {what}"),
            cmd,
            vec![rule(method, prefix, 0, action)],
            15,
            "cannot reach the homeserver",
        );
        c.no_put = method != "PUT";
        v.push(c);
    }
    // 9. Room history: broken pages, a refusal, a stall; --fix's download broken half-way.
    let messages = format!("/_matrix/client/v3/rooms/{}/messages", enc(&w.room));
    let session_key = format!("{KEYS}/{}/", enc(&w.room));
    for (what, action, code, message) in [
        ("not JSON", body("<html>"), 15, "invalid response"),
        (
            "not events",
            body(r#"{"chunk":[1,2],"end":"e"}"#),
            15,
            "event 0: not a JSON object",
        ),
        (
            "larger than the page can be",
            huge(
                r#"{"chunk":[{"type":"m.room.message","content":{"body":""#,
                r#""}}]}"#,
            ),
            15,
            "larger than",
        ),
        (
            "refused",
            Action::Respond {
                status: 403,
                headers: vec![],
                body: r#"{"errcode":"M_FORBIDDEN","error":"not in room"}"#.into(),
            },
            10,
            "refused the room's history",
        ),
        ("stalled", Action::Stall(STALL), 15, "cannot reach"),
    ] {
        v.push(case(
            format!("history check, messages {what}"),
            History,
            vec![rule("GET", messages.clone(), 0, action)],
            code,
            message,
        ));
    }
    for (what, action, message) in [
        ("not JSON", body("<html>"), "invalid response"),
        ("reset", Action::ResetMidBody, "cannot reach"),
        ("stalled", Action::Stall(STALL), "cannot reach"),
    ] {
        v.push(case(
            format!("history check --fix, the session's download {what}"),
            HistoryFix,
            vec![rule("GET", session_key.clone(), 0, action)],
            15,
            message,
        ));
    }
    v
}

#[test]
fn hostile_server_cases() {
    let Some(hs) = common::synapse::homeserver() else {
        return;
    };
    let w = World::new(&hs);
    let rows_before = common::store::rows(&w.env.store());
    let server_before = w.server_state();
    assert_eq!(server_before.0, w.v2);
    assert_eq!(server_before.2.len(), 9);

    // Control: an honest proxy changes nothing about the outcome.
    {
        let proxy = FaultProxy::start(&hs.base);
        let out = w.env.path("out-control");
        std::fs::create_dir_all(&out).unwrap();
        let r = run(&w.env, &w.args(Cmd::Status, &proxy.url(), &out), &out);
        assert_eq!(r.code, 0, "{}", r.stderr);
        // The history check finds the one encrypted event in the backup (and changes nothing).
        let r = run(&w.env, &w.args(Cmd::History, &proxy.url(), &out), &out);
        assert_eq!(r.code, 3, "{}", r.stderr);
        assert!(
            r.stdout.contains("1 encrypted event: 1 in_backup"),
            "{}",
            r.stdout
        );
    }

    let all = cases(&w);
    let mut failures = Vec::new();
    let mut puts_checked = 0;
    let (mut slowest, mut most_cpu) = (Duration::ZERO, Duration::ZERO);
    let mut largest = 0u64;
    // MXKEYS_HOSTILE_ONLY=substring runs only the matching cases, at -vv (to investigate one).
    let only = std::env::var("MXKEYS_HOSTILE_ONLY").ok();
    let mut ran = 0;
    for (i, c) in all.iter().enumerate() {
        if only.as_ref().is_some_and(|o| !c.name.contains(o.as_str())) {
            continue;
        }
        ran += 1;
        let proxy = proxy_with(&hs.base, &c.rules);
        let out = w.env.path(&format!("out-{i:02}"));
        std::fs::create_dir_all(&out).unwrap();
        let mut args = w.args(c.cmd, &proxy.url(), &out);
        if only.is_some() {
            args.insert(0, "-vv".into());
        }
        let r = run(&w.env, &args, &out);
        if only.is_some() {
            eprintln!(
                "#{i} {} ({:?}) {:?}:\n{}",
                c.name, c.cmd, r.elapsed, r.stderr
            );
        }
        let mut p = outcome_problems(&r, c.code, c.message, CASE_RSS_KB);
        // No key encrypted to anything but the user's own key; most cases send nothing.
        let puts: Vec<_> = proxy
            .seen()
            .into_iter()
            .filter(|s| s.method == "PUT" && s.path.starts_with(KEYS))
            .collect();
        if c.no_put && !puts.is_empty() {
            p.push(format!("{} PUTs of keys reached the server", puts.len()));
        }
        if !c.no_put && puts.is_empty() {
            p.push("no PUT was sent (this case expects exactly one)".into());
        }
        if puts.len() > 1 && c.code == 11 {
            p.push(format!(
                "a refused upload was retried ({} PUTs)",
                puts.len()
            ));
        }
        for s in &puts {
            match check_put_body(&w, &s.path, &s.request) {
                Ok(n) => puts_checked += n,
                Err(e) => p.push(e),
            }
        }
        let left: Vec<_> = std::fs::read_dir(&out).unwrap().collect();
        if !left.is_empty() {
            p.push(format!("{} files left in the output directory", left.len()));
        }
        if common::store::rows(&w.env.store()) != rows_before {
            p.push("the store changed".into());
        }
        if w.server_state() != server_before {
            p.push("the backup on Synapse changed".into());
        }
        if !p.is_empty() {
            failures.push(format!(
                "#{i} {} ({:?}): {}\n    stderr: {}",
                c.name,
                c.cmd,
                p.join("; "),
                r.stderr.trim().replace('\n', "\n            ")
            ));
        }
        slowest = slowest.max(r.elapsed);
        most_cpu = most_cpu.max(r.usage.cpu);
        largest = largest.max(r.usage.max_rss_kb);
    }
    println!(
        "hostile server: {} cases; slowest {:.2} s wall, {:.2} s CPU at the most; largest max RSS {largest} KiB; {puts_checked} uploaded keys checked against the user's key",
        all.len(),
        slowest.as_secs_f64(),
        most_cpu.as_secs_f64()
    );
    assert!(ran > 0, "MXKEYS_HOSTILE_ONLY={only:?} matches no case");
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );

    // After all that, an honest upload through the proxy still works, and what it sends
    // decrypts with the user's key only.
    let proxy = FaultProxy::start(&hs.base);
    let out = w.env.path("out-final");
    std::fs::create_dir_all(&out).unwrap();
    let r = run(&w.env, &w.args(Cmd::UploadStore, &proxy.url(), &out), &out);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut sent = 0;
    for s in proxy.seen() {
        if s.method == "PUT" && s.path.starts_with(KEYS) {
            sent += check_put_body(&w, &s.path, &s.request).unwrap();
        }
    }
    assert_eq!(sent, 3, "element-three's sessions");
    assert_eq!(w.api.count(&w.v2), 12);
    assert_eq!(w.api.count(&w.v1), 3);
}

/// One case of `mxkeys device ...` through the proxy.
struct DeviceCase {
    name: &'static str,
    /// The command and its own flags (the store and the proxy's flags are added).
    args: Vec<String>,
    /// Per-request flags: `--timeout 2 --attempts 2` unless a case says otherwise.
    net: &'static [&'static str],
    rules: Vec<Rule>,
    code: i32,
    message: &'static str,
}

/// Device commands against a misbehaving server: a verified device of an account set up by
/// the phone (through the real Synapse), then `device sync` and `device rehydrate` through the
/// proxy, with the `/sync`, dehydrated-device and dehydrated-events answers broken. Each case
/// ends with its documented code, one error line and a hint, no panic, and the key store as it
/// was; afterwards an honest sync still receives the key that was queued for the device all
/// along (a broken sync did not lose it), and an honest rehydrate still works.
#[test]
fn hostile_server_device_cases() {
    let Some(hs) = common::synapse::homeserver() else {
        return;
    };
    let mut acc = account(&hs, "hostile-dev");
    let dehydrated = acc.phone.create_dehydrated_device();
    let env = Env::for_homeserver(&hs.base);
    let device_id = mx_device(&env, &acc.user);
    verify_with_key(&env, &mut acc, &device_id);
    // A key the device received (so the store holds one), and one queued for it (a new room,
    // so a new session) that only an honest sync takes.
    let room = acc.phone.create_encrypted_room(&[]);
    let (_, held) = acc.phone.send_message(&room, "received before the cases");
    env.smx(&["device", "sync", "--for", "2"]).ok();
    assert!(held_sessions(&env).contains(&held));
    let room2 = acc.phone.create_encrypted_room(&[]);
    let (_, queued) = acc
        .phone
        .send_message(&room2, "queued while the server misbehaves");
    let sk = env.write_secret("security-key.txt", &acc.security_key);
    let sk = sk.to_str().unwrap().to_string();
    let rows_before = common::store::rows(&env.store());

    let sync = "/_matrix/client/v3/sync";
    let dd = "/_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device";
    let events = format!("{dd}/{}/events", enc(&dehydrated));
    let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<String>>();
    let sync_for_3 = words(&["device", "sync", "--for", "3"]);
    let rehydrate = words(&["device", "rehydrate", "--recovery-key-file", &sk]);
    let short: &[&str] = &["--timeout", "2", "--attempts", "2"];
    let cases = [
        DeviceCase {
            name: "sync answered with a body that is not JSON",
            args: sync_for_3.clone(),
            net: short,
            // Synapse answers (with the queued key); the client gets garbage instead.
            rules: vec![rule(
                "GET",
                sync,
                0,
                Action::Rewrite(Arc::new(|_, _| (200, b"<html>oops</html>".to_vec()))),
            )],
            code: 15,
            message: "invalid response",
        },
        DeviceCase {
            name: "sync answered 500 every time",
            args: sync_for_3.clone(),
            net: short,
            rules: vec![rule(
                "GET",
                sync,
                0,
                Action::matrix_error(500, "M_UNKNOWN", "Internal server error"),
            )],
            code: 15,
            message: "the homeserver keeps failing",
        },
        DeviceCase {
            name: "sync stalled",
            args: sync_for_3.clone(),
            net: &["--timeout", "2", "--retry-for", "5"],
            rules: vec![rule("GET", sync, 0, Action::Stall(STALL))],
            code: 15,
            message: "cannot reach the homeserver",
        },
        DeviceCase {
            name: "dehydrated device whose data is garbage",
            args: rehydrate.clone(),
            net: short,
            rules: vec![rule(
                "GET",
                dd,
                0,
                Action::Rewrite(Arc::new(|status, b| {
                    let mut v: Value = match serde_json::from_slice(b) {
                        Ok(v) => v,
                        Err(_) => return (status, b.to_vec()),
                    };
                    if v.get("device_data").is_some() {
                        v["device_data"]["device_pickle"] = json!("bm90IGEgcGlja2xl");
                    }
                    (status, serde_json::to_vec(&v).unwrap())
                })),
            )],
            code: 12,
            message: "the dehydrated device could not be opened",
        },
        DeviceCase {
            name: "dehydrated events page that is not JSON",
            args: rehydrate.clone(),
            net: short,
            rules: vec![rule("GET", events.clone(), 0, body("<html>"))],
            code: 15,
            message: "invalid response",
        },
    ];

    let only = std::env::var("MXKEYS_HOSTILE_ONLY").ok();
    let mut failures = Vec::new();
    let mut ran = 0;
    for (i, c) in cases.iter().enumerate() {
        if only.as_ref().is_some_and(|o| !c.name.contains(o.as_str())) {
            continue;
        }
        ran += 1;
        let proxy = proxy_with(&hs.base, &c.rules);
        let out = env.path(&format!("dev-out-{i:02}"));
        std::fs::create_dir_all(&out).unwrap();
        let mut args = env.store_args();
        args.extend(c.args.iter().map(OsString::from));
        args.extend(["--homeserver".into(), proxy.url().into()]);
        args.extend(c.net.iter().map(OsString::from));
        let r = run(&env, &args, &out);
        if only.is_some() {
            eprintln!("#{i} {} {:?}:\n{}", c.name, r.elapsed, r.stderr);
        }
        let mut p = outcome_problems(&r, c.code, c.message, CASE_RSS_KB);
        let faulted = proxy
            .seen()
            .iter()
            .filter(|s| c.rules.iter().any(|r| s.path.starts_with(&r.prefix)))
            .count();
        if faulted == 0 {
            p.push("the faulty endpoint was never asked".into());
        }
        if common::store::rows(&env.store()) != rows_before {
            p.push("the store changed".into());
        }
        if !p.is_empty() {
            failures.push(format!(
                "#{i} {}: {}\n    stderr: {}",
                c.name,
                p.join("; "),
                r.stderr.trim().replace('\n', "\n            ")
            ));
        }
    }
    assert!(
        ran > 0,
        "MXKEYS_HOSTILE_ONLY={only:?} matches no device case"
    );
    assert!(
        failures.is_empty(),
        "{} of {} device cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    // Nothing was lost: the key queued all along arrives with an honest sync, the store
    // still holds the first, and the dehydrated device still opens with its messages.
    let v = env
        .smx(&["--json", "device", "sync", "--for", "3"])
        .ok()
        .json();
    assert!(v["totals"]["imported"].as_u64().unwrap() >= 1, "{v}");
    let now = held_sessions(&env);
    assert!(now.contains(&held) && now.contains(&queued), "{now:?}");
    let v = env
        .smx_p(
            &["--json", "device", "rehydrate"],
            &[("--recovery-key-file", Path::new(&sk))],
        )
        .ok()
        .json();
    assert_eq!(v["device_id"], dehydrated.as_str(), "{v}");
    // The phone shared both room keys with the dehydrated device too; both are still queued
    // for it (and already in the store, from the honest syncs).
    assert_eq!(v["keys"], 2, "{v}");
    assert_eq!(v["unchanged"], 2, "{v}");
}
