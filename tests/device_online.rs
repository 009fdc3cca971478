//! `mxkeys device ...` against the real test homeserver, with a second real device of the same
//! user driven by the test: the "old phone" (tests/common/phone.rs, matrix-sdk-crypto's
//! `OlmMachine` with key forwarding on). mxkeys runs as its own process; while it waits, the
//! test thread drives the phone (syncs, answers, verifies).
//!
//! Every wait is bounded (`--for`, or the phone's sync loop with a deadline), never a timing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Env;
use common::device::{
    WAIT, account, ended, finish, held_sessions, info, mx_device, session_row, spawn, term,
    verify_with_key,
};
use common::fault_proxy::{Action, FaultProxy};
use common::phone::Phone;
use common::synapse::{enc, require_hs};
use serde_json::Value;

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
    let held = held_sessions(&env);
    assert!(held.contains(&session), "{held:?}");
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
    let row = session_row(&env, &session).unwrap();
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
    assert!(
        session_row(&env, &s2).is_none(),
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
    let row = session_row(&env, &session).unwrap();
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
    let row = session_row(&env, &session)
        .unwrap_or_else(|| panic!("bob's session not rehydrated: {:?}", held_sessions(&env)));
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

    // A mismatch: typed "no"; nothing is trusted on either side.
    let phone_id = acc.phone.device_id.clone();
    let args = [
        "device", "verify", "--sas", "--device", &phone_id, "--for", "60",
    ];
    let mut t = term(&env, &args);
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
    let mut t = term(&env, &args);
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
    let held = held_sessions(&env);
    for s in &sessions {
        assert!(held.contains(s), "{s} lost: {held:?}");
    }
    assert!(info(&env)["device_id"].is_string());
}

