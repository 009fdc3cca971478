//! `mxkeys history check --from-messages`: real events (matrix-sdk-crypto-wasm's fixture, and
//! events made here with vodozemac's `GroupSession`) classified exactly, offline.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use common::megolm::{entry, new_group};
use common::{
    Env, assert_error, class_counts, expect_class_counts, fixture, one_json, read_sessions, text,
};
use mxkeys::history::check::Checker;
use mxkeys::history::classify::Class;
use mxkeys::progress::NoProgress;
use mxkeys::room::event::{ReadOptions, read_events_from_slice};
use mxkeys::room::megolm::Decryption;
use mxkeys::session::ExportedSession;
use serde_json::{Value, json};
use vodozemac::megolm::GroupSession;

const ROOM: &str = "!room:example.org";
const OTHER_ROOM: &str = "!elsewhere:example.org";
const TS: u64 = 1_700_000_000_000;

/// The wasm fixture's events (each with its recorded cleartext).
fn fixture_events() -> Vec<Value> {
    serde_json::from_slice(&std::fs::read(fixture("sessions/sessions-3.json.events.json")).unwrap())
        .unwrap()
}

/// `history check` with `args`; returns the output.
fn check(env: &Env, args: &[&str], files: &[&PathBuf]) -> std::process::Output {
    let mut c = env.scmd();
    c.args(["history", "check"]);
    for f in files {
        c.arg("--from-messages").arg(f);
    }
    c.args(args).output().unwrap()
}

fn check_json(env: &Env, extra: &[&str], files: &[&PathBuf], code: i32) -> Value {
    let mut args = vec!["--json"];
    args.extend_from_slice(extra);
    let out = check(env, &args, files);
    assert_eq!(
        out.status.code(),
        Some(code),
        "stderr: {}",
        text(&out.stderr)
    );
    one_json(&out)
}

#[test]
fn the_wasm_fixture_events_all_decrypt_in_every_input_shape() {
    let env = Env::new();
    let sessions = read_sessions(&fixture("sessions/sessions-3.json"));
    env.init_store_with(&sessions);
    let events: Vec<Value> = fixture_events()
        .iter()
        .map(|e| e["event"].clone())
        .collect();
    let array = env.write("events.json", serde_json::to_vec(&events).unwrap());
    let page = env.write(
        "page.json",
        serde_json::to_vec(&json!({"start": "s", "end": "e", "chunk": events})).unwrap(),
    );
    let lines: String = events.iter().map(|e| format!("{e}\n")).collect();
    let jsonl = env.write("events.jsonl", lines);
    for f in [&array, &page, &jsonl] {
        let v = check_json(&env, &[], &[f], 0);
        assert_eq!(
            class_counts(&v["counts"]),
            expect_class_counts(&[("decrypted", 3)]),
            "{v}"
        );
        assert_eq!(v["events"], 3);
        assert_eq!(v["backup_checked"], false);
        let rooms = v["rooms"].as_array().unwrap();
        let total: u64 = rooms.iter().map(|r| r["events"].as_u64().unwrap()).sum();
        assert_eq!(total, 3);
        assert!(
            rooms
                .iter()
                .all(|r| r["sessions"].as_array().unwrap().is_empty())
        );
    }
    // Two files at once: each event counted once per file.
    let v = check_json(&env, &[], &[&array, &page], 0);
    assert_eq!(v["counts"]["decrypted"], 6);
}

