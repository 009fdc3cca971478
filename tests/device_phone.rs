//! The tests' "old phone" (tests/common/phone.rs) against the test homeserver: that it is a
//! real device of its user, as the `device` tests need it. Two phones of one user share room
//! keys, cross-sign each other, answer each other's key and secret requests and verify each
//! other by SAS; one phone's backup and secret storage open with mxkeys itself; its
//! dehydrated device is on the server.
//!
//! Every wait here is bounded (a sync loop with a deadline), never a timing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;

use common::phone::{DEHYDRATION_SECRET, Phone};
use common::synapse::require_hs;
use common::{Env, PASS, element};
use serde_json::Value;

/// Upper bound of each wait for the other device (seconds).
const WAIT: u64 = 30;

/// The encrypted event `event_id` of `room`, as `/messages` gives it to `user`.
fn encrypted_event(api: &common::synapse::Api, room: &str, event_id: &str) -> Value {
    api.encrypted_history(room)
        .into_iter()
        .find(|e| e["event_id"] == event_id)
        .unwrap_or_else(|| panic!("{event_id} not in the history of {room}"))
}

/// Phone A shares its room keys with phone B (an unverified device too, by default); a
/// session A keeps to itself reaches B only when B asks for it and A sees B as verified
/// (A cross-signed B); B accepts the forwarded key because it trusts A.
#[test]
fn two_phones_share_forward_and_cross_sign() {
    let hs = require_hs!();
    let user = hs.register("phone");
    let api = hs.api(&user);
    let mut a = Phone::login(&hs, &user);
    let mut b = Phone::login(&hs, &user);
    assert_ne!(a.device_id, b.device_id);

    a.bootstrap_cross_signing();
    assert!(a.has_cross_signing_keys());
    assert!(!a.sees_verified(&b.device_id), "B is not verified yet");
    a.verify_own_device(&b.device_id);
    assert!(a.sees_verified(&b.device_id));
    assert!(a.sees_cross_signed(&b.device_id));
    // B sees its own device signed by the user's self-signing key on the server.
    let b_dev = b.device_id.clone();
    assert!(b.sees_cross_signed(&b_dev));
    assert!(b.sees_cross_signed(&a.device_id));

    let room = a.create_encrypted_room(&[]);
    let (ev1, s1) = a.send_message(&room, "hello from the old phone");
    assert!(
        b.sync_until(WAIT, |b| b.has_session(&room, &s1)),
        "B never got the room key {s1}"
    );
    let plain = b
        .decrypt(&room, &encrypted_event(&api, &room, &ev1))
        .expect("B decrypts A's message");
    assert_eq!(plain["content"]["body"], "hello from the old phone");
    assert_eq!(plain["type"], "m.room.message");

    // A session only A has: B gets the next, shared one, but not this one.
    let (ev2, s2) = a.send_unshared_message(&room, "only the phone has this key");
    let (_, s3) = a.send_message(&room, "shared again");
    assert_ne!(s2, s1);
    assert_ne!(s3, s2);
    assert!(b.sync_until(WAIT, |b| b.has_session(&room, &s3)));
    assert!(a.has_session(&room, &s2));
    assert!(!b.has_session(&room, &s2));
    let e2 = encrypted_event(&api, &room, &ev2);
    assert!(b.decrypt(&room, &e2).is_none());

    // B asks; A (automatic forwarding, B verified) answers; B takes it from a device it
    // trusts.
    b.trust_locally(&a.device_id);
    b.request_room_key(&room, &e2);
    let mut seen = Vec::new();
    let answered = a.sync_until(WAIT, |a| {
        seen.extend(a.sync_once(0));
        seen.iter().any(|t| t == "m.room_key_request")
    });
    assert!(answered, "A never saw the key request: {seen:?}");
    assert!(
        b.sync_until(WAIT, |b| b.has_session(&room, &s2)),
        "A did not forward {s2} to B"
    );
    let plain = b
        .decrypt(&room, &e2)
        .expect("B decrypts with the forwarded key");
    assert_eq!(plain["content"]["body"], "only the phone has this key");

    b.logout();
    a.logout();
}

