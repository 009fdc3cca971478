//! `mxkeys device ...` against the real test homeserver, with a second real device of the same
//! user driven by the test: the "old phone" (tests/common/phone.rs, matrix-sdk-crypto's
//! `OlmMachine` with key forwarding on). mxkeys runs as its own process; while it waits, the
//! test thread drives the phone (syncs, answers, verifies).
//!
//! Every wait is bounded (`--for`, or the phone's sync loop with a deadline), never a timing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::ffi::OsString;
use std::process::{Child, Stdio};

use common::Env;
use common::cli::Run;
use common::phone::Phone;
use common::pty::Term;
use common::synapse::{Hs, User, require_hs};
use serde_json::Value;

/// Upper bound of each wait for the other device (seconds).
const WAIT: u64 = 30;

/// An account as a person who set up Element has it: cross-signing, a key backup, secret
/// storage holding both (and a dehydration key), all made by the phone.
struct Account {
    user: User,
    phone: Phone,
    security_key: String,
    version: String,
}

fn account(hs: &Hs, prefix: &str) -> Account {
    let user = hs.register(prefix);
    let mut phone = Phone::login(hs, &user);
    phone.bootstrap_cross_signing();
    let version = phone.create_backup();
    let security_key = phone.setup_secret_storage();
    Account {
        user,
        phone,
        security_key,
        version,
    }
}

/// A store logged in as `user` with a device; its id.
fn mx_device(env: &Env, user: &User) -> String {
    env.init_and_login(user);
    let r = env.smx(&["--json", "device", "create"]).ok();
    let v = r.json();
    assert_eq!(v["user_id"], user.user_id.as_str());
    assert_eq!(v["cross_signed"], false);
    v["device_id"].as_str().unwrap().to_string()
}