#[test]
fn the_wasm_fixture_decrypts_to_the_recorded_cleartext() {
    let sessions = read_sessions(&fixture("sessions/sessions-3.json"));
    let mut source: HashMap<(String, String), ExportedSession> = HashMap::new();
    for s in &sessions {
        let s = ExportedSession::from_json(&serde_json::to_vec(s).unwrap()).unwrap();
        source.insert((s.room_id.clone(), s.session_id.clone()), s);
    }
    let recorded = fixture_events();
    let events: Vec<Value> = recorded.iter().map(|e| e["event"].clone()).collect();
    let input = serde_json::to_vec(&json!({ "chunk": events })).unwrap();
    let mut got: Vec<(String, Class, Option<Value>)> = Vec::new();
    let mut checker = Checker::new(vec![], None).with_observer(Box::new(|ev, class, d| {
        let pt = match d {
            Decryption::Decrypted { plaintext, .. } => {
                Some(serde_json::from_slice(plaintext).unwrap())
            }
            _ => None,
        };
        got.push((ev.event_id.clone().unwrap(), class, pt));
    }));
    read_events_from_slice(&input, &ReadOptions::default(), &mut |e| {
        checker.feed(&mut source, e, &NoProgress)
    })
    .unwrap();
    let report = checker.finish(&mut source, &NoProgress).unwrap();
    assert!(report.all_fine());
    assert_eq!(got.len(), 3);
    for (rec, (event_id, class, pt)) in recorded.iter().zip(&got) {
        assert_eq!(rec["event"]["event_id"], event_id.as_str());
        assert_eq!(*class, Class::Decrypted);
        assert_eq!(pt.as_ref().unwrap(), &rec["plaintext"], "{event_id}");
        // And what matrix-sdk-crypto-wasm itself decrypted.
        assert_eq!(
            pt.as_ref().unwrap()["content"],
            rec["decrypted_by_wasm"]["content"]
        );
    }
}

/// One encrypted event of `g` at its next index.
fn encrypted(g: &mut GroupSession, payload_room: &str, body: &str, n: u64) -> Value {
    let payload = json!({
        "type": "m.room.message",
        "content": {"msgtype": "m.text", "body": body},
        "room_id": payload_room,
    });
    let msg = g.encrypt(serde_json::to_vec(&payload).unwrap());
    json!({
        "type": "m.room.encrypted",
        "event_id": format!("$ev{n}"),
        "sender": "@bob:example.org",
        "origin_server_ts": TS + n * 60_000,
        "room_id": ROOM,
        "content": {
            "algorithm": "m.megolm.v1.aes-sha2",
            "ciphertext": msg.to_base64(),
            "session_id": g.session_id(),
            "sender_key": "claimed-by-the-event",
            "device_id": "BOBPHONE",
        },
        "unsigned": {"membership": "join"},
    })
}

fn backup_entry(first_message_index: u32) -> Value {
    json!({
        "first_message_index": first_message_index,
        "forwarded_count": 0,
        "is_verified": false,
        "session_data": {"ephemeral": "AAAA", "ciphertext": "AAAA", "mac": "AAAA"},
    })
}

/// Every situation of the issue, made with real Megolm sessions.
struct Situations {
    env: Env,
    page: PathBuf,
    backup: PathBuf,
    /// session name -> id
    ids: HashMap<&'static str, String>,
}