/// The phone forwards a key only to a device it sees as verified: B's request goes
/// unanswered while A does not trust B (the next shared key reaches B, the asked one does not),
/// and is answered once A trusts B locally (no cross-signing at all here).
#[test]
fn phone_forwards_keys_only_to_devices_it_trusts() {
    let hs = require_hs!();
    let user = hs.register("phonefw");
    let api = hs.api(&user);
    let mut a = Phone::login(&hs, &user);
    let mut b = Phone::login(&hs, &user);
    b.trust_locally(&a.device_id);
    let room = a.create_encrypted_room(&[]);
    let (ev, s1) = a.send_unshared_message(&room, "asked for");
    let e1 = encrypted_event(&api, &room, &ev);
    let saw_request = |a: &mut Phone| {
        let mut seen = Vec::new();
        a.sync_until(WAIT, |a| {
            seen.extend(a.sync_once(0));
            seen.iter().any(|t| t == "m.room_key_request")
        })
    };

    b.request_room_key(&room, &e1);
    assert!(saw_request(&mut a), "A never saw B's request");
    // Anything A sent B for the request would come before this key.
    let (_, s2) = a.send_message(&room, "shared");
    assert!(b.sync_until(WAIT, |b| b.has_session(&room, &s2)));
    assert!(
        !b.has_session(&room, &s1),
        "A forwarded to a device it does not trust"
    );

    a.trust_locally(&b.device_id);
    assert!(a.sees_verified(&b.device_id));
    assert!(!a.sees_cross_signed(&b.device_id));
    // A repeated request is a cancellation and the request again, which may reach A in two
    // syncs: A keeps syncing until B has the key.
    b.request_room_key(&room, &e1);
    assert!(
        b.sync_until(WAIT, |b| {
            a.sync_once(0);
            b.has_session(&room, &s1)
        }),
        "A did not forward to a device it trusts"
    );
    let plain = b
        .decrypt(&room, &e1)
        .expect("B decrypts with the forwarded key");
    assert_eq!(plain["content"]["body"], "asked for");
}