/// The ids of the sessions `history check --json` lists for a room, with their class.
fn listed_sessions(report: &Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = report["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["sessions"].as_array().unwrap().iter())
        .map(|s| {
            (
                s["session_id"].as_str().unwrap().to_string(),
                s["class"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn request_keys_missing_asks_for_what_history_check_finds_missing() {
    let hs = require_hs!();
    let mut acc = account(&hs, "dev-missing");
    let env = Env::for_homeserver(&hs.base);
    let device_id = mx_device(&env, &acc.user);
    verify_with_key(&env, &mut acc, &device_id);

    // Two sessions of one room that only the phone holds (each unshared message starts a
    // session of its own).
    let room = acc.phone.create_encrypted_room(&[]);
    let (_, s1) = acc.phone.send_unshared_message(&room, "first, phone only");
    let (_, s2) = acc.phone.send_unshared_message(&room, "second, phone only");
    assert_ne!(s1, s2, "the second unshared message reused the session");
    let mut both = vec![s1.clone(), s2.clone()];
    both.sort();

    let r = env
        .smx(&["--json", "history", "check", "--room", &room])
        .code(3);
    let before = r.json();
    assert_eq!(
        common::class_counts(&before["counts"]),
        common::expect_class_counts(&[("missing", 2)]),
        "{before}"
    );
    assert_eq!(
        listed_sessions(&before),
        both.iter()
            .map(|s| (s.clone(), "missing".to_string()))
            .collect::<Vec<_>>()
    );

    // Neither --session nor --missing: a usage error that says what to give. A session the
    // room's history does not have: not found (a request must name the session's sender).
    let r = env
        .smx(&["device", "request-keys", "--room", &room])
        .code(2)
        .stderr_has("say which sessions to ask for");
    assert!(r.stderr.contains("--missing"), "{}", r.stderr);
    let (errs, hints) = r.error_and_hint_lines();
    assert_eq!((errs.len(), hints.len()), (1, 1), "{}", r.stderr);
    let r = env
        .smx(&[
            "device",
            "request-keys",
            "--room",
            &room,
            "--session",
            "NOSUCHSESSION",
            "--for",
            "5",
        ])
        .code(10)
        .stderr_has("no event of session NOSUCHSESSION");
    let (errs, hints) = r.error_and_hint_lines();
    assert_eq!((errs.len(), hints.len()), (1, 1), "{}", r.stderr);

    // --missing asks for both; the phone answers when it syncs.
    let mut child = spawn(
        &env,
        &[
            "--json",
            "device",
            "request-keys",
            "--missing",
            "--room",
            &room,
            "--for",
            "40",
        ],
    );
    acc.phone.sync_until(WAIT, |_| ended(&mut child));
    let r = finish(child).ok();
    let v = r.json();
    assert_eq!(v["wanted"], 2, "{v}\n{}", r.stderr);
    assert_eq!(v["arrived"], 2, "{v}\n{}", r.stderr);
    assert_eq!(v["imported"], 2, "{v}");
    let src = format!("forwarded:{}:{}", acc.user.user_id, acc.phone.device_id);
    let mut got: Vec<String> = Vec::new();
    for s in v["sessions"].as_array().unwrap() {
        assert_eq!(s["room_id"], room.as_str(), "{v}");
        assert_eq!(s["arrived"], true, "{v}");
        assert_eq!(s["source"], src.as_str(), "{v}");
        got.push(s["session_id"].as_str().unwrap().to_string());
    }
    got.sort();
    assert_eq!(got, both);

    // Now the history reads.
    let after = env
        .smx(&["--json", "history", "check", "--room", &room])
        .ok()
        .json();
    assert_eq!(
        common::class_counts(&after["counts"]),
        common::expect_class_counts(&[("decrypted", 2)]),
        "{after}"
    );
    assert!(listed_sessions(&after).is_empty(), "{after}");
}

#[test]
fn sigkill_during_rehydrate_loses_nothing_and_leaves_the_dehydrated_device() {
    let hs = require_hs!();
    let mut acc = account(&hs, "dev-rh-kill");
    let dehydrated = acc.phone.create_dehydrated_device();
    // Bob writes in three rooms while alice has no device online: three room keys queued for
    // the dehydrated device.
    let bob_user = hs.register("dev-rh-bob");
    let mut bob = Phone::login(&hs, &bob_user);
    let alice_api = hs.api(&acc.user);
    let mut sessions = Vec::new();
    for i in 0..3 {
        let room = bob.create_encrypted_room(&[acc.user.user_id.as_str()]);
        alice_api.join(&room);
        sessions.push(
            bob.send_message(&room, &format!("while you were away {i}"))
                .1,
        );
    }
    let env = Env::for_homeserver(&hs.base);
    env.init_and_login(&acc.user);
    let sk = env.write_secret("security-key.txt", &acc.security_key);
    let sk = sk.to_str().unwrap();
    let rehydrate = ["--json", "device", "rehydrate", "--recovery-key-file", sk];

    // 1. Killed at once (before or while it opens the device).
    let mut child = spawn(&env, &rehydrate);
    child.kill().unwrap();
    let _ = child.wait();
    // The store opens, and holds nothing but bob's keys (whichever it got to).
    let held = held_sessions(&env);
    assert!(held.iter().all(|s| sessions.contains(s)), "{held:?}");

    // 2. Killed after the first page of messages, while it waits for the next. Synapse sends
    // up to 100 messages a page, so the proxy makes the first page say there is more (as a
    // longer queue would), holds back the second page's answer, and the kill comes once that
    // was asked for.
    let proxy = FaultProxy::start(&hs.base);
    let events = format!(
        "/_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device/{}/events",
        enc(&dehydrated)
    );
    proxy.rule(
        "GET",
        &events,
        1,
        Action::Rewrite(Arc::new(|status, body| {
            // (Anything unexpected is passed on as it is, and the checks below fail.)
            let Ok(mut v) = serde_json::from_slice::<Value>(body) else {
                return (status, body.to_vec());
            };
            v["next_batch"] = Value::from("d1");
            (status, serde_json::to_vec(&v).unwrap_or_default())
        })),
    );
    proxy.rule("GET", &events, 2, Action::Stall(Duration::from_secs(120)));
    let url = proxy.url();
    let mut args = rehydrate.to_vec();
    args.extend(["--homeserver", url.as_str()]);
    let mut child = spawn(&env, &args);
    let deadline = Instant::now() + Duration::from_secs(WAIT);
    while proxy.count("GET", &events) < 2 && !ended(&mut child) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        proxy.count("GET", &events),
        2,
        "rehydrate did not ask for a second page: {:?}",
        proxy
            .seen()
            .iter()
            .map(|s| format!(
                "{} {} {}",
                s.path,
                s.status,
                String::from_utf8_lossy(&s.response)
            ))
            .collect::<Vec<_>>()
    );
    child.kill().unwrap();
    let _ = child.wait();
    drop(proxy);
    // The first page's keys were stored before the next page was asked for.
    let held = held_sessions(&env);
    for s in &sessions {
        assert!(
            held.contains(s),
            "{s} not stored after the first page: {held:?}"
        );
    }

    // 3. A whole run: nothing new, nothing lost; the store opens, the device is still there.
    let v = env.smx(&rehydrate).ok().json();
    assert_eq!(v["device_id"], dehydrated.as_str());
    assert_eq!(v["keys"].as_u64().unwrap(), sessions.len() as u64, "{v}");
    assert_eq!(v["imported"], 0, "{v}");
    assert_eq!(
        v["unchanged"].as_u64().unwrap(),
        sessions.len() as u64,
        "{v}"
    );
    for s in &sessions {
        let row =
            session_row(&env, s).unwrap_or_else(|| panic!("{s} lost: {:?}", held_sessions(&env)));
        assert_eq!(row["source"], format!("dehydrated:{dehydrated}").as_str());
    }
    let (status, dd) = acc.phone.raw(
        "GET",
        "/_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device",
        None,
    );
    assert_eq!(status, 200, "{dd}");
    assert_eq!(dd["device_id"], dehydrated.as_str());
    drop(bob);
}

#[test]
fn sas_started_by_the_phone_is_accepted_on_a_terminal() {
    let hs = require_hs!();
    let acc = account(&hs, "dev-sas-accept");
    let env = Env::for_homeserver(&hs.base);
    let device_id = mx_device(&env, &acc.user);
    let mut t = term(
        &env,
        &["device", "verify", "--sas", "--accept", "--for", "60"],
    );
    t.wait_for_text("Waiting for a verification request");
    // The phone asks and starts from its own thread, as a person does on the phone, while
    // mxkeys waits on the terminal.
    let mut phone = acc.phone;
    let dev = device_id.clone();
    let side = std::thread::spawn(move || {
        let emoji = phone.sas_start_with(&dev, WAIT);
        (phone, emoji)
    });
    let prompt = "Do they match? Type yes or no: ";
    let frame = t.wait_for_prompt(prompt);
    let (mut phone, emoji) = side.join().unwrap();
    assert_eq!(emoji.len(), 7);
    for (sym, name) in &emoji {
        assert!(
            frame.text.contains(name.as_str()),
            "{name} not on screen:\n{}",
            frame.text
        );
        assert!(frame.text.contains(sym.as_str()), "{sym} not on screen");
    }
    assert!(frame.text.contains("Accepted the verification request"));
    t.answer(prompt, "yes");
    assert!(phone.sas_finish(true, WAIT), "the phone did not finish");
    let end = t.expect_exit(0);
    assert!(end.text.contains("Verified: device"), "{}", end.text);
    assert!(phone.sees_verified(&device_id));
    assert_eq!(info(&env)["cross_signed"], true);
}

#[test]
fn ctrl_c_ends_sync_follow_cleanly_and_keeps_what_arrived() {
    let hs = require_hs!();
    let mut acc = account(&hs, "dev-follow");
    let env = Env::for_homeserver(&hs.base);
    let device_id = mx_device(&env, &acc.user);
    let room = acc.phone.create_encrypted_room(&[]);
    let (_, session) = acc.phone.send_message(&room, "before the keeper starts");
    let mut t = term(&env, &["device", "sync", "--follow"]);
    t.wait_for_text(&format!("Receiving as device {device_id} until Ctrl-C"));
    // The key that was waiting arrives and is reported as it is stored.
    t.wait_for_text(&format!("session {session}"));
    t.ctrl_c();
    let end = t.expect_exit(0);
    assert!(end.text.contains("to-device message"), "{}", end.text);
    assert!(end.text.contains("new key"), "{}", end.text);
    assert!(held_sessions(&env).contains(&session));
    assert!(info(&env)["device_id"].is_string());
}

#[test]
fn no_secret_reaches_output_logs_or_the_disk_in_the_clear() {
    let hs = require_hs!();
    let mut acc = account(&hs, "dev-hygiene");
    let env = Env::for_homeserver(&hs.base);
    let device_id = mx_device(&env, &acc.user);
    let backup_key = acc.phone.backup_key_base64().unwrap();
    let sk = env.write_secret("security-key.txt", &acc.security_key);
    let verify = env
        .smx_p(
            &["-vv", "--json", "device", "verify"],
            &[("--recovery-key-file", &sk)],
        )
        .ok();
    let phone_id = device_id.clone();
    assert!(acc.phone.sync_until(WAIT, |p| p.sees_verified(&phone_id)));
    let child = spawn(
        &env,
        &["-vv", "--json", "device", "request-secrets", "--for", "40"],
    );
    acc.phone.sync_until(15, |_| false);
    let secrets = finish(child).ok();
    assert_eq!(secrets.json()["backup_key"], true, "{}", secrets.stderr);
    let compact: String = acc.security_key.split_whitespace().collect();
    for r in [&verify, &secrets] {
        let all = r.all_output();
        for (what, secret) in [
            ("the Security Key", acc.security_key.as_str()),
            ("the Security Key without spaces", compact.as_str()),
            ("the backup key", backup_key.as_str()),
            ("the password", acc.user.password.as_str()),
        ] {
            assert!(
                !all.contains(secret),
                "{what} in the output of `{}`",
                r.what
            );
        }
    }
    // At rest: the backup key is sealed in the key store and in the device's crypto store.
    let needle = backup_key.as_bytes();
    let mut files = vec![env.store()];
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else {
            let bytes = std::fs::read(&p).unwrap();
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "the backup key is in the clear in {}",
                p.display()
            );
        }
    }
}

#[test]
fn an_unanswered_sas_times_out_and_trusts_nothing() {
    let hs = require_hs!();
    let mut acc = account(&hs, "dev-sas-timeout");
    let env = Env::for_homeserver(&hs.base);
    let device_id = mx_device(&env, &acc.user);
    let phone_id = acc.phone.device_id.clone();
    // The phone never looks: mxkeys gives up, cancels its request and trusts nothing.
    let mut t = term(
        &env,
        &[
            "device", "verify", "--sas", "--device", &phone_id, "--for", "3",
        ],
    );
    let end = t.expect_exit(15);
    assert!(
        end.text
            .contains("no verification within 3 s; it was cancelled and nothing was trusted"),
        "{}",
        end.text
    );
    assert_eq!(info(&env)["cross_signed"], false);
    assert!(!acc.phone.sees_verified(&device_id));
    // --accept with nobody asking ends the same way.
    let mut t = term(
        &env,
        &["device", "verify", "--sas", "--accept", "--for", "2"],
    );
    let end = t.expect_exit(15);
    assert!(
        end.text
            .contains("no verification request arrived within 2 s"),
        "{}",
        end.text
    );
}

#[test]
fn a_late_answer_to_request_secrets_is_kept_by_device_sync() {
    let hs = require_hs!();
    let mut acc = account(&hs, "dev-late-secret");
    let room = acc.phone.create_encrypted_room(&[]);
    let (_, session) = acc.phone.send_message(&room, "in the backup");
    assert!(acc.phone.backup_all() >= 1);
    let env = Env::for_homeserver(&hs.base);
    let device_id = mx_device(&env, &acc.user);
    verify_with_key(&env, &mut acc, &device_id);
    // The request goes out, nobody answers in time.
    env.smx(&["device", "request-secrets", "--for", "1"])
        .code(10);
    // The phone answers later; the next `device sync` keeps the key.
    acc.phone.sync_until(5, |_| false);
    let r = env.smx(&["--json", "device", "sync", "--for", "4"]).ok();
    assert_eq!(
        r.json()["totals"]["backup_key_for"],
        acc.version.as_str(),
        "{}",
        r.stderr
    );
    let r = env.smx(&["--json", "backup", "download"]).ok();
    assert_eq!(r.json()["unlocked_with"], "stored_key", "{}", r.stdout);
    assert!(held_sessions(&env).contains(&session));
}