fn situations() -> Situations {
    let env = Env::new();
    let mut a = new_group(); // in the store from 0
    let mut b = new_group(); // only in the backup, from 0
    let mut c = new_group(); // in the store from index 5
    let mut d = new_group(); // nowhere
    let mut e = new_group(); // nowhere; sent before the account joined
    let mut f = new_group(); // only in the backup, from index 3
    let held = [entry(&a, ROOM, 0), entry(&c, ROOM, 5)];
    env.init_store_with(&held);
    let mut n = 0;
    let mut next = || {
        n += 1;
        n
    };
    let mut events = vec![
        encrypted(&mut a, ROOM, "a0", next()),
        encrypted(&mut a, ROOM, "a1", next()),
        encrypted(&mut b, ROOM, "b0", next()),
    ];
    let c_events: Vec<Value> = (0..6)
        .map(|i| encrypted(&mut c, ROOM, &format!("c{i}"), next()))
        .collect();
    events.push(c_events[2].clone()); // index 2 < 5: later_index
    events.push(c_events[5].clone()); // index 5: decrypted
    events.push(encrypted(&mut d, ROOM, "d0", next()));
    let mut left = encrypted(&mut e, ROOM, "e0", next());
    left["unsigned"]["membership"] = "leave".into();
    let mut invited = encrypted(&mut e, ROOM, "e1", next());
    invited["unsigned"]["membership"] = "invite".into();
    events.extend([left, invited]);
    // Tampered: one byte of the Megolm message flipped.
    let mut tampered = encrypted(&mut a, ROOM, "a2", next());
    {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD_NO_PAD;
        let mut bytes = b64
            .decode(tampered["content"]["ciphertext"].as_str().unwrap())
            .unwrap();
        bytes[12] ^= 0x01;
        tampered["content"]["ciphertext"] = b64.encode(bytes).into();
    }
    events.push(tampered);
    // A payload made for another room, sent in this one (a replay).
    events.push(encrypted(&mut a, OTHER_ROOM, "a3", next()));
    let f_events: Vec<Value> = (0..2)
        .map(|i| encrypted(&mut f, ROOM, &format!("f{i}"), next()))
        .collect();
    events.push(f_events[1].clone()); // index 1, the backup starts at 3: later_index
    let mut olm = encrypted(&mut d, ROOM, "olm", next());
    olm["content"] =
        json!({"algorithm": "m.olm.v1.curve25519-aes-sha2", "sender_key": "x", "ciphertext": {}});
    let mut unknown = encrypted(&mut d, ROOM, "unknown", next());
    unknown["content"]["algorithm"] = "org.example.future".into();
    events.extend([olm, unknown]);
    // And a plain event, which is not classified.
    events.push(json!({"type": "m.room.message", "event_id": "$plain", "room_id": ROOM, "content": {"body": "hi"}}));
    let page = env.write(
        "page.json",
        serde_json::to_vec(&json!({"start": "t0", "end": "t1", "chunk": events})).unwrap(),
    );
    let backup = env.write(
        "room-keys.json",
        serde_json::to_vec(&json!({"rooms": {ROOM: {"sessions": {
            b.session_id(): backup_entry(0),
            f.session_id(): backup_entry(3),
        }}}}))
        .unwrap(),
    );
    let ids = HashMap::from([
        ("a", a.session_id()),
        ("b", b.session_id()),
        ("c", c.session_id()),
        ("d", d.session_id()),
        ("e", e.session_id()),
        ("f", f.session_id()),
    ]);
    Situations {
        env,
        page,
        backup,
        ids,
    }
}

fn session<'v>(room: &'v Value, id: &str, class: &str) -> &'v Value {
    room["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["session_id"] == id && s["class"] == class)
        .unwrap_or_else(|| panic!("no {class} entry for {id} in {room}"))
}