/// Phone A's backup and secret storage are real: mxkeys, given the Security Key A made,
/// downloads exactly A's sessions (also the one no other device ever had). And A answers a
/// secret request of a device it verified: B gets the cross-signing keys and the backup key.
#[test]
fn phone_backup_and_secret_storage_open_with_mxkeys() {
    let hs = require_hs!();
    let user = hs.register("phonebk");
    let mut a = Phone::login(&hs, &user);
    a.bootstrap_cross_signing();
    let version = a.create_backup();
    let room = a.create_encrypted_room(&[]);
    let (_, s1) = a.send_message(&room, "backed up");
    let (_, s2) = a.send_unshared_message(&room, "backed up, never shared");
    assert_eq!(a.backup_all(), 2);
    assert_eq!(a.backup_all(), 0, "everything is backed up");
    assert_eq!(hs.api(&user).count(&version), 2);
    let security_key = a.setup_secret_storage();
    assert_eq!(security_key.split(' ').count(), 12, "{security_key}");
    // The dehydration key is in secret storage, as Element keeps it.
    assert!(
        hs.api(&user)
            .account_data(&user.user_id, DEHYDRATION_SECRET)
            .is_some()
    );

    let env = Env::for_homeserver(&hs.base);
    let tok = env.token_file("token.txt", &user.token);
    let sk = env.write_secret("security-key.txt", format!("{security_key}\n"));
    let pass = env.pass_file();
    let out = env.path("backup.txt");
    let j = env.download_to_file(&tok, &sk, &pass, &out);
    assert_eq!(j["sessions"], 2, "{j}");
    let sessions: Vec<Value> =
        serde_json::from_slice(&element::decrypt_file(&out, PASS.as_bytes()).plaintext).unwrap();
    let got: BTreeSet<(String, String)> = sessions
        .iter()
        .map(|s| {
            (
                s["room_id"].as_str().unwrap().to_string(),
                s["session_id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want: BTreeSet<(String, String)> = [(room.clone(), s1), (room.clone(), s2)].into();
    assert_eq!(got, want);

    // Secret requests: B is verified by A and trusts A; A answers.
    let mut b = Phone::login(&hs, &user);
    a.verify_own_device(&b.device_id);
    b.trust_locally(&a.device_id);
    assert!(!b.has_cross_signing_keys());
    assert!(b.request_missing_secrets());
    a.sync_until(WAIT, |a| {
        a.sync_once(0).iter().any(|t| t == "m.secret.request")
    });
    assert!(
        b.sync_until(WAIT, |b| b.has_cross_signing_keys()
            && !b.backup_keys_in_inbox().is_empty()),
        "A did not send B its secrets"
    );
    assert_eq!(
        b.backup_keys_in_inbox(),
        vec![a.backup_key_base64().unwrap()]
    );
}

/// Phone A's dehydrated device is the one the server holds, and it receives room keys.
#[test]
fn phone_dehydrated_device_is_on_the_server() {
    let hs = require_hs!();
    let user = hs.register("phonedh");
    let mut a = Phone::login(&hs, &user);
    a.bootstrap_cross_signing();
    a.setup_secret_storage();
    let none = a.raw(
        "GET",
        "/_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device",
        None,
    );
    // Not M_UNRECOGNIZED: the test server has MSC3814 on.
    assert_eq!(
        (none.0, none.1["errcode"].as_str()),
        (404, Some("M_NOT_FOUND")),
        "{}",
        none.1
    );
    let id = a.create_dehydrated_device();
    assert_ne!(id, a.device_id);
    let (status, v) = a.raw(
        "GET",
        "/_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device",
        None,
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["device_id"], id.as_str(), "{v}");
    assert!(v["device_data"].is_object(), "{v}");

    // It is a recipient like any other device: a room key the phone shares reaches it, and
    // rehydrating with the key in secret storage finds it.
    let room = a.create_encrypted_room(&[]);
    let (_, s1) = a.send_message(&room, "for the dehydrated device too");
    assert_eq!(a.dehydrated_room_keys(), vec![(room, s1)]);
}

/// An SAS between two phones of one user, each on its own thread: both show the same 7
/// emoji, both finish, and the one with the cross-signing keys has signed the other.
#[test]
fn sas_between_two_phones() {
    let hs = require_hs!();
    let user = hs.register("phonesas");
    let mut a = Phone::login(&hs, &user);
    let mut b = Phone::login(&hs, &user);
    a.bootstrap_cross_signing();
    assert!(!a.sees_cross_signed(&b.device_id));
    let (a_dev, b_dev) = (a.device_id.clone(), b.device_id.clone());
    let ((ea, done_a), (eb, done_b)) = std::thread::scope(|s| {
        let hb = s.spawn(|| {
            let e = b.sas_accept_incoming(&a_dev, WAIT);
            (e, b.sas_finish(true, WAIT))
        });
        let e = a.sas_start_with(&b_dev, WAIT);
        let done = a.sas_finish(true, WAIT);
        ((e, done), hb.join().unwrap())
    });
    assert_eq!(ea.len(), 7);
    assert_eq!(ea, eb);
    assert!(done_a && done_b);
    assert!(a.sees_cross_signed(&b_dev), "the SAS did not sign B");
    assert!(a.sees_verified(&b_dev));
}

/// The other way round, and a mismatch: A only asks, B accepts and starts; both show the same
/// emoji; B says they differ, so neither side ends verified and A sees the cancellation.
#[test]
fn sas_the_other_way_round_and_a_mismatch() {
    let hs = require_hs!();
    let user = hs.register("phonesas2");
    let mut a = Phone::login(&hs, &user);
    let mut b = Phone::login(&hs, &user);
    a.bootstrap_cross_signing();
    let (a_dev, b_dev) = (a.device_id.clone(), b.device_id.clone());
    let ((ea, done_a), (eb, done_b)) = std::thread::scope(|s| {
        let hb = s.spawn(|| {
            let e = b.sas_accept_incoming_and_start(&a_dev, WAIT);
            (e, b.sas_finish(false, WAIT))
        });
        let e = a.sas_request(&b_dev, WAIT);
        let done = a.sas_finish(true, WAIT);
        ((e, done), hb.join().unwrap())
    });
    assert_eq!(ea.len(), 7);
    assert_eq!(ea, eb);
    assert!(!done_b, "B said the emoji differ");
    assert!(!done_a, "A must not finish a mismatched SAS");
    assert!(!a.sees_cross_signed(&b_dev));
}
