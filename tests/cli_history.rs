//! Real history: keys that went through encrypt -> import -> store -> export -> decrypt still
//! decrypt the real `m.room.encrypted` events recorded with them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Env, fixture, read_sessions, text};
use mxkeys::session::ExportedSession;
use serde_json::Value;

#[test]
fn exported_keys_decrypt_the_recorded_events() {
    let env = Env::new();
    env.init_store();
    let sessions = read_sessions(&fixture("sessions/sessions-3.json"));
    let f = env.encrypt_json("s3.txt", &Value::Array(sessions.clone()));
    let r = env.import_ok(&[&f]);
    assert_eq!(r["imported"], 3);
    let pf = env.pass_file();
    env.scmd()
        .args([
            "export",
            "-o",
            "exported.txt",
            "--rounds",
            "1000",
            "--passphrase-file",
        ])
        .arg(&pf)
        .assert()
        .success();
    let out = env
        .cmd()
        .args([
            "decrypt",
            "exported.txt",
            "-o",
            "plain.json",
            "--passphrase-file",
        ])
        .arg(&pf)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let exported: Vec<Value> =
        serde_json::from_slice(&std::fs::read(env.path("plain.json")).unwrap()).unwrap();
    assert_eq!(exported.len(), 3);

    let events: Vec<Value> = serde_json::from_slice(
        &std::fs::read(fixture("sessions/sessions-3.json.events.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(events.len(), 3);
    for ev in &events {
        let sid = ev["session_id"].as_str().unwrap();
        let entry = exported
            .iter()
            .find(|s| s["session_id"] == sid)
            .unwrap_or_else(|| panic!("session {sid} was not exported"));
        assert_eq!(entry["room_id"], ev["room_id"]);
        assert_eq!(entry["sender_key"], ev["event"]["content"]["sender_key"]);
        let session = ExportedSession::from_json(&serde_json::to_vec(entry).unwrap()).unwrap();
        let (pt, index) = session
            .decrypt_event(ev["event"]["content"]["ciphertext"].as_str().unwrap())
            .unwrap_or_else(|| panic!("the exported key for {sid} does not decrypt its event"));
        let got: Value = serde_json::from_slice(&pt).unwrap();
        assert_eq!(got, ev["plaintext"], "session {sid}");
        assert!(index >= session.first_known_index());
    }
}

#[test]
fn a_later_copy_cannot_decrypt_earlier_events() {
    // The merge rule matters: a copy exported at a higher index loses history.
    use vodozemac::megolm::{ExportedSessionKey, InboundGroupSession, SessionConfig};
    let sessions = read_sessions(&fixture("sessions/sessions-3.json"));
    let events: Vec<Value> = serde_json::from_slice(
        &std::fs::read(fixture("sessions/sessions-3.json.events.json")).unwrap(),
    )
    .unwrap();
    let ev = &events[0];
    let s = sessions
        .iter()
        .find(|s| s["session_id"] == ev["session_id"])
        .unwrap();
    let key = ExportedSessionKey::from_base64(s["session_key"].as_str().unwrap()).unwrap();
    let mut inbound = InboundGroupSession::import(&key, SessionConfig::version_1());
    let later = inbound.export_at(1).unwrap().to_base64();
    let mut e = s.clone();
    e["session_key"] = later.into();
    let session = ExportedSession::from_json(&serde_json::to_vec(&e).unwrap()).unwrap();
    assert_eq!(session.first_known_index(), 1);
    assert!(
        session
            .decrypt_event(ev["event"]["content"]["ciphertext"].as_str().unwrap())
            .is_none()
    );
}