#[test]
fn one_situation_per_class_with_the_backup_response() {
    let s = situations();
    let backup = s.backup.to_str().unwrap();
    let v = check_json(&s.env, &["--backup-response", backup], &[&s.page], 3);
    let want = expect_class_counts(&[
        ("decrypted", 3),
        ("in_backup", 1),
        ("later_index", 2),
        ("missing", 1),
        ("before_join", 2),
        ("damaged", 2),
        ("unsupported", 2),
    ]);
    assert_eq!(class_counts(&v["counts"]), want, "{v}");
    assert_eq!(v["events"], 13);
    assert_eq!(v["unencrypted"], 1);
    assert_eq!(v["backup_checked"], true);
    let rooms = v["rooms"].as_array().unwrap();
    assert_eq!(rooms.len(), 1);
    let room = &rooms[0];
    assert_eq!(room["room_id"], ROOM);
    assert_eq!(room["events"], 13);
    assert_eq!(class_counts(&room["counts"]), want);

    // The documented fields of every session entry.
    for e in room["sessions"].as_array().unwrap() {
        for k in [
            "session_id",
            "class",
            "events",
            "sender",
            "first_ts",
            "last_ts",
        ] {
            assert!(e.get(k).is_some(), "{k} missing in {e}");
        }
        assert_ne!(e["class"], "decrypted");
        assert_ne!(e["class"], "before_join");
    }
    // in_backup, later_index (store), later_index (backup), missing, damaged, unsupported.
    assert_eq!(room["sessions"].as_array().unwrap().len(), 6, "{room}");
    let b = session(room, &s.ids["b"], "in_backup");
    assert_eq!(b["events"], 1);
    assert_eq!(b["sender"], "@bob:example.org");
    assert_eq!(b["first_ts"], TS + 3 * 60_000);
    assert_eq!(b["last_ts"], TS + 3 * 60_000);
    assert_eq!(b["backup_first_index"], 0);
    assert_eq!(
        b["sender_key"],
        Value::Null,
        "no held copy: the event's claim is not used"
    );
    assert_eq!(b["claimed_sender_key"], "claimed-by-the-event");

    let c = session(room, &s.ids["c"], "later_index");
    assert_eq!(
        (c["events"].as_u64(), c["min_index"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(c["store_first_index"], 5);
    // The held session's own sender key, not the event's claim.
    assert_eq!(c["sender_key"], common::megolm::SENDER_KEY);
    assert_eq!(
        c["sender_claimed_ed25519"],
        "FoFzeER5D16p2zgy6vMD9jttW+1BWvgAKt840xmMP3Q"
    );

    let f = session(room, &s.ids["f"], "later_index");
    assert_eq!(f["backup_first_index"], 3);
    assert_eq!(f["store_first_index"], Value::Null);

    let d = session(room, &s.ids["d"], "missing");
    assert_eq!(d["events"], 1);
    assert_eq!(d["claimed_device_id"], "BOBPHONE");

    let a = session(room, &s.ids["a"], "damaged");
    assert_eq!(a["events"], 2);
    assert_eq!(a["first_ts"], TS + 13 * 60_000);
    assert_eq!(a["last_ts"], TS + 14 * 60_000);
    assert_eq!(a["reason"], "bad signature");

    let u = room["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["class"] == "unsupported")
        .unwrap();
    assert_eq!(u["events"], 2);
    assert_eq!(u["session_id"], Value::Null);
}

#[test]
fn without_the_backup_response_backed_up_sessions_count_as_missing_or_later() {
    let s = situations();
    let v = check_json(&s.env, &[], &[&s.page], 3);
    assert_eq!(
        class_counts(&v["counts"]),
        expect_class_counts(&[
            ("decrypted", 3),
            ("later_index", 1),
            ("missing", 3),
            ("before_join", 2),
            ("damaged", 2),
            ("unsupported", 2),
        ]),
        "{v}"
    );
    assert_eq!(v["backup_checked"], false);
    let room = &v["rooms"][0];
    assert_eq!(session(room, &s.ids["b"], "missing")["events"], 1);
    assert_eq!(session(room, &s.ids["f"], "missing")["events"], 1);
}

#[test]
fn human_output_says_what_to_do() {
    let s = situations();
    let out = check(
        &s.env,
        &["--backup-response", s.backup.to_str().unwrap()],
        &[&s.page],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let o = text(&out.stdout);
    assert!(
        o.contains(&format!(
            "{ROOM}: 13 encrypted events: 3 decrypted, 1 in_backup, 2 later_index, 1 missing, 2 before_join, 2 damaged, 2 unsupported"
        )),
        "{o}"
    );
    let download = format!(
        "mxkeys backup download --room '{ROOM}' --session {}",
        s.ids["b"]
    );
    for want in [
        download.as_str(),
        "the store's copy starts at index 5, these events are at index 2",
        "the backup's at index 3",
        "@bob:example.org's device with identity key",
        "@bob:example.org's device BOBPHONE (as the event claims)",
        "2 damaged, 2023-11-14 22:26 to 2023-11-14 22:27 UTC",
        "bad signature",
    ] {
        assert!(o.contains(want), "{want:?} not in {o}");
    }
    assert!(
        !o.contains(&format!("session {}", s.ids["e"])),
        "before_join is not listed: {o}"
    );
    assert!(
        text(&out.stderr).contains("13 encrypted events in 1 room:"),
        "{}",
        text(&out.stderr)
    );

    let out = check(&s.env, &[], &[&s.page]);
    assert!(
        text(&out.stderr).contains("No --backup-response given"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn exit_0_when_everything_is_decrypted_or_before_join() {
    let env = Env::new();
    let mut a = new_group();
    let mut e = new_group();
    env.init_store_with(&[entry(&a, ROOM, 0)]);
    let mut left = encrypted(&mut e, ROOM, "e0", 3);
    left["unsigned"]["membership"] = "leave".into();
    let events = [
        encrypted(&mut a, ROOM, "a0", 1),
        encrypted(&mut a, ROOM, "a1", 2),
        left,
    ];
    let f = env.write("events.json", serde_json::to_vec(&events).unwrap());
    let v = check_json(&env, &[], &[&f], 0);
    assert_eq!(
        class_counts(&v["counts"]),
        expect_class_counts(&[("decrypted", 2), ("before_join", 1)])
    );
    assert!(v["rooms"][0]["sessions"].as_array().unwrap().is_empty());
}

#[test]
fn room_filter_and_default_room() {
    let s = situations();
    let v = check_json(&s.env, &["--room", OTHER_ROOM], &[&s.page], 0);
    assert_eq!(v["events"], 0);
    assert_eq!(v["other_rooms"], 13);
    assert!(v["rooms"].as_array().unwrap().is_empty());

    // Events without room_id (a /sync timeline) belong to the one --room given.
    let mut a = new_group();
    let env = Env::new();
    env.init_store_with(&[entry(&a, ROOM, 0)]);
    let mut ev = encrypted(&mut a, ROOM, "a0", 1);
    ev.as_object_mut().unwrap().remove("room_id");
    let f = env.write("sync.json", serde_json::to_vec(&[ev]).unwrap());
    let v = check_json(&env, &["--room", ROOM], &[&f], 0);
    assert_eq!(v["counts"]["decrypted"], 1);
    let out = check(&env, &[], &[&f]);
    assert_error(
        &out,
        13,
        "event 0 has no room_id",
        "saved /messages responses",
    );
}

#[test]
fn hostile_inputs_are_clean_errors() {
    let env = Env::new();
    env.init_store_with(&[]);
    let deep = env.write(
        "deep.json",
        format!("{}{}", "[".repeat(50_000), "]".repeat(50_000)),
    );
    let out = check(&env, &[], &[&deep]);
    assert_error(
        &out,
        13,
        "deep.json: not JSON events",
        "saved /messages responses",
    );
    let numbers = env.write("numbers.json", "[1, 2]");
    let out = check(&env, &[], &[&numbers]);
    assert_error(
        &out,
        13,
        "numbers.json: event 0: not a JSON object",
        "JSON lines of events",
    );
    let huge = env.write(
        "huge.json",
        format!(
            r#"{{"chunk":[{{"type":"m.room.message","content":{{"body":"{}"}}}}]}}"#,
            "a".repeat(2 << 20)
        ),
    );
    let out = check(&env, &[], &[&huge]);
    assert_error(
        &out,
        13,
        "huge.json: event 0 is larger than",
        "saved /messages responses",
    );
    let out = check(&env, &[], &[&env.path("absent.json")]);
    assert_eq!(out.status.code(), Some(10), "{}", text(&out.stderr));
    let bad_backup = env.write("backup.json", "[]");
    let out = check(
        &env,
        &["--backup-response", bad_backup.to_str().unwrap()],
        &[&numbers],
    );
    assert_error(
        &out,
        13,
        "backup.json: not a saved GET /room_keys/keys response",
        "room_keys/keys",
    );
    // Online without a login: say how to log in.
    let out = env.scmd().args(["history", "check"]).output().unwrap();
    assert_error(&out, 2, "not logged in", "mxkeys login");
    // Offline, --limit has nothing to count in; a bad date says what is accepted.
    let out = check(&env, &["--limit", "5"], &[&numbers]);
    assert_error(&out, 2, "--limit counts the newest events", "drop --limit");
    let out = check(&env, &["--since", "yesterday"], &[&numbers]);
    assert_error(&out, 2, "\"yesterday\" is not a date", "YYYY-MM-DD");
}

#[test]
fn reads_events_from_stdin() {
    let env = Env::new();
    let sessions = read_sessions(&fixture("sessions/sessions-3.json"));
    env.init_store_with(&sessions);
    let lines: String = fixture_events()
        .iter()
        .map(|e| format!("{}\n", e["event"]))
        .collect();
    let out = env
        .scmd()
        .args(["--json", "history", "check", "--from-messages", "-"])
        .write_stdin(lines)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(one_json(&out)["counts"]["decrypted"], 3);
    // stdin at most once.
    let out = env
        .scmd()
        .args(["history", "check", "--from-messages", "-", "-"])
        .output()
        .unwrap();
    assert_error(&out, 2, "stdin ('-') is given more than once", "by name");
}