/// `mxkeys --store ... ARGS` started in the background (stdout and stderr captured).
fn spawn(env: &Env, args: &[&str]) -> Child {
    let mut all: Vec<OsString> = env.store_args();
    all.extend(args.iter().map(OsString::from));
    env.process(&all)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(child: Child) -> Run {
    Run::from_output(&child.wait_with_output().unwrap())
}

fn info(env: &Env) -> Value {
    env.smx(&["--json", "device", "info"]).ok().json()
}

/// The Security Key opens secret storage; its self-signing key signs mxkeys's device; the
/// phone then sees the device as verified, and `device info` says so.
fn verify_with_key(env: &Env, acc: &mut Account, device_id: &str) {
    let sk = env.write_secret("security-key.txt", &acc.security_key);
    let r = env
        .smx_p(
            &["--json", "device", "verify"],
            &[("--recovery-key-file", &sk)],
        )
        .ok();
    assert_eq!(r.json()["cross_signed"], true, "{}", r.stderr);
    assert_eq!(r.json()["already_verified"], false);
    let id = device_id.to_string();
    assert!(
        acc.phone.sync_until(WAIT, |p| p.sees_verified(&id)),
        "the phone never saw {device_id} as verified"
    );
}

#[test]
fn create_info_verify_with_the_security_key_and_delete() {
    let hs = require_hs!();
    let mut acc = account(&hs, "dev-verify");
    let env = Env::for_homeserver(&hs.base);
    let device_id = mx_device(&env, &acc.user);
    // Its state: owner-only, in the store's directory.
    let dir = env.store().join("device");
    assert_eq!(common::mode(&dir) & 0o777, 0o700);
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        assert_eq!(common::mode(&p) & 0o777, 0o600, "{}", p.display());
    }

    // A second create is refused, and nothing changes.
    env.smx(&["device", "create"])
        .code(2)
        .stderr_has("already has device");
    let before = info(&env);
    assert_eq!(before["device_id"], device_id.as_str());
    assert_eq!(before["cross_signed"], false);
    assert_eq!(before["account_has_identity"], true);
    assert!(!acc.phone.sees_verified(&device_id));

    // A wrong Security Key opens nothing and signs nothing.
    let wrong = env.write_secret(
        "wrong.txt",
        mxkeys::recovery_key::encode(&mxkeys::secret::Key32::new([9u8; 32])).as_str(),
    );
    env.smx_p(&["device", "verify"], &[("--recovery-key-file", &wrong)])
        .code(12)
        .stderr_has("does not open this account's secret storage");
    assert_eq!(info(&env)["cross_signed"], false);

    verify_with_key(&env, &mut acc, &device_id);
    let after = info(&env);
    assert_eq!(after["cross_signed"], true);
    assert_eq!(after["verified"], true);
    assert_eq!(after["has_self_signing_key"], true);
    // Verifying again is a no-op that says so.
    let sk = env.write_secret("security-key.txt", &acc.security_key);
    let r = env
        .smx_p(
            &["--json", "device", "verify"],
            &[("--recovery-key-file", &sk)],
        )
        .ok();
    assert_eq!(r.json()["already_verified"], true);

    // Delete: a wrong password deletes nothing, the right one removes it on the server and
    // locally (and the login that was that device).
    let bad = env.write_secret("bad-pw.txt", "not the password");
    env.smx_p(&["device", "delete", "--yes"], &[("--password-file", &bad)])
        .code(14);
    assert!(env.store().join("device").is_dir());
    let pw = env.write_secret("pw.txt", &acc.user.password);
    let r = env
        .smx_p(
            &["--json", "device", "delete", "--yes"],
            &[("--password-file", &pw)],
        )
        .ok();
    assert_eq!(r.json()["deleted_on_server"], true);
    assert!(!env.store().join("device").exists());
    let (status, devices) = acc.phone.raw("GET", "/_matrix/client/v3/devices", None);
    assert_eq!(status, 200);
    let ids: Vec<&str> = devices["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["device_id"].as_str().unwrap())
        .collect();
    assert!(!ids.contains(&device_id.as_str()), "{ids:?}");
    assert!(ids.contains(&acc.phone.device_id.as_str()));
    env.smx(&["device", "info"])
        .code(2)
        .stderr_has("not logged in");
}

#[test]
fn the_phone_sends_the_backup_key_and_then_download_needs_no_secret() {
    let hs = require_hs!();
    let mut acc = account(&hs, "dev-secrets");
    let room = acc.phone.create_encrypted_room(&[]);
    let (_, session) = acc.phone.send_message(&room, "in the backup only");
    assert!(acc.phone.backup_all() >= 1);
    let env = Env::for_homeserver(&hs.base);
    let device_id = mx_device(&env, &acc.user);

    // Not verified yet: the phone does not answer, and mxkeys says what to do.
    let r = env.smx(&["device", "request-secrets", "--for", "4"]);
    let r = r
        .code(10)
        .stderr_has("no verified device of yours sent the backup key");
    assert!(r.stderr.contains("device verify"), "{}", r.stderr);

    verify_with_key(&env, &mut acc, &device_id);
    let child = spawn(
        &env,
        &["--json", "device", "request-secrets", "--for", "40"],
    );
    // The phone answers the request when it syncs.
    acc.phone.sync_until(15, |_| false);
    let r = finish(child).ok();
    let v = r.json();
    assert_eq!(v["backup_key"], true, "{}", r.stderr);
    assert_eq!(v["backup_version"], acc.version.as_str());
    let phone_id = format!("{}:{}", acc.user.user_id, acc.phone.device_id);
    assert!(
        v["answered_by"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d == phone_id.as_str()),
        "{v}"
    );
    assert_eq!(info(&env)["has_backup_key"], true);

    // No secret given, no terminal: the key kept in the store opens the backup.
    let r = env.smx(&["--json", "backup", "download"]).ok();
    assert!(r.json()["imported"].as_u64().unwrap() >= 1, "{}", r.stdout);
    let sessions = env.smx(&["--json", "list", "--sessions"]).ok().json();
    let held: Vec<&str> = sessions["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["session_id"].as_str().unwrap())
        .collect();
    assert!(held.contains(&session.as_str()), "{held:?}");
}

#[test]
fn a_verified_phone_forwards_a_key_in_no_backup_and_an_unverified_one_is_refused() {
    let hs = require_hs!();
    let mut acc = account(&hs, "dev-forward");
    let env = Env::for_homeserver(&hs.base);
    let device_id = mx_device(&env, &acc.user);
    verify_with_key(&env, &mut acc, &device_id);

    // A session only the phone holds (never shared, never backed up).
    let room = acc.phone.create_encrypted_room(&[]);
    let (_, session) = acc
        .phone
        .send_unshared_message(&room, "only the phone can read this");
    let child = spawn(
        &env,
        &[
            "--json",
            "device",
            "request-keys",
            "--room",
            &room,
            "--session",
            &session,
            "--for",
            "40",
        ],
    );
    acc.phone.sync_until(15, |_| false);
    let r = finish(child).ok();
    let v = r.json();
    assert_eq!(v["arrived"], 1, "{}", r.stderr);
    let src = format!("forwarded:{}:{}", acc.user.user_id, acc.phone.device_id);
    assert_eq!(v["sessions"][0]["source"], src.as_str());
    let list = env.smx(&["--json", "list", "--sessions"]).ok().json();
    let row = list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["session_id"] == session.as_str())
        .unwrap()
        .clone();
    assert_eq!(row["forwarded"], true);
    assert_eq!(row["source"], src.as_str());
    assert_eq!(row["first_index"], 0);

    // A second phone that nobody cross-signed, holding its own session, trusts mxkeys's
    // device locally and so answers; mxkeys refuses what it sends.
    let mut rogue = Phone::login(&hs, &acc.user);
    let room2 = rogue.create_encrypted_room(&[]);
    let (_, s2) = rogue.send_unshared_message(&room2, "from a device nobody verified");
    rogue.trust_locally(&device_id);
    let child = spawn(
        &env,
        &[
            "--json",
            "device",
            "request-keys",
            "--room",
            &room2,
            "--session",
            &s2,
            "--for",
            "10",
        ],
    );
    rogue.sync_until(8, |_| false);
    let r = finish(child);
    let r = r.code(10);
    assert!(r.stderr.contains("no device of yours sent"), "{}", r.stderr);
    let list = env.smx(&["--json", "list", "--sessions"]).ok().json();
    assert!(
        !list["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["session_id"] == s2.as_str()),
        "an unverified device's key was stored"
    );
}

#[test]
fn sync_backup_puts_a_newly_received_key_into_the_backup() {
    let hs = require_hs!();
    let mut acc = account(&hs, "dev-keeper");
    let env = Env::for_homeserver(&hs.base);
    let device_id = mx_device(&env, &acc.user);
    verify_with_key(&env, &mut acc, &device_id);
    // Without a kept backup key, --backup refuses (and receives nothing).
    env.smx(&["device", "sync", "--for", "1", "--backup"])
        .code(16)
        .stderr_has("cannot be trusted");
    // The backup key, kept once (from the Security Key).
    let sk = env.write_secret("security-key.txt", &acc.security_key);
    env.smx_p(&["backup", "download"], &[("--recovery-key-file", &sk)])
        .ok();

    let room = acc.phone.create_encrypted_room(&[]);
    let child = spawn(
        &env,
        &["--json", "device", "sync", "--for", "25", "--backup"],
    );
    // Sent while the keeper runs: the phone shares the room key with every device of the
    // user, mxkeys's among them; the phone itself does not back it up.
    let (_, session) = acc.phone.send_message(&room, "for the keeper");
    let r = finish(child).ok();
    let v = r.json();
    assert!(v["totals"]["imported"].as_u64().unwrap() >= 1, "{v}");
    assert!(v["totals"]["backed_up"].as_u64().unwrap() >= 1, "{v}");
    let api = hs.api(&acc.user);
    let (status, key) = api.key(&acc.version, &room, &session);
    assert_eq!(status, 200, "{key}");
    assert_eq!(key["first_message_index"], 0);
    let list = env.smx(&["--json", "list", "--sessions"]).ok().json();
    let row = list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["session_id"] == session.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        row["source"],
        format!("direct:{}:{}", acc.user.user_id, acc.phone.device_id).as_str()
    );
    assert_eq!(row["forwarded"], false);
}

#[test]
fn rehydrate_takes_a_key_sent_while_no_device_was_online() {
    let hs = require_hs!();
    let mut acc = account(&hs, "dev-dehydrated");
    let dehydrated = acc.phone.create_dehydrated_device();
    // Bob writes to alice while none of her devices is online: only the dehydrated device
    // and the (silent) phone get the room key; the phone never syncs again here.
    let bob_user = hs.register("dev-bob");
    let mut bob = Phone::login(&hs, &bob_user);
    let room = bob.create_encrypted_room(&[acc.user.user_id.as_str()]);
    let alice_api = hs.api(&acc.user);
    alice_api.join(&room);
    let (_, session) = bob.send_message(&room, "while you were away");

    let env = Env::for_homeserver(&hs.base);
    env.init_and_login(&acc.user);
    // Without the Security Key there is nothing to open it with.
    env.smx(&["device", "rehydrate"]).code(2);
    let sk = env.write_secret("security-key.txt", &acc.security_key);
    let r = env
        .smx_p(
            &["--json", "device", "rehydrate"],
            &[("--recovery-key-file", &sk)],
        )
        .ok();
    let v = r.json();
    assert_eq!(v["device_id"], dehydrated.as_str());
    assert!(v["keys"].as_u64().unwrap() >= 1, "{v}");
    assert!(v["imported"].as_u64().unwrap() >= 1, "{v}");
    let list = env.smx(&["--json", "list", "--sessions"]).ok().json();
    let row = list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["session_id"] == session.as_str())
        .unwrap_or_else(|| panic!("bob's session not rehydrated: {list}"))
        .clone();
    assert_eq!(row["source"], format!("dehydrated:{dehydrated}").as_str());
    // The dehydrated device is still there, unchanged; a second run finds the key again.
    let (status, dd) = acc.phone.raw(
        "GET",
        "/_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device",
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(dd["device_id"], dehydrated.as_str());
    let again = env
        .smx_p(
            &["--json", "device", "rehydrate"],
            &[("--recovery-key-file", &sk)],
        )
        .ok()
        .json();
    assert_eq!(again["imported"], 0);
    assert!(again["unchanged"].as_u64().unwrap() >= 1);
    drop(acc.phone);
}

#[test]
fn sas_on_a_terminal_verifies_both_ways_and_a_mismatch_trusts_nothing() {
    let hs = require_hs!();
    let mut acc = account(&hs, "dev-sas");
    let env = Env::for_homeserver(&hs.base);
    let device_id = mx_device(&env, &acc.user);
    let store = env.store();
    let pass = env.store_pass_file();
    let base = [
        "--store",
        store.to_str().unwrap(),
        "--store-passphrase-file",
        pass.to_str().unwrap(),
    ];

    // A mismatch: typed "no"; nothing is trusted on either side.
    let phone_id = acc.phone.device_id.clone();
    let mut args: Vec<&str> = base.to_vec();
    args.extend([
        "device", "verify", "--sas", "--device", &phone_id, "--for", "60",
    ]);
    let mut t = Term::spawn(&env, &args);
    let emoji = acc.phone.sas_accept_incoming(&device_id, WAIT);
    assert_eq!(emoji.len(), 7);
    let frame = t.wait_for_prompt("Do they match? Type yes or no: ");
    for (_, name) in &emoji {
        assert!(
            frame.text.contains(name.as_str()),
            "{name} not on screen:\n{}",
            frame.text
        );
    }
    t.answer("Do they match? Type yes or no: ", "no");
    let end = t.expect_exit(16);
    assert!(end.text.contains("did not match"), "{}", end.text);
    assert!(
        acc.phone.sync_until(WAIT, |p| p.sas_cancelled()),
        "the phone never saw the cancel"
    );
    assert!(!acc.phone.sas_finish(true, 5), "a cancelled SAS finished");
    assert_eq!(info(&env)["cross_signed"], false);
    assert!(!acc.phone.sees_verified(&device_id));

    // The same, confirmed on both sides: the phone signs mxkeys's device.
    let mut t = Term::spawn(&env, &args);
    let emoji = acc.phone.sas_accept_incoming(&device_id, WAIT);
    let frame = t.wait_for_prompt("Do they match? Type yes or no: ");
    for (sym, name) in &emoji {
        assert!(frame.text.contains(name.as_str()), "{name} not on screen");
        assert!(frame.text.contains(sym.as_str()), "{sym} not on screen");
    }
    t.answer("Do they match? Type yes or no: ", "yes");
    assert!(acc.phone.sas_finish(true, WAIT), "the phone did not finish");
    let end = t.expect_exit(0);
    assert!(end.text.contains("Verified: device"), "{}", end.text);
    assert!(acc.phone.sees_verified(&device_id));
    assert_eq!(info(&env)["cross_signed"], true);
}

#[test]
fn sigkill_during_sync_loses_no_key_and_the_device_opens() {
    let hs = require_hs!();
    let mut acc = account(&hs, "dev-kill");
    let env = Env::for_homeserver(&hs.base);
    mx_device(&env, &acc.user);
    // Three rooms, so three sessions, all waiting for the device as to-device messages.
    let mut sessions = Vec::new();
    for i in 0..3 {
        let room = acc.phone.create_encrypted_room(&[]);
        let (_, s) = acc.phone.send_message(&room, &format!("message {i}"));
        sessions.push(s);
    }
    let mut child = spawn(&env, &["device", "sync", "--follow"]);
    // Killed while it receives (or after: either way nothing may be lost).
    acc.phone.sync_until(2, |_| false);
    child.kill().unwrap();
    let _ = child.wait();
    let r = env.smx(&["--json", "device", "sync", "--for", "3"]).ok();
    let _ = r.json();
    let list = env.smx(&["--json", "list", "--sessions"]).ok().json();
    let held: Vec<&str> = list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["session_id"].as_str().unwrap())
        .collect();
    for s in &sessions {
        assert!(held.contains(&s.as_str()), "{s} lost: {held:?}");
    }
    assert!(info(&env)["device_id"].is_string());
}
